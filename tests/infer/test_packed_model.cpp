// Tests the packed model file (infer/packed_model.h): a round trip gives the in-memory engine's
// logits exactly (every LM head kind, q4 included); bad magic, version, truncation, a wrong tensor
// size and trailing bytes are errors that name the file and the field.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "infer/lower.h"
#include "infer/packed_model.h"
#include "nn/llama.h"
#include "quant/quant.h"
#include "tests/infer/toy_models.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::infer;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

std::unique_ptr<nn::LlamaForCausalLM> tiny_quantized(uint64_t salt, bool quantize = true) {
  auto m = std::make_unique<nn::LlamaForCausalLM>(tq::test::tiny_engine_config());
  Rng rng = make_rng(salt);
  m->init_weights(rng, 0.1);
  if (quantize) {
    quant::QuantConfig q;
    q.lambda = 0.5;
    quant::quantize_model(*m, q);
  }
  return m;
}

std::vector<float> logits_of(Engine& e) {
  std::vector<int32_t> ids = {3, 17, 250, 4, 99, 128, 7};
  std::vector<float> out(ids.size() * 256);
  e.reset();
  e.forward(ids.data(), static_cast<int64_t>(ids.size()), out.data(), true);
  return out;
}

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_all(const std::string& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

}  // namespace

TEST_CASE("packed model: round trip equals the in-memory engine exactly") {
  tq::test::TempDir dir("packed");
  for (const char* head : {"int8", "f32", "bf16", "q4"}) {
    for (bool quantized : {true, false}) {
      auto m = tiny_quantized(1, quantized);
      EngineOptions o;
      o.lm_head = head;
      auto eng = lower(*m, o);
      const std::string path = dir.file(std::string("m_") + head + ".tqpk");
      save_packed(*eng, path);
      CHECK(std::filesystem::file_size(path) % 64 == 0);
      auto back = load_packed(path, o);
      CHECK(back->ternary() == quantized);
      CHECK(logits_of(*back) == logits_of(*eng));
      CHECK(back->weights_bytes() == eng->weights_bytes());
      // load_engine dispatches on file vs directory; the default lm_head follows the file.
      CHECK(logits_of(*load_engine(path)) == logits_of(*eng));
    }
  }
}

TEST_CASE("packed model: corrupt and truncated files are clear errors") {
  tq::test::TempDir dir("packed_bad");
  auto m = tiny_quantized(2);
  const std::string good = dir.file("good.tqpk");
  save_packed(*lower(*m), good);
  const std::string bytes = read_all(good);
  const std::string bad = dir.file("bad.tqpk");

  std::string b = bytes;
  b[0] = 'X';
  write_all(bad, b);
  std::string e = error_of([&] { load_packed(bad); });
  CHECK(e.find(bad) != std::string::npos);
  CHECK(e.find("magic") != std::string::npos);

  b = bytes;
  b[8] = 9;  // version
  write_all(bad, b);
  e = error_of([&] { load_packed(bad); });
  CHECK(e.find("version 9") != std::string::npos);

  write_all(bad, bytes.substr(0, bytes.size() - 100));
  e = error_of([&] { load_packed(bad); });
  CHECK(e.find(bad) != std::string::npos);
  CHECK(e.find("truncated") != std::string::npos);

  write_all(bad, bytes.substr(0, 20));
  CHECK(error_of([&] { load_packed(bad); }).find("too short") != std::string::npos);

  write_all(bad, bytes + std::string(64, '\0'));
  CHECK(error_of([&] { load_packed(bad); }).find("trailing") != std::string::npos);

  // A tensor's nbytes in the header no longer matching its shape (same header length).
  b = bytes;
  const std::string key = "\"name\":\"embed_tokens\",\"nbytes\":131072";  // f32 [256, 128]
  const size_t pos = b.find(key);
  REQUIRE(pos != std::string::npos);
  b.replace(pos + key.size() - 1, 1, "1");
  write_all(bad, b);
  e = error_of([&] { load_packed(bad); });
  CHECK(e.find("nbytes") != std::string::npos);
  CHECK(e.find("embed_tokens") != std::string::npos);  // it names the tensor
  CHECK(e.find(bad) != std::string::npos);

  CHECK(error_of([&] { load_packed(dir.file("missing.tqpk")); }).find("missing.tqpk") !=
        std::string::npos);
  // Asking for another LM head than the file holds.
  EngineOptions o;
  o.lm_head = "f32";
  CHECK(error_of([&] { load_packed(good, o); }).find("lm_head") != std::string::npos);
}
