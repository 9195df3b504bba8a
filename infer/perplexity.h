// Perplexity of a token stream under a causal LM, the way lm-evaluation-harness's wikitext task and
// llama.cpp's perplexity tool do it with non-overlapping windows: the stream is cut into windows of
// `ctx` + 1 tokens sharing their boundary token; every token after the first is predicted once from
// the tokens before it inside its window. Two paths: the nn model (autograd forward in eval mode) and
// any infer::LanguageModel (packed engine or fp adaptor), which also gives bits per byte:
//   bits_per_byte = Σ NLL (nats) / ln 2 / (UTF-8 bytes of the scored text)
// (the harness's wikitext `bits_per_byte`; the BOS that starts the stream is never predicted, so every
// byte of the text is covered by the predicted tokens).
//
//   PerplexityResult r = perplexity(*lm, tok->encode(text, true), 512, static_cast<int64_t>(text.size()));
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "infer/language_model.h"
#include "nn/llama.h"

namespace tq::infer {

struct PerplexityResult {
  int64_t tokens = 0;  // predicted tokens
  double nll = 0;      // mean negative log-likelihood per predicted token (nats)
  double ppl = 0;      // exp(nll)
  double nll_sum = 0;  // total NLL (nats)
  int64_t bytes = 0;   // UTF-8 bytes of the scored text (0: unknown, bits_per_byte stays 0)
  double bits_per_byte = 0;
};

// Fills bytes and bits_per_byte from nll_sum.
void set_bits_per_byte(PerplexityResult& r, int64_t text_bytes);

// progress(done_windows, total_windows) is called after each window when given.
PerplexityResult perplexity(const nn::LlamaForCausalLM& model, const std::vector<int32_t>& tokens,
                            int64_t ctx, const std::function<void(int64_t, int64_t)>& progress = {});
// The same windows on a LanguageModel (reset per window, one prefill with all logits); text_bytes > 0
// also gives bits per byte.
PerplexityResult perplexity(LanguageModel& lm, const std::vector<int32_t>& tokens, int64_t ctx,
                            int64_t text_bytes = 0, const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace tq::infer
