// The tiny LLaMA against PyTorch: tests/reference/data/tiny_llama (config.json + model.safetensors,
// HF names, tied embeddings) is loaded with load_llama, and logits, loss and the gradient of every
// parameter are compared with tests/reference/data/tiny_llama_golden.safetensors, which
// tests/reference/gen_reference.py computes in float64 from the same f32 weights with an
// independent plain-PyTorch LLaMA (see tests/reference/README.md, including the sensitivity checks
// that show a wrong RoPE layout, llama3 scaling, eps, GQA mapping, mask, attention scale, norm
// weight or an untied head moves the logits by >= 2.8, and dropping the lm_head part of the tied
// embedding's gradient moves that gradient by 0.19: far beyond these tolerances).
//
// Our model runs in f32, so the tolerances are those of f32 rounding through two layers
// (torch's own f32 run lands within 7e-6 of the f64 logits and 5e-5 of the f64 gradients, whose
// largest entry is 33; ours, measured with TQ_CPU=ref/avx2/avx512: logits 6.6e-6, loss 5.3e-8,
// gradients 4.6e-5):
//   logits: rtol 1e-4, atol 1e-5    loss: rtol 1e-5
//   grads:  rtol 1e-3, atol 1e-4    (every element of every parameter's gradient)
// A last case edits the loaded weights to reproduce three mistakes (q/k rows in interleaved order,
// kv heads swapped, norm weights reset) and checks that each fails the logits comparison.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "autograd/cross_entropy.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/safetensors.h"
#include "nn/llama.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

constexpr double kLogitsRtol = 1e-4, kLogitsAtol = 1e-5;
constexpr double kLossRtol = 1e-5;
constexpr double kGradRtol = 1e-3, kGradAtol = 1e-4;
constexpr const char* kModelDir = "tests/reference/data/tiny_llama";
constexpr const char* kGolden = "tests/reference/data/tiny_llama_golden.safetensors";

// Compares every parameter's gradient with grad.<name>; returns the largest max|diff|.
double check_grads(const nn::LlamaForCausalLM& model, const SafetensorsFile& g) {
  double worst = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(g.contains("grad." + name));
    REQUIRE(p.has_grad());
    const DiffReport d = compare(p.grad(), g.get("grad." + name), kGradRtol, kGradAtol);
    INFO(d.str());
    CHECK(d.ok());
    worst = std::max(worst, d.max_abs);
  }
  return worst;
}

// A copy of the [H * D, C] projection `w` with each head's rows reordered: row j of a head takes
// row perm[j] of the original.
Tensor permute_head_rows(const Tensor& w, int64_t D, const std::vector<int64_t>& perm) {
  const Tensor src = w.to(DType::f32).contiguous();
  Tensor dst = src.clone();
  const int64_t rows = src.size(0), C = src.size(1);
  const float* a = src.data<float>();
  float* b = dst.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t from = (r / D) * D + perm[static_cast<size_t>(r % D)];
    std::copy(a + from * C, a + (from + 1) * C, b + r * C);
  }
  return dst;
}

}  // namespace

TEST_CASE("llama golden: parameter names are HF's and match the golden gradients") {
  const auto model = nn::load_llama(test::source_path(kModelDir));
  const SafetensorsFile g = SafetensorsFile::open(test::source_path(kGolden));
  const nn::LlamaConfig& c = model->config();  // tests/reference/data/tiny_llama/config.json
  CHECK(c.vocab_size == 96);
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 128);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.resolved_head_dim() == 16);
  CHECK(c.tie_word_embeddings);
  const autograd::RopeConfig rc = c.rope_config();
  CHECK(rc.type == "llama3");
  CHECK(rc.theta == 500000.0);
  CHECK(rc.original_max_position_embeddings == 64);
  std::set<std::string> params, grads, weights;
  for (const auto& [name, p] : model->named_parameters()) {
    CHECK_MESSAGE(params.insert(name).second, "duplicate parameter " << name);
    CHECK(p.requires_grad());
  }
  for (const std::string& n : g.names()) {
    if (n.rfind("grad.", 0) == 0) grads.insert(n.substr(5));
  }
  const SafetensorsFile w =
      SafetensorsFile::open(test::source_path(kModelDir) + "/model.safetensors");
  for (const std::string& n : w.names()) weights.insert(n);
  CHECK(params == grads);
  CHECK(params == weights);
  CHECK(params.count("model.embed_tokens.weight") == 1);
  CHECK(params.count("lm_head.weight") == 0);  // tied: one Var, listed under the embedding's name
  CHECK(params.size() == 2 + 9 * 2);
}

TEST_CASE("llama golden: tiny LLaMA logits, loss and every gradient match PyTorch") {
  const auto model = nn::load_llama(test::source_path(kModelDir));
  const SafetensorsFile g = SafetensorsFile::open(test::source_path(kGolden));
  const Tensor ids = g.get("ids"), targets = g.get("targets");  // i32 [B, T]
  const int64_t B = ids.size(0), T = ids.size(1), V = g.get("logits").size(2);

  SUBCASE("forward, then autograd::cross_entropy on the logits") {
    Tape tape;
    Var logits, loss;
    {
      RecordScope rec(tape);
      logits = model->forward(ids);
      loss = cross_entropy(reshape(logits, {B * T, V}), targets.reshape({B * T}), -100);
    }
    const DiffReport dl = compare(logits.value(), g.get("logits"), kLogitsRtol, kLogitsAtol);
    INFO("logits: " << dl.str());
    CHECK(dl.ok());
    CHECK(loss.value().dim() == 0);
    CHECK(loss.value().item() == doctest::Approx(g.get("loss").item()).epsilon(kLossRtol));
    tape.backward(loss);
    const double worst = check_grads(*model, g);
    MESSAGE("tiny llama vs torch f64: logits max|diff| "
            << dl.max_abs << ", loss |diff| "
            << std::abs(loss.value().item() - g.get("loss").item()) << ", grads max|diff| "
            << worst);
  }
  SUBCASE("the model's own loss()") {
    Tape tape;
    Var loss;
    {
      RecordScope rec(tape);
      loss = model->loss(ids, targets, -100);
    }
    CHECK(loss.value().item() == doctest::Approx(g.get("loss").item()).epsilon(kLossRtol));
    tape.backward(loss);
    const double worst = check_grads(*model, g);
    MESSAGE("model.loss() vs torch f64: loss |diff| "
            << std::abs(loss.value().item() - g.get("loss").item()) << ", grads max|diff| "
            << worst);
  }
  SUBCASE("forward without recording gives the same logits") {
    const Var logits = model->forward(ids);
    TQ_CHECK_CLOSE(logits.value(), g.get("logits"), kLogitsRtol, kLogitsAtol);
  }
}

// The power of the comparison, shown from C++: each weight edit below reproduces a plausible loader
// or model mistake, and the logits must then fail the comparison by a wide margin.
TEST_CASE("llama golden: deliberate mistakes fail the logits comparison") {
  const SafetensorsFile g = SafetensorsFile::open(test::source_path(kGolden));
  const Tensor ids = g.get("ids");
  const auto moved = [&](const char* what, const std::function<void(nn::LlamaForCausalLM&)>& edit) {
    const auto model = nn::load_llama(test::source_path(kModelDir));
    edit(*model);
    const DiffReport d =
        compare(model->forward(ids).value(), g.get("logits"), kLogitsRtol, kLogitsAtol);
    MESSAGE(std::string(what) << ": logits max|diff| " << d.max_abs);
    CHECK_FALSE(d.ok());
    CHECK(d.max_abs > 0.1);
  };
  const auto params = [](nn::LlamaForCausalLM& m) {
    std::map<std::string, Var> out;
    for (const auto& [name, p] : m.named_parameters()) out.emplace(name, p);
    return out;
  };
  const int64_t D = 16, Hkv = 2;
  // q/k rows in interleaved-pair order (no HF rotary permutation): rotate-half RoPE on them is
  // interleaved RoPE on the original weights.
  moved("q/k rows interleaved (wrong RoPE layout)", [&](nn::LlamaForCausalLM& m) {
    std::vector<int64_t> perm(static_cast<size_t>(D));
    for (int64_t i = 0; i < D / 2; ++i) {
      perm[static_cast<size_t>(2 * i)] = i;
      perm[static_cast<size_t>(2 * i + 1)] = i + D / 2;
    }
    for (auto& [name, p] : params(m)) {
      if (name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos)
        p.set_value(permute_head_rows(p.value(), D, perm));
    }
  });
  // kv heads 0 and 1 swapped in k_proj and v_proj: query head h reads kv head 1 - h // 2.
  moved("kv heads swapped (wrong GQA mapping)", [&](nn::LlamaForCausalLM& m) {
    std::vector<int64_t> perm(static_cast<size_t>(D * Hkv));
    for (int64_t j = 0; j < D * Hkv; ++j) perm[static_cast<size_t>(j)] = (j + D) % (D * Hkv);
    for (auto& [name, p] : params(m)) {
      if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos)
        p.set_value(permute_head_rows(p.value(), D * Hkv, perm));
    }
  });
  moved("RMSNorm weights reset to one", [&](nn::LlamaForCausalLM& m) {
    for (auto& [name, p] : params(m)) {
      if (name.find("norm") != std::string::npos)
        p.set_value(Tensor::ones(p.value().shape(), p.value().dtype()));
    }
  });
}
