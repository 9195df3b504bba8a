#include "nn/layers.h"

#include "autograd/ops.h"
#include "autograd/rms_norm.h"
#include "core/rng.h"

namespace tq::nn {

using autograd::Var;

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
  TQ_CHECK(in_features > 0 && out_features > 0, "[Linear] bad sizes in={} out={}", in_features,
           out_features);
  weight_ = register_parameter(
      "weight", Var::parameter(Tensor::zeros({out_features, in_features}), "weight"));
  if (bias)
    bias_ = register_parameter("bias", Var::parameter(Tensor::zeros({out_features}), "bias"));
}

Var Linear::forward(const Var& x) const {
  TQ_CHECK(x.dim() >= 1 && x.size(-1) == in_features_,
           "[Linear] input {} does not end in in_features {}", shape_str(x.shape()), in_features_);
  return autograd::linear(x, weight_, bias_);
}

void Linear::init_parameters(Rng& rng, double stddev) {
  weight_.set_value(Tensor::randn(weight_.shape(), rng, stddev));
  if (bias_.defined()) bias_.set_value(Tensor::zeros(bias_.shape()));
}

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim) {
  TQ_CHECK(num_embeddings > 0 && embedding_dim > 0, "[Embedding] bad sizes V={} C={}",
           num_embeddings, embedding_dim);
  weight_ = register_parameter(
      "weight", Var::parameter(Tensor::zeros({num_embeddings, embedding_dim}), "weight"));
}

Var Embedding::forward(const Tensor& ids) const {
  return autograd::embedding(weight_, ids);
}

void Embedding::init_parameters(Rng& rng, double stddev) {
  weight_.set_value(Tensor::randn(weight_.shape(), rng, stddev));
}

RMSNorm::RMSNorm(int64_t dim, double eps) : eps_(eps) {
  TQ_CHECK(dim > 0 && eps > 0, "[RMSNorm] bad dim {} or eps {}", dim, eps);
  weight_ = register_parameter("weight", Var::parameter(Tensor::ones({dim}), "weight"));
}

Var RMSNorm::forward(const Var& x) const {
  return autograd::rms_norm(x, weight_, eps_);
}

void RMSNorm::init_parameters(Rng& /*rng*/, double /*stddev*/) {
  weight_.set_value(Tensor::ones(weight_.shape()));
}

}  // namespace tq::nn
