// AVX2+FMA f32 FMA throughput kernel (compiled with -mavx2 -mfma). 12 independent ymm chains plus
// two constants fit the 16 ymm registers.
#include <immintrin.h>

#include "bench/fma_peak.h"

namespace tq::bench {

double fma_kernel_avx2(int64_t iters) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(c));
  const __m256 mul = _mm256_set1_ps(0.9999999f);
  const __m256 add = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  volatile float sink = lanes[0] + lanes[7];  // keeps the loop alive
  (void)sink;
  return static_cast<double>(iters) * kChains * 8 * 2;
}

}  // namespace tq::bench
