// The engine's KV cache: for every layer and KV head, the keys after RoPE in blocks of 16 positions
// (Note [Blocked K cache] in infer/fused_ops.h) and the values [S, D], stored as f32 or as f16
// (Note [f16 KV cache] in kv_cache.cpp). Values are written one (position, KV head) at a time and
// read only through attend(), so the element type stays inside this file and fused_ops.
//
//   KvCache kv(L, Hkv, S, D, KvType::f16);
//   kv.store(l, kh, p, k, v);                                   // k, v [D] of position p
//   kv.attend(l, kh, q, nq, D, p + 1, scale, scores, out, D);   // fused_ops.h attend_group
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace tq::infer {

enum class KvType : uint8_t { f32, f16 };
const char* kv_type_name(KvType t);  // "f32" | "f16"

class KvCache {
 public:
  KvCache() = default;
  KvCache(int64_t L, int64_t Hkv, int64_t S, int64_t D, KvType type);

  KvType type() const { return type_; }
  size_t bytes() const;  // K and V of all layers, as allocated for S positions

  // Cache position p of KV head kh in layer l: k, v [D] (f16: rounded to nearest even; beyond
  // ±65504 they become ±inf, as llama.cpp's f16 cache does).
  void store(int64_t l, int64_t kh, int64_t p, const float* k, const float* v);
  // attend_group (infer/fused_ops.h) of nq queries against positions 0..n-1 of (l, kh).
  void attend(int64_t l, int64_t kh, const float* q, int64_t nq, int64_t ldq, int64_t n, float scale,
              float* scores, float* out, int64_t ldo) const;
  // Software prefetch of the start of (l, kh)'s K and V for n cached positions, at most max_bytes of
  // each, K and V line by line in step (Note [KV prefetch] in infer/engine.cpp): into L1 (l1) or L2.
  void prefetch(int64_t l, int64_t kh, int64_t n, int64_t max_bytes, bool l1) const;

 private:
  int64_t elem_bytes() const;               // 2 (f16) or 4 (f32)
  char* k_at(int64_t l, int64_t kh) const;  // the start of (l, kh)'s K / V
  char* v_at(int64_t l, int64_t kh) const;
  int64_t Hkv_ = 0, S_ = 0, D_ = 0, kstride_ = 0;  // kstride_: elements of one head's K cache
  KvType type_ = KvType::f32;
  Tensor k_, v_;  // [L, Hkv, kcache_elems(S, D)], [L, Hkv, S, D] of f32 or f16
};

}  // namespace tq::infer
