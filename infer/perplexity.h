// Perplexity of a token stream under a causal LM, the way lm-evaluation-harness's wikitext task and
// llama.cpp's perplexity tool do it with non-overlapping windows: the stream is cut into windows of
// `ctx` + 1 tokens sharing their boundary token; every token after the first is predicted once from
// the tokens before it inside its window. Full-precision path (autograd forward in eval mode).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "nn/llama.h"

namespace tq::infer {

struct PerplexityResult {
  int64_t tokens = 0;  // predicted tokens
  double nll = 0;      // mean negative log-likelihood per predicted token (nats)
  double ppl = 0;      // exp(nll)
};

// progress(done_windows, total_windows) is called after each window when given.
PerplexityResult perplexity(const nn::LlamaForCausalLM& model, const std::vector<int32_t>& tokens,
                            int64_t ctx, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace tq::infer
