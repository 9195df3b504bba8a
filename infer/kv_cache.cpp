#include "infer/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "infer/fused_ops.h"

namespace tq::infer {

// Note [f16 KV cache]
// ~~~~~~~~~~~~~~~~~~~
// A decode step reads the whole cache of every layer: at depth 1024 of the LLaMA-3.2-1B shape that
// is 67 MB per token in f32, as much as a quarter of the ternary weights, and the f32 cache of 8192
// positions takes 1 GiB. f16 halves both (llama.cpp's default cache type is f16 too). Keys and
// values are rounded to nearest even when stored and converted back exactly when read (VCVTPH2PS in
// the AVX-512 kernels), so prefill and decode still see the same cached values and agree exactly;
// against the f32 cache the logits move by the rounding of K and V (≈ 2^-11 relative), measured in
// tests/infer/test_engine.cpp. EngineOptions::kv_cache "auto" picks f16 where the AVX-512 row
// kernels run and f32 elsewhere: the reference loops convert one value at a time, which is slow.

const char* kv_type_name(KvType t) { return t == KvType::f16 ? "f16" : "f32"; }

KvCache::KvCache(int64_t L, int64_t Hkv, int64_t S, int64_t D, KvType type)
    : Hkv_(Hkv), S_(S), D_(D), kstride_(kcache_elems(S, D)), type_(type) {
  const DType dt = type == KvType::f16 ? DType::f16 : DType::f32;
  k_ = Tensor::zeros({L, Hkv, kstride_}, dt);
  v_ = Tensor::zeros({L, Hkv, S, D}, dt);
}

size_t KvCache::bytes() const { return k_.nbytes() + v_.nbytes(); }

int64_t KvCache::elem_bytes() const { return type_ == KvType::f16 ? 2 : 4; }

char* KvCache::k_at(int64_t l, int64_t kh) const {
  return static_cast<char*>(k_.raw_data()) + (l * Hkv_ + kh) * kstride_ * elem_bytes();
}

char* KvCache::v_at(int64_t l, int64_t kh) const {
  return static_cast<char*>(v_.raw_data()) + (l * Hkv_ + kh) * S_ * D_ * elem_bytes();
}

void KvCache::store(int64_t l, int64_t kh, int64_t p, const float* k, const float* v) {
  const int64_t D = D_;
  if (type_ == KvType::f16) {
    auto* kt = reinterpret_cast<uint16_t*>(k_at(l, kh));
    f16_row(v, D, reinterpret_cast<uint16_t*>(v_at(l, kh)) + p * D);
    uint16_t kh16[256];  // k in chunks, then to its blocked slots
    for (int64_t d0 = 0; d0 < D; d0 += 256) {
      const int64_t m = std::min<int64_t>(256, D - d0);
      f16_row(k + d0, m, kh16);
      for (int64_t d = 0; d < m; ++d) kt[kcache_index(p, d0 + d, D)] = kh16[d];
    }
  } else {
    auto* kt = reinterpret_cast<float*>(k_at(l, kh));
    auto* vt = reinterpret_cast<float*>(v_at(l, kh)) + p * D;
    for (int64_t d = 0; d < D; ++d) kt[kcache_index(p, d, D)] = k[d];
    std::memcpy(vt, v, sizeof(float) * static_cast<size_t>(D));
  }
}

void KvCache::attend(int64_t l, int64_t kh, const float* q, int64_t nq, int64_t ldq, int64_t n,
                     float scale, float* scores, float* out, int64_t ldo) const {
  if (type_ == KvType::f16) {
    attend_group(q, nq, ldq, reinterpret_cast<const uint16_t*>(k_at(l, kh)),
                 reinterpret_cast<const uint16_t*>(v_at(l, kh)), n, D_, scale, scores, out, ldo);
  } else {
    attend_group(q, nq, ldq, reinterpret_cast<const float*>(k_at(l, kh)),
                 reinterpret_cast<const float*>(v_at(l, kh)), n, D_, scale, scores, out, ldo);
  }
}

namespace {
// K and V line by line in step; Locality is __builtin_prefetch's (3: L1, 2: L2), a constant.
template <int Locality>
void prefetch_in_step(const char* k, const char* v, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    __builtin_prefetch(k + o, 0, Locality);
    __builtin_prefetch(v + o, 0, Locality);
  }
}
}  // namespace

void KvCache::prefetch(int64_t l, int64_t kh, int64_t n, int64_t max_bytes, bool l1) const {
  const int64_t bytes = std::min(max_bytes, n * D_ * elem_bytes());
  if (l1) {
    prefetch_in_step<3>(k_at(l, kh), v_at(l, kh), bytes);
  } else {
    prefetch_in_step<2>(k_at(l, kh), v_at(l, kh), bytes);
  }
}

}  // namespace tq::infer
