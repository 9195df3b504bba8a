// AVX-VNNI row kernel of the inference plan (compiled with -mavx2 -mfma -mf16c -mavxvnni), for CPUs
// whose ternary kernels run AVX-VNNI: the int8 LM head with the VEX VPDPBUSD. The other row kernels
// of such CPUs are the AVX2 ones (fused_ops_avx2.cpp). Tested against the reference loop
// (tests/infer/test_fused_ops.cpp under the infer_avxvnni CTest run). Raw pointers only (fused_ops_simd.h).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "infer/fused_ops_simd.h"

namespace tq::infer::detail {

namespace {

// Σ_i (x_i + 128)·w_i over one row of C bytes: x biased to u8 by an XOR with 0x80 (as the AVX-512
// head), w the signed operand, VPDPBUSD into i32 (no saturation: the four products of a lane sum to
// at most 4·255·128). 3 operations per 32 bytes (load x, XOR, VPDPBUSD with w from memory) against
// the AVX2 head's 7; four chains. The caller subtracts 128·Σ w (wsum). Prefetch as the AVX2 head.
inline int32_t head_row(const int8_t* w, int64_t C, const int8_t* x) {
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                  _mm256_setzero_si256()};
  auto step = [&](__m256i acc, const int8_t* wp, const int8_t* xp) {
    const __m256i xu = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp)), bias);
    return _mm256_dpbusd_avx_epi32(acc, xu, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp)));
  };
  int64_t i = 0;
  for (; i + 128 <= C; i += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(w + i + kHeadPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + i + 64 + kHeadPrefetchBytes), _MM_HINT_T0);
    for (int k = 0; k < 4; ++k) a[k] = step(a[k], w + i + 32 * k, x + i + 32 * k);
  }
  for (; i + 32 <= C; i += 32) a[0] = step(a[0], w + i, x + i);
  if (i < C) {  // zero-padded w tail: (x + 128)·0 adds nothing
    alignas(32) int8_t wb[32] = {}, xb[32] = {};
    std::memcpy(wb, w + i, static_cast<size_t>(C - i));
    std::memcpy(xb, x + i, static_cast<size_t>(C - i));
    a[1] = step(a[1], wb, xb);
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(a[0], a[1]), _mm256_add_epi32(a[2], a[3]));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  return _mm_cvtsi128_si32(h);
}

}  // namespace

void lm_head_int8_avxvnni(const int8_t* w, const float* sw, const int32_t* wsum, int64_t r0,
                          int64_t r1, int64_t C, const int8_t* qx, const float* sx, int64_t T,
                          float* logits, int64_t ldo) noexcept {
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {  // the row stays in L1 for the other tokens
      const int32_t d = head_row(w + j * C, C, qx + t * C) - 128 * wsum[j];  // Σ (q+128)·w − 128·Σ w
      logits[t * ldo + j] = sx[t] * sw[j] * static_cast<float>(d);
    }
  }
}

}  // namespace tq::infer::detail
