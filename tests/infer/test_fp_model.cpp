// infer/fp_model: the training graph behind LanguageModel. Logits are checked against PyTorch's golden
// logits for the tiny LLaMA (independent reference), prefill-in-pieces against one prefill, the
// quantization_config path against an explicit quantize_model, and the LanguageModel perplexity with
// bits per byte against the nn path and the closed form.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "infer/fp_model.h"
#include "infer/lower.h"
#include "infer/perplexity.h"
#include "tests/infer/toy_models.h"
#include "tests/test_util.h"

using namespace tq;

namespace {

const char* kFixture = "tests/reference/data/tiny_llama";

std::vector<int32_t> golden_row0(Tensor* logits_out) {
  const SafetensorsFile g = SafetensorsFile::open(test::source_path("tests/reference/data/tiny_llama_golden.safetensors"));
  const Tensor ids = g.get("ids");  // [B, T]
  if (logits_out) *logits_out = g.get("logits").clone();  // [B, T, V] f64
  std::vector<int32_t> t(static_cast<size_t>(ids.size(1)));
  for (int64_t i = 0; i < ids.size(1); ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(ids.at({0, i}));
  return t;
}

// A copy of the fixture whose config.json carries `qc` as quantization_config.
void write_quantized_fixture(const std::string& dir, const Json& qc) {
  namespace fs = std::filesystem;
  fs::copy_file(test::source_path(std::string(kFixture) + "/model.safetensors"), dir + "/model.safetensors");
  Json cfg = read_json_file(test::source_path(std::string(kFixture) + "/config.json"));
  cfg["quantization_config"] = qc;
  write_json_file(dir + "/config.json", cfg);
}

}  // namespace

TEST_CASE("fp_model: logits equal PyTorch's; prefill in pieces equals one prefill") {
  auto model = infer::load_model_for_inference(test::source_path(kFixture));
  auto lm = infer::make_fp_model(model);
  Tensor ref;
  const std::vector<int32_t> ids = golden_row0(&ref);
  const int64_t T = static_cast<int64_t>(ids.size()), V = lm->vocab_size();
  CHECK(V == 96);
  CHECK(lm->max_context() == 64);
  CHECK(lm->describe() == "fp32 training graph");
  std::vector<float> all(static_cast<size_t>(T * V));
  lm->forward(ids.data(), T, all.data(), /*all_logits=*/true);
  CHECK(lm->position() == T);
  double max_err = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t v = 0; v < V; ++v)
      max_err = std::max(max_err, std::abs(all[static_cast<size_t>(t * V + v)] - ref.at({0, t, v})));
  CHECK(max_err < 1e-4);
  // Prefill 5, then decode one at a time: each last-position row equals the one-shot prefill's row.
  lm->reset();
  CHECK(lm->position() == 0);
  std::vector<float> row(static_cast<size_t>(V));
  lm->forward(ids.data(), 5, row.data(), false);
  for (int64_t v = 0; v < V; ++v) CHECK(row[static_cast<size_t>(v)] == doctest::Approx(all[static_cast<size_t>(4 * V + v)]).epsilon(1e-5));
  for (int64_t t = 5; t < T; ++t) {
    lm->forward(&ids[static_cast<size_t>(t)], 1, row.data(), false);
    double e = 0;
    for (int64_t v = 0; v < V; ++v) e = std::max(e, static_cast<double>(std::abs(row[static_cast<size_t>(v)] - all[static_cast<size_t>(t * V + v)])));
    CHECK(e < 1e-5);
  }
  // Errors: a token outside the vocabulary, a context overflow.
  const int32_t bad = 96;
  CHECK_THROWS_WITH_AS(lm->forward(&bad, 1, row.data(), false), doctest::Contains("outside the vocabulary"), Error);
  lm->reset();
  std::vector<int32_t> longer(65, 1);
  std::vector<float> big(65 * 96);
  CHECK_THROWS_WITH_AS(lm->forward(longer.data(), 65, big.data(), true), doctest::Contains("max_context 64"), Error);
}

TEST_CASE("fp_model: a quantization_config gives the fake-quant QuantLinear model") {
  test::TempDir dir("fp_model_q");
  // The block as the trainer writes it (train/checkpoint.cpp, parsed by infer/lower.h).
  const Json qc = {{"quant_method", "tequila"}, {"method", "tequila"}, {"bits", 1.58}, {"granularity", "group"},
                   {"group_size", 64}, {"lambda", 0.01},
                   {"modules_to_quantize", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}};
  write_quantized_fixture(dir.path.string(), qc);
  auto q = infer::load_model_for_inference(dir.path.string());
  const auto* ql = dynamic_cast<const quant::QuantLinear*>(&q->submodule("model.layers.1.mlp.down_proj"));
  REQUIRE(ql != nullptr);
  CHECK(ql->config().method == "tequila");
  CHECK(ql->config().group_size == 64);
  CHECK(ql->config().lambda == 0.01);
  // Reference: the plain model quantized by hand with the same QuantConfig.
  std::shared_ptr<nn::LlamaForCausalLM> ref = nn::load_llama(test::source_path(kFixture));
  quant::QuantConfig c;
  c.method = "tequila";
  c.group_size = 64;
  c.lambda = 0.01;
  CHECK(quant::quantize_model(*ref, c) == 14);
  auto fp = infer::make_fp_model(nn::load_llama(test::source_path(kFixture)));
  auto lq = infer::make_fp_model(q), lr = infer::make_fp_model(ref);
  CHECK(lq->describe().find("fake-quant") != std::string::npos);
  const std::vector<int32_t> ids = golden_row0(nullptr);
  const int64_t T = static_cast<int64_t>(ids.size());
  std::vector<float> a(static_cast<size_t>(T * 96)), b(a.size()), f(a.size());
  lq->forward(ids.data(), T, a.data(), true);
  lr->forward(ids.data(), T, b.data(), true);
  fp->forward(ids.data(), T, f.data(), true);
  double same = 0, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    same = std::max(same, static_cast<double>(std::abs(a[i] - b[i])));
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - f[i])));
  }
  CHECK(same == 0.0);
  CHECK(diff > 1e-3);  // ternary weights really change the logits
}

TEST_CASE("fp_model: quantization_config parsing and its errors") {
  const quant::QuantConfig d = infer::quant_config_from_json(Json{{"quant_method", "absmean"}}, "c");
  CHECK(d.method == "absmean");
  CHECK(d.group_size == 128);
  quant::QuantConfig c;
  c.method = "minima";
  c.granularity = quant::Granularity::channel;
  c.layers = {"q_proj"};
  const quant::QuantConfig r = infer::quant_config_from_json(infer::quant_config_to_json(c), "c");
  CHECK(r.method == "minima");
  CHECK(r.granularity == quant::Granularity::channel);
  CHECK(r.layers == std::vector<std::string>{"q_proj"});
  CHECK_THROWS_WITH_AS(infer::quant_config_from_json(Json{{"quant_method", "tequila"}, {"group_sise", 64}}, "x.json"),
                       doctest::Contains("group_sise"), Error);
  CHECK(infer::quant_config_from_json(Json{{"method", "twn"}}, "c").method == "twn");
  CHECK_THROWS_WITH_AS(infer::quant_config_from_json(Json{{"quant_method", "bogus"}}, "x.json"),
                       doctest::Contains("x.json"), Error);
  // A block whose modules match nothing is an error, not a silent fp32 model.
  test::TempDir dir("fp_model_bad");
  write_quantized_fixture(dir.path.string(), Json{{"quant_method", "tequila"}, {"group_size", 64}, {"layers", {"qq_proj"}}});
  CHECK_THROWS_WITH_AS(infer::load_model_for_inference(dir.path.string()), doctest::Contains("qq_proj"), Error);
}

TEST_CASE("fp_model: parameter_bytes counts every parameter once (tied embedding)") {
  auto model = nn::load_llama(test::source_path(kFixture));
  // V=96, C=64, F=128, L=2, Hq*D=64, Hkv*D=32, tied: embed + L*(q,k,v,o + 3 mlp + 2 norms) + final norm.
  const int64_t per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64;
  CHECK(infer::parameter_bytes(*model) == 4 * (96 * 64 + 2 * per_layer + 64));
}

TEST_CASE("perplexity: the LanguageModel path equals the nn path; bits per byte is the closed form") {
  std::shared_ptr<nn::LlamaForCausalLM> model = nn::load_llama(test::source_path(kFixture));
  const std::vector<int32_t> ids = golden_row0(nullptr);
  auto lm = infer::make_fp_model(model);
  for (int64_t ctx : {int64_t{12}, int64_t{4}, int64_t{5}}) {
    const infer::PerplexityResult a = infer::perplexity(*model, ids, ctx);
    const infer::PerplexityResult b = infer::perplexity(*lm, ids, ctx, /*text_bytes=*/100);
    CHECK(b.tokens == a.tokens);
    CHECK(b.nll == doctest::Approx(a.nll).epsilon(1e-5));
    CHECK(b.bits_per_byte == doctest::Approx(a.nll * static_cast<double>(a.tokens) / std::log(2.0) / 100.0).epsilon(1e-5));
  }
  // Unigram toy: every token costs -log p; 10 tokens of 'a' (p = 0.5) after a BOS -> 10 bits over 10 bytes.
  std::vector<float> u(259, -1e9f);
  u['a'] = 0.0f;
  u['b'] = 0.0f;
  test::UnigramLM uni(u);
  std::vector<int32_t> toks(11, 'a');
  toks[0] = 256;
  const infer::PerplexityResult r = infer::perplexity(uni, toks, 4, 10);
  CHECK(r.tokens == 10);
  CHECK(r.ppl == doctest::Approx(2.0));
  CHECK(r.bits_per_byte == doctest::Approx(1.0));
  CHECK(uni.calls == 3);  // windows of 4, 4 and 2 predictions
  CHECK_THROWS_WITH_AS(infer::perplexity(uni, toks, 2000), doctest::Contains("max_context"), Error);
}
