// AVX2 ternary kernels (compiled with -mavx2 -mfma -mf16c): VPMADDUBSW + VPMADDWD on 8-row halves of
// each tile. The body is ternary_kernels_ymm.inc, shared with AVX-VNNI. Also the AVX2 streaming-read
// probe for quant/roofline.cpp.
#define TQ_YMM_SUFFIX avx2
#include "quant/ternary_kernels_ymm.inc"

namespace tq::quant::detail {

uint64_t read_stream_avx2(const uint8_t* p, size_t n) noexcept {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), x);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

}  // namespace tq::quant::detail
