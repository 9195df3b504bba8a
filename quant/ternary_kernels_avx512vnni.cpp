// AVX-512 VNNI ternary kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni): the body
// is ternary_kernels_zmm.inc, shared with the GFNI build (ternary_kernels_avx512gfni.cpp). Also the
// AVX-512 int8-peak and streaming-read probes for quant/roofline.cpp.
#define TQ_ZMM_SUFFIX avx512vnni
#define TQ_ZMM_GFNI 0
#include "quant/ternary_kernels_zmm.inc"

namespace tq::quant::detail {

double int8_dot_probe_avx512vnni(int64_t iters) noexcept {
  // 16 independent VPDPBUSD chains in zmm16–31 (latency × pipes with room), written in asm so the
  // compiler can neither spill nor shuffle the accumulators.
  if (iters <= 0) return 0.0;
  const __m512i u = _mm512_set1_epi8(2), s = _mm512_set1_epi8(-3);
  int64_t n = iters;
  __asm__ volatile(
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
        "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
        "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
        "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
        "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
        "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
        "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
        "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
        ".p2align 6\n\t1:\n\t"
        "vpdpbusd %[s], %[u], %%zmm16\n\t"
        "vpdpbusd %[s], %[u], %%zmm17\n\t"
        "vpdpbusd %[s], %[u], %%zmm18\n\t"
        "vpdpbusd %[s], %[u], %%zmm19\n\t"
        "vpdpbusd %[s], %[u], %%zmm20\n\t"
        "vpdpbusd %[s], %[u], %%zmm21\n\t"
        "vpdpbusd %[s], %[u], %%zmm22\n\t"
        "vpdpbusd %[s], %[u], %%zmm23\n\t"
        "vpdpbusd %[s], %[u], %%zmm24\n\t"
        "vpdpbusd %[s], %[u], %%zmm25\n\t"
        "vpdpbusd %[s], %[u], %%zmm26\n\t"
        "vpdpbusd %[s], %[u], %%zmm27\n\t"
        "vpdpbusd %[s], %[u], %%zmm28\n\t"
        "vpdpbusd %[s], %[u], %%zmm29\n\t"
        "vpdpbusd %[s], %[u], %%zmm30\n\t"
        "vpdpbusd %[s], %[u], %%zmm31\n\t"
        "dec %[n]\n\t"
        "jnz 1b"
        : [n] "+r"(n)
        : [u] "v"(u), [s] "v"(s)
        : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "cc");
  return static_cast<double>(iters) * 16 * 64 * 2;
}

uint64_t read_stream_avx512(const uint8_t* p, size_t n) noexcept {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, x);
  uint64_t r = 0;
  for (uint64_t v : lanes) r ^= v;
  return r;
}

}  // namespace tq::quant::detail
