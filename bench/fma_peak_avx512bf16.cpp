// AVX512-BF16 dot-product throughput kernel (compiled with -mavx512f -mavx512bf16): vdpbf16ps
// does 32 bf16 multiply-adds into 16 f32 lanes, the instruction oneDNN's bf16 GEMM is built on.
#include <immintrin.h>

#include "bench/fma_peak.h"

namespace tq::bench {

double dpbf16_kernel_avx512(int64_t iters) {
  constexpr int kChains = 16;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(c));
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  for (int64_t i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], x, y);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];  // (_mm512_reduce_add_ps trips a GCC 12 -Wuninitialized)
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0] + lanes[15];  // keeps the loop alive
  (void)sink;
  return static_cast<double>(iters) * kChains * 32 * 2;
}

}  // namespace tq::bench
