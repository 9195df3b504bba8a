// Tests core/safetensors.cpp: round trips of every dtype, zero-copy views, the unaligned path, the
// reference fixtures, and one test per header defect (each error must name the file and tensor).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace tq;
using tq::test::TempDir;
using tq::test::error_of;

namespace {

// A safetensors file written by hand: u64 header length (the true one unless overridden), header
// text, data bytes.
std::string raw_file(const std::string& header, const std::string& data,
                     uint64_t length_override = 0) {
  const uint64_t n = length_override != 0 ? length_override : header.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  return bytes + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Same shape, dtype and bytes.
bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

bool in_mapping(const SafetensorsFile& f, const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw_data());
  const uint8_t* base = f.mapping().data();
  return p >= base && p < base + f.mapping().size();
}

// Writes a hand-made file and returns the error its open() throws ("" if none).
std::string open_error(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string p = dir.file(name);
  write_bytes(p, bytes);
  return error_of([&] { SafetensorsFile::open(p); });
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, scalars and empty tensors") {
  TempDir dir("st_roundtrip");
  Rng rng = test::make_rng(101);
  const Tensor base = Tensor::randn({3, 5}, rng);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"a.f32", base},
      {"b.f64", Tensor::randn({2, 3, 4}, rng, 1.0, DType::f64)},
      {"c.bf16", base.to(DType::bf16)},
      {"d.f16", base.to(DType::f16)},
      {"e.i32", Tensor::from_vector<int32_t>({-7, 0, 2147483647, -2147483647 - 1}, {2, 2})},
      {"f.i8", Tensor::from_vector<int8_t>({-128, -1, 0, 1, 127}, {5})},
      {"g.u8", Tensor::from_vector<uint8_t>({0, 1, 200, 255, 3, 7, 9}, {7})},
      {"h.scalar_f64", Tensor::full({}, 3.25, DType::f64)},
      {"i.scalar_i8", Tensor::full({}, -5, DType::i8)},
      {"j.empty", Tensor::empty({0, 4}, DType::f32)},
      {"k.empty_bf16", Tensor::empty({2, 0}, DType::bf16)},
      {"l.transposed", base.transpose(0, 1)},  // not contiguous: written as a contiguous copy
      {"m.u8_odd", Tensor::from_vector<uint8_t>({1, 2, 3}, {3})},
  };
  const std::string p = dir.file("all.safetensors");
  save_safetensors(p, tensors);

  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.path() == p);
  CHECK(f.size() == tensors.size());
  CHECK(f.metadata().empty());
  CHECK(f.data_section_offset() % 8 == 0);
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(f.contains(name));
    const TensorInfo& ti = f.info(name);
    CHECK(ti.dtype == t.dtype());
    CHECK(ti.st_dtype == safetensors_dtype_name(t.dtype()));
    CHECK(ti.shape == t.shape());
    CHECK(ti.end - ti.begin == t.nbytes());
    const Tensor got = f.get(name);
    CHECK((got.numel() == 0 || got.is_contiguous()));
    CHECK(bit_equal(got, t));
  }
  CHECK(!f.contains("nope"));
  const std::string no_tensor = p + ": no tensor 'nope'";
  CHECK_THROWS_WITH_AS(f.get("nope"), doctest::Contains(no_tensor.c_str()), Error);

  // Data order: element size descending, stable; the header keeps the given order.
  CHECK(f.names() == std::vector<std::string>{"b.f64", "h.scalar_f64", "a.f32", "e.i32", "j.empty",
                                              "l.transposed", "c.bf16", "d.f16", "k.empty_bf16",
                                              "f.i8", "g.u8", "i.scalar_i8", "m.u8_odd"});
  const std::string bytes = read_bytes(p);
  size_t last = 0;
  for (const auto& [name, t] : tensors) {
    const size_t pos = bytes.find("\"" + name + "\"");
    REQUIRE(pos != std::string::npos);
    CHECK(pos > last);
    last = pos;
  }
  // No gaps: the data section is exactly the tensors' bytes.
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.nbytes();
  CHECK(bytes.size() == f.data_section_offset() + total);
}

TEST_CASE("safetensors: metadata round trip and overwrite") {
  TempDir dir("st_meta");
  const std::string p = dir.file("m.safetensors");
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "quotes \" and \\ and unicode é"}, {"empty", ""}};
  save_safetensors(p, {{"w", Tensor::ones({2})}}, meta);
  CHECK(SafetensorsFile::open(p).metadata() == meta);
  save_safetensors(p, {{"w", Tensor::zeros({3})}});  // replaces the file atomically
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.metadata().empty());
  CHECK(f.get("w").shape() == Shape{3});
  save_safetensors(p, {});  // an empty file is valid
  CHECK(SafetensorsFile::open(p).size() == 0);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);  // no temp files left behind
}

TEST_CASE("safetensors: aligned tensors are zero-copy, copy-on-write views") {
  TempDir dir("st_zerocopy");
  const std::string p = dir.file("z.safetensors");
  Rng rng = test::make_rng(7);
  const Tensor w = Tensor::randn({4, 8}, rng);
  const Tensor b = Tensor::randn({8}, rng, 1.0, DType::f64);
  save_safetensors(p, {{"w", w}, {"b", b}});
  Tensor view;
  {
    const SafetensorsFile f = SafetensorsFile::open(p);
    view = f.get("w");
    CHECK(in_mapping(f, view));
    CHECK(in_mapping(f, f.get("b")));
    CHECK(f.get("w").raw_data() == view.raw_data());  // the same bytes each time, no copy
    CHECK(!view.storage()->read_only());
  }
  // The view keeps the mapping alive after the SafetensorsFile is gone, and writes stay private.
  CHECK(bit_equal(view, w));
  view.fill(42.0);
  CHECK(view.flat(5) == 42.0);
  CHECK(bit_equal(SafetensorsFile::open(p).get("w"), w));
}

TEST_CASE("safetensors: an odd header length loads through the unaligned copy") {
  TempDir dir("st_unaligned");
  const std::string p = dir.file("odd.safetensors");
  // 8 + 75 = 83: every tensor's data starts at an odd address.
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("y":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  while ((header.size() % 2) == 0 || header.size() < 75) header += ' ';
  REQUIRE((8 + header.size()) % 4 != 0);
  const float xs[2] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char*>(xs), sizeof xs);
  data += std::string("\x01\x02\xff", 3);
  write_bytes(p, raw_file(header, data));

  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.data_section_offset() % 2 == 1);
  const Tensor x = f.get("x");
  CHECK(!in_mapping(f, x));  // copied into aligned storage
  CHECK(reinterpret_cast<uintptr_t>(x.raw_data()) % alignof(float) == 0);
  CHECK(x.to_vector() == std::vector<double>{1.5, -2.25});
  const Tensor y = f.get("y");
  CHECK(in_mapping(f, y));  // bytes are always aligned
  CHECK(y.to_vector() == std::vector<double>{1, 2, 255});
}

TEST_CASE("safetensors: reads the PyTorch reference fixtures") {
  const std::string p = test::source_path("tests/reference/data/cross_entropy.safetensors");
  if (!fs::exists(p)) return;
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.metadata().count("op") == 1);
  REQUIRE(f.contains("loss"));
  const Tensor loss = f.get("loss");
  CHECK(loss.dtype() == DType::f64);
  CHECK(loss.dim() == 0);
  CHECK(std::isfinite(loss.item()));
  for (const std::string& name : f.names())
    CHECK(f.get(name).numel() == shape_numel(f.info(name).shape));
}

TEST_CASE("safetensors: unsupported but valid dtypes open, get() refuses with a hint") {
  TempDir dir("st_i64");
  const std::string p = dir.file("ids.safetensors");
  const std::string header = R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})";
  write_bytes(p, raw_file(header, std::string(20, '\0')));
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.contains("ids"));
  CHECK(!f.info("ids").dtype.has_value());
  CHECK(f.info("ids").st_dtype == "I64");
  const std::string msg = error_of([&] { f.get("ids"); });
  CHECK(contains(msg, p));
  CHECK(contains(msg, "'ids'"));
  CHECK(contains(msg, "I64"));
  CHECK(contains(msg, "hint"));
  CHECK(f.get("w").item() == 0.0);  // the other tensors still load
}

TEST_CASE("safetensors: gaps between tensors are tolerated") {
  TempDir dir("st_gap");
  const std::string p = dir.file("gap.safetensors");
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})";
  const float vals[4] = {9.f, 1.f, 9.f, 2.f};
  write_bytes(p, raw_file(header, std::string(reinterpret_cast<const char*>(vals), sizeof vals)));
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.get("a").item() == 1.0);
  CHECK(f.get("b").item() == 2.0);
}

TEST_CASE("safetensors: every corruption is an error naming the file and the tensor") {
  TempDir dir("st_corrupt");
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data8(8, '\0');

  struct Case {
    const char* what;
    std::string bytes;
    std::string tensor;  // must appear in the message ("" when no tensor is involved)
    std::string phrase;  // and so must this
  };
  const std::vector<Case> cases = {
      {"shorter than 8 bytes", std::string("\x05\x00\x00", 3), "", "fewer than the 8-byte"},
      {"empty file", std::string(), "", "fewer than the 8-byte"},
      {"header past the end", raw_file("{}", "", 64), "", "runs past the end of the file"},
      {"absurd header length", raw_file("{}", "", uint64_t{1} << 40), "", "exceeds"},
      {"header not JSON", raw_file("{\"w\": {dtype}", ""), "", "not valid JSON"},
      {"header truncated JSON", raw_file("{\"w\": {", ""), "", "not valid JSON"},
      {"header not an object", raw_file("[1, 2]", ""), "", "expected a JSON object"},
      {"entry not an object", raw_file(R"({"w": 5})", ""), "'w'", "expected an object"},
      {"missing dtype", raw_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", data8), "'w'",
       "missing field 'dtype'"},
      {"missing shape", raw_file(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", data8), "'w'",
       "missing field 'shape'"},
      {"missing data_offsets", raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", data8), "'w'",
       "missing field 'data_offsets'"},
      {"dtype not a string",
       raw_file(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", data8), "'w'", "dtype is"},
      {"negative shape",
       raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8), "'w'",
       "shape[0]"},
      {"non-integer shape",
       raw_file(R"({"w":{"dtype":"F32","shape":[2, 1.5],"data_offsets":[0,8]}})", data8), "'w'",
       "shape[1]"},
      {"string shape",
       raw_file(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", data8), "'w'",
       "shape[0]"},
      {"shape not an array",
       raw_file(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8), "'w'",
       "expected an array"},
      {"unknown dtype",
       raw_file(R"({"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", data8), "'w'",
       "unknown dtype 'F17'"},
      {"size mismatch",
       raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8), "'w'",
       "needs 12 bytes"},
      {"huge shape",
       raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                data8),
       "'w'", "too large"},
      {"begin > end", raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
       "'w'", "begin > end"},
      {"range outside data",
       raw_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8), "'w'",
       "run past the data section"},
      {"offsets not a pair",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8), "'w'",
       "data_offsets"},
      {"negative offset",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", data8), "'w'",
       "data_offsets"},
      {"overlap",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, '\0')),
       "'v'", "overlap"},
      {"duplicate name", raw_file("{" + ok_entry + "," + ok_entry + "}", data8), "'w'",
       "more than once"},
      {"metadata value not a string",
       raw_file(R"({"__metadata__":{"step":3},)" + ok_entry + "}", data8), "'step'",
       "expected a string"},
      {"metadata not an object", raw_file(R"({"__metadata__":["a"],)" + ok_entry + "}", data8), "",
       "__metadata__ is"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const std::string name = "bad" + std::to_string(i) + ".safetensors";
    const std::string msg = open_error(dir, name, c.bytes);
    INFO(c.what << ": " << msg);
    CHECK(contains(msg, "[safetensors]"));
    CHECK(contains(msg, dir.file(name)));
    if (!c.tensor.empty()) CHECK(contains(msg, c.tensor));
    CHECK(contains(msg, c.phrase));
  }

  const std::string missing = dir.file("missing.safetensors");
  CHECK_THROWS_WITH_AS(SafetensorsFile::open(missing), doctest::Contains(missing.c_str()), Error);
}

TEST_CASE("safetensors: save rejects bad input without touching the target") {
  TempDir dir("st_save_err");
  const std::string p = dir.file("s.safetensors");
  save_safetensors(p, {{"w", Tensor::ones({2})}});
  const std::string before = read_bytes(p);
  const std::string dup = p + ": tensor 'w' given more than once";
  CHECK_THROWS_WITH_AS(save_safetensors(p, {{"w", Tensor::ones({1})}, {"w", Tensor::ones({1})}}),
                       doctest::Contains(dup.c_str()), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(p, {{"u", Tensor()}}),
                       doctest::Contains("tensor 'u' is undefined"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(p, {{"__metadata__", Tensor::ones({1})}}),
                       doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(
      save_safetensors(dir.file("no/dir/x.safetensors"), {{"w", Tensor::ones({1})}}),
      doctest::Contains("no/dir/x.safetensors"), Error);
  CHECK(read_bytes(p) == before);
}
