// Basic layers with HF parameter names: Linear (torch.nn.Linear without bias by default), Embedding
// and RMSNorm (LlamaRMSNorm). Each owns its parameters as f32 autograd::Var leaves, zero-filled
// (RMSNorm: ones) until init_parameters() or load_state_dict().
#pragma once

#include <cstdint>

#include "nn/module.h"

namespace tq::nn {

// y = x·Wᵀ (+ b); weight [out, in], bias [out]. forward() is virtual so quantized linears can
// replace it via Module::replace_module.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = false);
  const char* type_name() const override { return "Linear"; }
  virtual autograd::Var forward(const autograd::Var& x /*[..., in]*/) const;  // -> [..., out]
  void init_parameters(Rng& rng, double stddev) override;  // weight ~ N(0, stddev²), bias 0

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const autograd::Var& weight() const { return weight_; }  // [out, in]
  const autograd::Var& bias() const { return bias_; }      // [out] or undefined

 private:
  int64_t in_features_, out_features_;
  autograd::Var weight_;  // [out, in]
  autograd::Var bias_;    // [out]
};

// torch.nn.Embedding: weight [V, C]; ids i32 [...] -> [..., C].
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim);
  const char* type_name() const override { return "Embedding"; }
  autograd::Var forward(const Tensor& ids) const;
  void init_parameters(Rng& rng, double stddev) override;  // N(0, stddev²)
  const autograd::Var& weight() const { return weight_; }  // [V, C]

 private:
  autograd::Var weight_;  // [V, C]
};

// LlamaRMSNorm via the fused autograd::rms_norm; weight [C], initialised to ones.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps);
  const char* type_name() const override { return "RMSNorm"; }
  autograd::Var forward(const autograd::Var& x /*[..., C]*/) const;
  void init_parameters(Rng& rng, double stddev) override;  // ones
  const autograd::Var& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  autograd::Var weight_;  // [C]
  double eps_;
};

}  // namespace tq::nn
