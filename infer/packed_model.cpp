#include "infer/packed_model.h"

#include <cstring>
#include <set>
#include <vector>

#include "core/mmap.h"

namespace tq::infer {

namespace {

constexpr uint64_t kAlign = 64;
constexpr uint64_t kFixedHeader = 24;

uint64_t align_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

DType parse_dtype(const std::string& s, const std::string& ctx) {
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::f64, DType::i32, DType::i8,
                  DType::u8}) {
    if (s == dtype_name(d)) return d;
  }
  TQ_THROW("[packed_model] {}: unknown dtype '{}' (f32 | bf16 | f16 | f64 | i32 | i8 | u8)", ctx, s);
}

}  // namespace

void save_packed(const EnginePlan& plan, const std::string& path) {
  Json table = Json::array();
  uint64_t off = 0;
  std::set<std::string> names;
  for (const auto& [name, t] : plan.tensors) {
    TQ_CHECK(names.insert(name).second, "[save_packed] {}: duplicate tensor {}", path, name);
    table.push_back(Json{{"name", name},
                         {"dtype", dtype_name(t.dtype())},
                         {"shape", t.shape()},
                         {"offset", off},
                         {"nbytes", t.nbytes()}});
    off = align_up(off + t.nbytes());
  }
  const Json header{{"format", "libtequila packed model"},
                    {"config", plan.config.to_json()},
                    {"meta", plan.meta},
                    {"tensors", table},
                    {"data_bytes", off}};
  const std::string hj = header.dump();
  const uint64_t hlen = hj.size();
  const uint64_t data_start = align_up(kFixedHeader + hlen);
  AtomicFileWriter w(path);
  w.write(kPackedMagic, 8);
  const uint32_t version = kPackedVersion, reserved = 0;
  w.write(&version, 4);
  w.write(&reserved, 4);
  w.write(&hlen, 8);
  w.write(hj.data(), hj.size());
  static const char zeros[kAlign] = {};
  w.write(zeros, data_start - kFixedHeader - hlen);
  uint64_t pos = 0;
  for (const auto& [name, t] : plan.tensors) {
    const Tensor c = t.contiguous();
    w.write(c.raw_data(), c.nbytes());
    pos += c.nbytes();
    const uint64_t next = align_up(pos);
    w.write(zeros, next - pos);
    pos = next;
  }
  w.commit();
}

void save_packed(const Engine& engine, const std::string& path) { save_packed(engine.plan(), path); }

EnginePlan read_packed_plan(const std::string& path) {
  auto file = MappedFile::open(path);
  const char* who = "[load_packed]";
  TQ_CHECK(file->size() >= kFixedHeader,
           "{} {}: {} bytes is too short for a packed model (at least {} bytes of header) — the "
           "file is truncated or not a packed model",
           who, path, file->size(), kFixedHeader);
  TQ_CHECK(std::memcmp(file->data(), kPackedMagic, 8) == 0,
           "{} {}: bad magic (expected \"TQPACKED\") — not a libtequila packed model", who, path);
  const auto version = file->read_le<uint32_t>(8, "version");
  TQ_CHECK(version == kPackedVersion,
           "{} {}: version {} is not supported (this build reads version {}) — hint: re-run "
           "`tqinfer convert` on the checkpoint with this build",
           who, path, version, kPackedVersion);
  const auto hlen = file->read_le<uint64_t>(16, "header length");
  TQ_CHECK(hlen <= file->size() - kFixedHeader,
           "{} {}: header length {} exceeds the file ({} bytes) — truncated file?", who, path, hlen,
           file->size());
  const auto* hp = reinterpret_cast<const char*>(file->bytes(kFixedHeader, hlen, "header"));
  const Json header = parse_json(std::string_view(hp, hlen), path + " (header)");
  const std::string ctx = path + " header";
  json_check_keys(header, {"format", "config", "meta", "tensors", "data_bytes"}, ctx);
  const auto data_bytes = json_get<uint64_t>(header, "data_bytes", ctx);
  const uint64_t data_start = align_up(kFixedHeader + hlen);
  TQ_CHECK(file->size() >= data_start && file->size() - data_start == data_bytes,
           "{} {}: data_bytes {} + data start {} != file size {} — the file is truncated or has "
           "trailing bytes",
           who, path, data_bytes, data_start, file->size());
  EnginePlan plan;
  plan.config = nn::LlamaConfig::from_json(json_get<Json>(header, "config", ctx), path + " config");
  plan.meta = json_get<Json>(header, "meta", ctx);
  TQ_CHECK(plan.meta.is_object(), "{} {}: field meta must be an object", who, path);
  const Json tensors = json_get<Json>(header, "tensors", ctx);
  TQ_CHECK(tensors.is_array(), "{} {}: field tensors must be an array", who, path);
  std::set<std::string> names;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Json& e = tensors[i];
    const std::string ectx = ctx + " tensors[" + std::to_string(i) + "]";
    json_check_keys(e, {"name", "dtype", "shape", "offset", "nbytes"}, ectx);
    const auto name = json_get<std::string>(e, "name", ectx);
    TQ_CHECK(names.insert(name).second, "{} {}: tensor {} appears twice", who, path, name);
    const DType dt = parse_dtype(json_get<std::string>(e, "dtype", ectx), ectx + " (" + name + ")");
    const auto shape = json_get<std::vector<int64_t>>(e, "shape", ectx);
    uint64_t numel = 1;
    for (int64_t d : shape) {
      TQ_CHECK(d >= 0 && d < (int64_t{1} << 40), "{} {}: tensor {} has a bad dimension {}", who,
               path, name, d);
      numel *= static_cast<uint64_t>(d);
    }
    const auto offset = json_get<uint64_t>(e, "offset", ectx);
    const auto nbytes = json_get<uint64_t>(e, "nbytes", ectx);
    TQ_CHECK(nbytes == numel * dtype_size(dt),
             "{} {}: tensor {} field nbytes {} != {} for {}{}", who, path, name, nbytes,
             numel * dtype_size(dt), dtype_name(dt), shape_str(shape));
    TQ_CHECK(offset % kAlign == 0, "{} {}: tensor {} field offset {} is not a multiple of 64",
             who, path, name, offset);
    TQ_CHECK(offset >= prev_end && offset <= data_bytes && nbytes <= data_bytes - offset,
             "{} {}: tensor {} field offset {} (+{} bytes) overlaps the previous tensor or "
             "exceeds data_bytes {}",
             who, path, name, offset, nbytes, data_bytes);
    prev_end = offset + nbytes;
    void* p = const_cast<uint8_t*>(file->bytes(data_start + offset, nbytes, name.c_str()));
    auto st = Storage::borrow(p, nbytes, file, /*read_only=*/true);
    plan.tensors.emplace_back(name, Tensor(st, shape, contiguous_strides(shape), 0, dt));
  }
  return plan;
}

void follow_packed_head(const EnginePlan& plan, EngineOptions& o, const std::string& path) {
  // The LM head is fixed when converting; an option left at its default follows the file.
  const auto head = json_get_or<std::string>(plan.meta, "lm_head", "", path + " meta");
  if (o.lm_head == EngineOptions{}.lm_head && !head.empty()) o.lm_head = head;
}

std::unique_ptr<Engine> load_packed(const std::string& path, const EngineOptions& opts) {
  EnginePlan plan = read_packed_plan(path);
  EngineOptions o = opts;
  follow_packed_head(plan, o, path);
  return std::make_unique<Engine>(std::move(plan), o, path);
}

}  // namespace tq::infer
