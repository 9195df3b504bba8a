#include "infer/perplexity.h"

#include <algorithm>
#include <cmath>

#include "autograd/tape.h"

namespace tq::infer {

PerplexityResult perplexity(const nn::LlamaForCausalLM& model, const std::vector<int32_t>& tokens,
                            int64_t ctx, const std::function<void(int64_t, int64_t)>& progress) {
  TQ_CHECK(ctx >= 1, "[perplexity] context length must be >= 1, got {}", ctx);
  const int64_t n = static_cast<int64_t>(tokens.size());
  TQ_CHECK(n >= 2, "[perplexity] need at least 2 tokens, got {} — hint: the text is empty or too short", n);
  const int64_t V = model.config().vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    TQ_CHECK(tokens[static_cast<size_t>(i)] >= 0 && tokens[static_cast<size_t>(i)] < V,
             "[perplexity] token {} at position {} is outside the model's vocabulary [0, {}) — hint: "
             "the tokenizer does not belong to this model", tokens[static_cast<size_t>(i)], i, V);
  }
  autograd::NoGradGuard no_grad;
  const int64_t windows = (n - 1 + ctx - 1) / ctx;
  double nll_sum = 0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = w * ctx;
    const int64_t len = std::min(ctx, n - 1 - start);  // predictions in this window
    Tensor ids = Tensor::empty({1, len}, DType::i32), tgt = Tensor::empty({1, len}, DType::i32);
    for (int64_t t = 0; t < len; ++t) {
      ids.data<int32_t>()[t] = tokens[static_cast<size_t>(start + t)];
      tgt.data<int32_t>()[t] = tokens[static_cast<size_t>(start + t + 1)];
    }
    const double mean = model.loss(ids, tgt).value().item();
    nll_sum += mean * static_cast<double>(len);
    count += len;
    if (progress) progress(w + 1, windows);
  }
  PerplexityResult r;
  r.tokens = count;
  r.nll = nll_sum / static_cast<double>(count);
  r.ppl = std::exp(r.nll);
  r.nll_sum = nll_sum;
  return r;
}

void set_bits_per_byte(PerplexityResult& r, int64_t text_bytes) {
  TQ_CHECK(text_bytes >= 0, "[perplexity] negative byte count {}", text_bytes);
  r.bytes = text_bytes;
  r.bits_per_byte = text_bytes > 0 ? r.nll_sum / std::log(2.0) / static_cast<double>(text_bytes) : 0.0;
}

PerplexityResult perplexity(LanguageModel& lm, const std::vector<int32_t>& tokens, int64_t ctx, int64_t text_bytes,
                            const std::function<void(int64_t, int64_t)>& progress) {
  TQ_CHECK(ctx >= 1, "[perplexity] context length must be >= 1, got {}", ctx);
  TQ_CHECK(ctx <= lm.max_context(), "[perplexity] context length {} exceeds the model's max_context {}", ctx,
           lm.max_context());
  const int64_t n = static_cast<int64_t>(tokens.size());
  TQ_CHECK(n >= 2, "[perplexity] need at least 2 tokens, got {} — hint: the text is empty or too short", n);
  const int64_t V = lm.vocab_size();
  for (int64_t i = 0; i < n; ++i) {
    TQ_CHECK(tokens[static_cast<size_t>(i)] >= 0 && tokens[static_cast<size_t>(i)] < V,
             "[perplexity] token {} at position {} is outside the model's vocabulary [0, {}) — hint: "
             "the tokenizer does not belong to this model", tokens[static_cast<size_t>(i)], i, V);
  }
  const int64_t windows = (n - 1 + ctx - 1) / ctx;
  std::vector<float> logits(static_cast<size_t>(ctx * V));  // [ctx, V]
  double nll_sum = 0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = w * ctx;
    const int64_t len = std::min(ctx, n - 1 - start);  // predictions in this window
    lm.reset();
    lm.forward(tokens.data() + start, len, logits.data(), /*all_logits=*/true);
    for (int64_t t = 0; t < len; ++t) {
      const float* row = logits.data() + t * V;
      double mx = -INFINITY;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
      double s = 0;
      for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - mx);
      nll_sum += mx + std::log(s) - static_cast<double>(row[tokens[static_cast<size_t>(start + t + 1)]]);
    }
    count += len;
    if (progress) progress(w + 1, windows);
  }
  PerplexityResult r;
  r.tokens = count;
  r.nll_sum = nll_sum;
  r.nll = nll_sum / static_cast<double>(count);
  r.ppl = std::exp(r.nll);
  set_bits_per_byte(r, text_bytes);
  return r;
}

}  // namespace tq::infer
