// Causal self-attention with grouped-query heads (GQA) as a fused, memory-lean op, plus a composed
// reference built from basic ops for the tests.
//
//   Var y = causal_attention(q, k, v, 1.0 / std::sqrt(double(D)));  // q [B, T, H, D], k/v [B, T, Hkv, D]
//
// Query head h reads kv head h / (H / Hkv) (HF repeat_kv); key s > query t is masked out. The
// forward keeps only the output and the row log-sum-exp [B, H, T]; the backward recomputes the
// probabilities per (batch, head) from it, so no [T, T] tensor outlives a call (FlashAttention-style
// recomputation, though the [T, T] scores of one head are materialised as scratch). Matches
// torch.nn.functional.scaled_dot_product_attention(is_causal=True, scale=scale) after repeat_kv.
#pragma once

#include "autograd/var.h"

namespace tq::autograd {

// q [B, T, H, D], k [B, T, Hkv, D], v [B, T, Hkv, D] (f32/f64, any strides), H % Hkv == 0
// -> [B, T, H, D] contiguous.
Var causal_attention(const Var& q, const Var& k, const Var& v, double scale);

// Same result from transpose/reshape/broadcast_to/matmul/scale/add/softmax with a constant −inf
// mask [T, T]; a test reference (it materialises [B, H, T, T]).
Var causal_attention_composed(const Var& q, const Var& k, const Var& v, double scale);

}  // namespace tq::autograd
