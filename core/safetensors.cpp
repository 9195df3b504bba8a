#include "core/safetensors.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string_view>
#include <unordered_set>

#include "core/json.h"

namespace tq {

namespace {

// The reference implementation's limit; a larger "length" means a corrupt or foreign file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kSupported = "F32, F64, BF16, F16, I32, I8, U8";

struct DTypeSpec {
  const char* name;
  uint32_t bits;
  std::optional<DType> dtype;  // nullopt: valid safetensors dtype that a Tensor cannot hold
  const char* hint;
};

// Every dtype of the safetensors spec, so a file holding one we cannot load still opens and its
// other tensors remain readable; get() refuses the unsupported ones.
const DTypeSpec kDTypes[] = {
    {"F32", 32, DType::f32, ""},
    {"F64", 64, DType::f64, ""},
    {"BF16", 16, DType::bf16, ""},
    {"F16", 16, DType::f16, ""},
    {"I32", 32, DType::i32, ""},
    {"I8", 8, DType::i8, ""},
    {"U8", 8, DType::u8, ""},
    {"I64", 64, std::nullopt,
     " — hint: store it as I32 (e.g. tensor.to(torch.int32)) when writing"},
    {"U64", 64, std::nullopt, " — hint: store it as I32 when writing"},
    {"U32", 32, std::nullopt, " — hint: store it as I32 when writing"},
    {"I16", 16, std::nullopt, " — hint: store it as I32 when writing"},
    {"U16", 16, std::nullopt, " — hint: store it as I32 when writing"},
    {"BOOL", 8, std::nullopt, " — hint: store it as U8 when writing"},
    {"F8_E4M3", 8, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
    {"F8_E5M2", 8, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
    {"F8_E8M0", 8, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
    {"F6_E2M3", 6, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
    {"F6_E3M2", 6, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
    {"F4", 4, std::nullopt, " — hint: store it as BF16 or F32 when writing"},
};

const DTypeSpec* find_dtype(std::string_view name) {
  for (const DTypeSpec& s : kDTypes) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

// A non-negative JSON integer, or nullopt (negative, float, string, ...).
std::optional<uint64_t> as_u64(const Json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

std::string describe(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return fmt::format("{} ({})", s, json_kind(v));
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const Json& entry,
                       uint64_t data_size) {
  TQ_CHECK(entry.is_object(),
           "[safetensors] {}: tensor '{}': entry is {}, expected an object with dtype, shape and "
           "data_offsets",
           path, name, describe(entry));
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    TQ_CHECK(entry.contains(key), "[safetensors] {}: tensor '{}': missing field '{}'", path, name,
             key);
  }
  TensorInfo info;
  info.name = name;

  const Json& dt = entry["dtype"];
  TQ_CHECK(dt.is_string(), "[safetensors] {}: tensor '{}': dtype is {}, expected a string", path,
           name, describe(dt));
  info.st_dtype = dt.get<std::string>();
  const DTypeSpec* spec = find_dtype(info.st_dtype);
  TQ_CHECK(spec != nullptr, "[safetensors] {}: tensor '{}': unknown dtype '{}' (tequila reads {})",
           path, name, info.st_dtype, kSupported);
  info.dtype = spec->dtype;

  const Json& shape = entry["shape"];
  TQ_CHECK(shape.is_array(), "[safetensors] {}: tensor '{}': shape is {}, expected an array", path,
           name, describe(shape));
  uint64_t numel = 1;
  bool overflow = false, has_zero = false;
  for (size_t d = 0; d < shape.size(); ++d) {
    const std::optional<uint64_t> n = as_u64(shape[d]);
    TQ_CHECK(n.has_value() && *n <= static_cast<uint64_t>(INT64_MAX),
             "[safetensors] {}: tensor '{}': shape[{}] is {}, expected a non-negative integer",
             path, name, d, describe(shape[d]));
    info.shape.push_back(static_cast<int64_t>(*n));
    has_zero = has_zero || *n == 0;
    overflow = overflow || __builtin_mul_overflow(numel, *n, &numel);
  }
  if (has_zero) numel = 0;  // [0, 2^40, 2^40] is a valid empty tensor, overflow or not
  uint64_t bits = 0;
  overflow = overflow || __builtin_mul_overflow(numel, uint64_t{spec->bits}, &bits);
  // A size that overflows could never fit in the file anyway.
  TQ_CHECK(!overflow || has_zero, "[safetensors] {}: tensor '{}': shape {} is too large", path,
           name, shape_str(info.shape));
  TQ_CHECK(bits % 8 == 0,
           "[safetensors] {}: tensor '{}': {} x {} bits is not a whole number of bytes", path, name,
           numel, spec->bits);

  const Json& offs = entry["data_offsets"];
  std::optional<uint64_t> b, e;
  if (offs.is_array() && offs.size() == 2) {
    b = as_u64(offs[0]);
    e = as_u64(offs[1]);
  }
  TQ_CHECK(b && e,
           "[safetensors] {}: tensor '{}': data_offsets is {}, expected [begin, end] with "
           "non-negative integers",
           path, name, describe(offs));
  info.begin = *b;
  info.end = *e;
  TQ_CHECK(info.begin <= info.end,
           "[safetensors] {}: tensor '{}': data_offsets [{}, {}] has begin > end", path, name,
           info.begin, info.end);
  TQ_CHECK(
      info.end <= data_size,
      "[safetensors] {}: tensor '{}': data_offsets [{}, {}] run past the data section ({} bytes) "
      "— hint: the file may be truncated",
      path, name, info.begin, info.end, data_size);
  const uint64_t nbytes = bits / 8;
  TQ_CHECK(info.end - info.begin == nbytes,
           "[safetensors] {}: tensor '{}': {}{} needs {} bytes but data_offsets [{}, {}] span {}",
           path, name, info.st_dtype, shape_str(info.shape), nbytes, info.begin, info.end,
           info.end - info.begin);
  return info;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
  }
  TQ_THROW("[safetensors] invalid dtype value {}", static_cast<int>(dtype));
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = MappedFile::open(path);  // "[mmap] cannot open <path>: ..."
  const uint64_t size = f.file_->size();
  TQ_CHECK(
      size >= 8,
      "[safetensors] {}: file has {} bytes, fewer than the 8-byte header length — hint: the file "
      "is truncated or not a safetensors file",
      path, size);
  const auto n = f.file_->read_le<uint64_t>(0, "the safetensors header length");
  TQ_CHECK(n <= kMaxHeaderBytes,
           "[safetensors] {}: header length {} exceeds the {}-byte limit — hint: not a safetensors "
           "file, or a corrupt one",
           path, n, kMaxHeaderBytes);
  TQ_CHECK(
      n <= size - 8,
      "[safetensors] {}: header length {} runs past the end of the file ({} bytes) — hint: the "
      "file may be truncated",
      path, n, size);
  f.data_start_ = 8 + n;
  const uint64_t data_size = size - f.data_start_;

  // Duplicate top-level keys would silently overwrite each other in the parsed object; catch them
  // with the parser callback (depth 1 = keys of the root object).
  std::vector<std::string> duplicates;
  std::unordered_set<std::string> seen;
  // ordered_json keeps the header order, the tie-break for tensors starting at the same offset.
  using OJson = nlohmann::ordered_json;
  const OJson::parser_callback_t on_event = [&](int depth, OJson::parse_event_t event,
                                                OJson& parsed) {
    if (event == OJson::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second)
        duplicates.push_back(parsed.get<std::string>());
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(f.file_->data()) + 8;
  OJson header;
  try {
    header = OJson::parse(text, text + n, on_event);
  } catch (const OJson::parse_error& e) {
    std::string msg = e.what();
    const size_t tag = msg.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] "
    if (msg.rfind("[json.exception.", 0) == 0 && tag != std::string::npos) msg.erase(0, tag + 2);
    TQ_THROW("[safetensors] {}: header (bytes 8 to {}) is not valid JSON: {}", path, 8 + n, msg);
  }
  TQ_CHECK(header.is_object(), "[safetensors] {}: header is {}, expected a JSON object", path,
           describe(header));
  TQ_CHECK(duplicates.empty(), "[safetensors] {}: header lists '{}' more than once", path,
           duplicates.empty() ? "" : duplicates.front());

  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const Json value = item.value();  // entries are small; converting keeps one parse_entry
    if (name == "__metadata__") {
      if (value.is_null()) continue;
      TQ_CHECK(value.is_object(),
               "[safetensors] {}: __metadata__ is {}, expected an object of strings", path,
               describe(value));
      for (const auto& kv : value.items()) {
        TQ_CHECK(kv.value().is_string(),
                 "[safetensors] {}: __metadata__ field '{}' is {}, expected a string", path,
                 kv.key(), describe(kv.value()));
        f.metadata_[kv.key()] = kv.value().get<std::string>();
      }
      continue;
    }
    TensorInfo info = parse_entry(path, name, value, data_size);
    info.file_offset = f.data_start_ + info.begin;
    f.infos_.push_back(std::move(info));
  }

  // Stable: ties (zero-size tensors) keep the header order; an empty range sorts before a
  // non-empty one at the same offset, as save_safetensors writes them.
  std::stable_sort(f.infos_.begin(), f.infos_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Non-empty ranges must not overlap. Gaps are tolerated (the spec wants none; the reference
  // reader rejects them) and only logged: the bytes in them are simply never read.
  uint64_t covered = 0, prev_end = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& info : f.infos_) {
    if (info.begin == info.end) continue;
    if (prev != nullptr) {
      TQ_CHECK(
          info.begin >= prev_end,
          "[safetensors] {}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap in the data section",
          path, prev->name, prev->begin, prev->end, info.name, info.begin, info.end);
    }
    covered += info.end - info.begin;
    prev_end = info.end;
    prev = &info;
  }
  if (covered != data_size) {
    spdlog::debug("[safetensors] {}: {} of {} data bytes belong to no tensor", path,
                  data_size - covered, data_size);
  }
  for (size_t i = 0; i < f.infos_.size(); ++i) f.index_.emplace(f.infos_[i].name, i);
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(infos_.size());
  for (const TensorInfo& info : infos_) out.push_back(info.name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = index_.find(name);
  TQ_CHECK(it != index_.end(), "[safetensors] {}: no tensor '{}' ({} tensors in the file)", path_,
           name, infos_.size());
  return infos_[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo& ti = info(name);
  if (!ti.dtype.has_value()) {
    const DTypeSpec* spec = find_dtype(ti.st_dtype);
    TQ_THROW(
        "[safetensors] {}: tensor '{}' has dtype {}, which tequila cannot hold (it reads {}){}",
        path_, name, ti.st_dtype, kSupported, spec != nullptr ? spec->hint : "");
  }
  const DType dtype = *ti.dtype;
  if (shape_numel(ti.shape) == 0) return Tensor::empty(ti.shape, dtype);
  const size_t nbytes = static_cast<size_t>(ti.end - ti.begin);
  uint8_t* p = file_->mutable_data() + ti.file_offset;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(dtype) == 0) {
    // The storage shares ownership of the mapping, so the view outlives this SafetensorsFile.
    auto storage = Storage::borrow(p, nbytes, file_, /*read_only=*/false);
    return Tensor(std::move(storage), ti.shape, contiguous_strides(ti.shape), 0, dtype);
  }
  Tensor t = Tensor::empty(ti.shape, dtype);
  std::memcpy(t.raw_data(), p, nbytes);
  return t;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::unordered_set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    TQ_CHECK(!name.empty(), "[safetensors] {}: empty tensor name", path);
    TQ_CHECK(name != "__metadata__",
             "[safetensors] {}: '__metadata__' is reserved, not a tensor name", path);
    TQ_CHECK(seen.insert(name).second, "[safetensors] {}: tensor '{}' given more than once", path,
             name);
    TQ_CHECK(t.defined(), "[safetensors] {}: tensor '{}' is undefined", path, name);
  }

  // Largest elements first keeps every tensor aligned to its element size without gaps (each
  // tensor's byte size is a multiple of its element size); stable, so equal sizes keep their order.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  for (size_t i : order) {
    begin[i] = offset;
    offset += tensors[i].second.nbytes();
  }
  const uint64_t data_size = offset;

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = nlohmann::ordered_json::array();
    for (int64_t d : t.shape()) entry["shape"].push_back(d);
    entry["data_offsets"] = nlohmann::ordered_json::array({begin[i], begin[i] + t.nbytes()});
    header[tensors[i].first] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::type_error& e) {  // invalid UTF-8 in a name or value
    TQ_THROW("[safetensors] {}: cannot encode the header: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned

  AtomicFileWriter out(path);
  const uint64_t n = text.size();
  out.write(&n, sizeof n);  // little-endian host (see core/mmap.cpp)
  out.write(text.data(), text.size());
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    if (t.numel() == 0) continue;
    const Tensor c = t.contiguous();  // one copy at a time, only for strided views
    out.write(c.raw_data(), c.nbytes());
  }
  TQ_ASSERT(out.bytes_written() == 8 + n + data_size, "safetensors size accounting");
  out.commit();
}

}  // namespace tq
