#include "nn/attention.h"

#include <cmath>
#include <memory>

#include "autograd/attention.h"
#include "autograd/ops.h"

namespace tq::nn {

using autograd::Var;

RotaryEmbedding::RotaryEmbedding(const autograd::RopeConfig& cfg)
    : inv_freq_(autograd::rope_inv_freq(cfg)) {}

Var RotaryEmbedding::apply(const Var& x, int64_t pos0) const {
  return autograd::rope(x, inv_freq_, pos0);
}

LlamaAttention::LlamaAttention(const LlamaConfig& cfg)
    : C_(cfg.hidden_size),
      H_(cfg.num_attention_heads),
      Hkv_(cfg.resolved_kv_heads()),
      D_(cfg.resolved_head_dim()),
      rotary_(cfg.rope_config()) {
  register_module("q_proj", std::make_shared<Linear>(C_, H_ * D_));
  register_module("k_proj", std::make_shared<Linear>(C_, Hkv_ * D_));
  register_module("v_proj", std::make_shared<Linear>(C_, Hkv_ * D_));
  register_module("o_proj", std::make_shared<Linear>(H_ * D_, C_));
}

Var LlamaAttention::forward(const Var& x, int64_t pos0) const {
  TQ_CHECK(x.dim() == 3 && x.size(2) == C_, "[LlamaAttention] input {} is not [B, T, {}]",
           shape_str(x.shape()), C_);
  const int64_t B = x.size(0), T = x.size(1);
  Var q = autograd::reshape(child<Linear>("q_proj").forward(x), {B, T, H_, D_});
  Var k = autograd::reshape(child<Linear>("k_proj").forward(x), {B, T, Hkv_, D_});
  Var v = autograd::reshape(child<Linear>("v_proj").forward(x), {B, T, Hkv_, D_});
  q = rotary_.apply(q, pos0);
  k = rotary_.apply(k, pos0);
  Var y = autograd::causal_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(D_)));
  return child<Linear>("o_proj").forward(autograd::reshape(y, {B, T, H_ * D_}));
}

}  // namespace tq::nn
