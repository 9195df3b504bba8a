// infer::perplexity against PyTorch: the NLL of row 0 of the tiny-LLaMA golden batch is recomputed
// here, in double, from PyTorch's logits (tests/reference/data/tiny_llama_golden.safetensors), and
// compared with what perplexity() gets from our forward on the same tokens.
#include <doctest/doctest.h>

#include <cmath>

#include "core/safetensors.h"
#include "infer/perplexity.h"
#include "tests/test_util.h"

using namespace tq;

TEST_CASE("perplexity: matches the NLL computed from PyTorch's logits") {
  const auto model = nn::load_llama(test::source_path("tests/reference/data/tiny_llama"));
  const SafetensorsFile g = SafetensorsFile::open(test::source_path("tests/reference/data/tiny_llama_golden.safetensors"));
  const Tensor ids = g.get("ids"), logits = g.get("logits");  // [B, T], [B, T, V]
  const int64_t T = ids.size(1), V = logits.size(2);
  std::vector<int32_t> tokens(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) tokens[static_cast<size_t>(t)] = static_cast<int32_t>(ids.at({0, t}));
  // Reference: predict tokens[t+1] from logits[0, t], t < T-1.
  double nll = 0;
  for (int64_t t = 0; t + 1 < T; ++t) {
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, logits.at({0, t, v}));
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(logits.at({0, t, v}) - mx);
    nll += mx + std::log(s) - logits.at({0, t, tokens[static_cast<size_t>(t + 1)]});
  }
  nll /= static_cast<double>(T - 1);
  const infer::PerplexityResult r = infer::perplexity(*model, tokens, T);  // one window
  CHECK(r.tokens == T - 1);
  CHECK(r.nll == doctest::Approx(nll).epsilon(1e-5));
  CHECK(r.ppl == doctest::Approx(std::exp(nll)).epsilon(1e-5));
  // Several windows: each predicts its own tokens; the count still covers every token once.
  const infer::PerplexityResult w = infer::perplexity(*model, tokens, 4);
  CHECK(w.tokens == T - 1);
  CHECK(w.nll > 0);
  CHECK_THROWS_WITH_AS(infer::perplexity(*model, {1, 100000}, 4), doctest::Contains("outside the model's vocabulary"),
                       Error);
}
