// The one interface every evaluation and generation path in infer/ runs on, so `tqinfer` scores,
// samples and benchmarks the packed ternary engine (infer/engine.h) and the full-precision /
// fake-quant training graph (infer/fp_model.h, the `--fp` flag) through the same code.
//
//   std::unique_ptr<LanguageModel> lm = ...;           // engine or fp adaptor
//   lm->reset();                                       // empty context (KV cache cleared)
//   std::vector<float> logits(n * lm->vocab_size());
//   lm->forward(ids.data(), n, logits.data(), /*all_logits=*/true);   // prefill: [n, V]
//   lm->forward(&next, 1, logits.data(), /*all_logits=*/false);       // decode one token: [V]
//
// A model keeps its context between calls: forward() appends n tokens at position() and advances it.
// Exceeding max_context() is a tq::Error naming the limit.
#pragma once

#include <cstdint>
#include <string>

namespace tq::infer {

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual int32_t vocab_size() const = 0;
  virtual int64_t max_context() const = 0;  // tokens the context can hold
  virtual int64_t position() const = 0;     // tokens in the context now
  virtual void reset() = 0;                 // empty the context
  // Appends ids[0..n) to the context. all_logits: writes logits [n, V] for every new position;
  // otherwise only the last position's [V]. Logits are f32, unnormalised.
  virtual void forward(const int32_t* ids, int64_t n, float* logits, bool all_logits) = 0;
  // A short human-readable description ("packed ternary avx512vnni, 2 threads", "fp32 training graph").
  virtual std::string describe() const = 0;
};

}  // namespace tq::infer
