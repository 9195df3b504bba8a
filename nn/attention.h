// LLaMA self-attention (HF LlamaAttention): q/k/v/o projections without bias, rotate-half RoPE
// (with llama3 scaling), grouped-query heads and a causal mask, all through the fused autograd ops.
//
//   LlamaAttention attn(cfg);
//   Var y = attn.forward(x /*[B, T, C]*/, pos0);  // token t sits at position pos0 + t
//
// Legend: B batch, T time, C hidden, H heads, Hkv KV heads, D head_dim.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/rope.h"
#include "nn/layers.h"
#include "nn/llama_config.h"

namespace tq::nn {

// The RoPE frequencies of one config (no parameters): HF LlamaRotaryEmbedding.
class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const autograd::RopeConfig& cfg);
  autograd::Var apply(const autograd::Var& x /*[B, T, H, D]*/, int64_t pos0) const;
  const std::vector<double>& inv_freq() const { return inv_freq_; }  // [D/2]

 private:
  std::vector<double> inv_freq_;  // [D/2]
};

class LlamaAttention : public Module {
 public:
  explicit LlamaAttention(const LlamaConfig& cfg);
  const char* type_name() const override { return "LlamaAttention"; }
  autograd::Var forward(const autograd::Var& x /*[B, T, C]*/, int64_t pos0) const;  // [B, T, C]

  int64_t num_heads() const { return H_; }
  int64_t num_kv_heads() const { return Hkv_; }
  int64_t head_dim() const { return D_; }

 private:
  int64_t C_, H_, Hkv_, D_;
  RotaryEmbedding rotary_;
};

}  // namespace tq::nn
