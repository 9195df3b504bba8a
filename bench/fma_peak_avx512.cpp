// AVX-512F f32 FMA throughput kernel (compiled with -mavx512f). 16 independent zmm chains cover
// FMA latency (4-5 cycles) times two FMA pipes with room to spare.
#include <immintrin.h>

#include "bench/fma_peak.h"

namespace tq::bench {

double fma_kernel_avx512(int64_t iters) {
  constexpr int kChains = 16;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(c));
  const __m512 mul = _mm512_set1_ps(0.9999999f);
  const __m512 add = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    // Fully unrolled by the compiler: kChains independent vfmadd per iteration.
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], mul, add);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  alignas(64) float lanes[16];  // (_mm512_reduce_add_ps trips a GCC 12 -Wuninitialized)
  _mm512_store_ps(lanes, sum);
  volatile float sink = lanes[0] + lanes[15];  // keeps the loop alive
  (void)sink;
  return static_cast<double>(iters) * kChains * 16 * 2;
}

}  // namespace tq::bench
