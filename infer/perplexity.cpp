#include "infer/perplexity.h"

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
  return r;
}

}  // namespace tq::infer
