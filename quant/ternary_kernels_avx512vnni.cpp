// AVX-512 VNNI ternary kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni): one zmm
// holds a whole tile, the 16 rows of a row block are the 16 i32 lanes, and each VPDPBUSD multiplies
// 4 codes per row by 4 activation bytes broadcast to every lane. See Note [Packed ternary tile] and
// docs/kernels.md. Raw pointers only (see ternary_kernels.h).
// GCC 12 reports false -W(maybe-)uninitialized inside several AVX-512 intrinsics (their
// _mm512_undefined_ps pass-through operand).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <cstring>

#include "quant/ternary_kernels.h"

namespace tq::quant::detail {

namespace {

constexpr int64_t kChunkGroups = 64;  // α of 64 groups × 16 rows transposed on the stack (4 KiB)
constexpr int64_t kTokenChunk = 64;   // prefill tokens per pass over the row blocks

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// In-register transpose of a 16×16 f32 matrix (r[i] = row i → r[c] = column c): unpack within 128-bit
// lanes (pairs of rows), shuffle (4 rows per lane), then two rounds of 128-bit lane shuffles.
inline void transpose16(__m512* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int b = 0; b < 4; ++b) {  // u[4b + j], lane k: column 4k + j of rows 4b … 4b+3
    u[4 * b + 0] = _mm512_shuffle_ps(t[4 * b], t[4 * b + 2], 0x44);
    u[4 * b + 1] = _mm512_shuffle_ps(t[4 * b], t[4 * b + 2], 0xEE);
    u[4 * b + 2] = _mm512_shuffle_ps(t[4 * b + 1], t[4 * b + 3], 0x44);
    u[4 * b + 3] = _mm512_shuffle_ps(t[4 * b + 1], t[4 * b + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
    const __m512 v_hi = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 x_lo = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 x_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(v_lo, x_lo, 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(v_lo, x_lo, 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(v_hi, x_hi, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(v_hi, x_hi, 0xDD);
  }
}

// α of rows 16·rb … 16·rb+15, groups [g0, g0+ng), as f32 [ng][16] (rows in lanes): 16 groups of each
// row are one masked 32-byte load + VCVTPH2PS, then a 16×16 transpose (GEMV spent a third of its time
// here with scalar conversions).
void load_alpha(const TernaryArgs& a, int64_t rb, int64_t g0, int64_t ng, float* out) {
  const int64_t G = a.cols / 128;
  for (int64_t gc = 0; gc < ng; gc += 16) {
    const int64_t n = ng - gc < 16 ? ng - gc : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    __m512 r[16];
    for (int64_t i = 0; i < 16; ++i) {
      r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a.scales + (16 * rb + i) * G + g0 + gc));
    }
    transpose16(r);
    for (int64_t c = 0; c < n; ++c) _mm512_store_ps(out + (gc + c) * 16, r[c]);
  }
}

// NT tokens [t0, t0+NT) × row block rb × groups [g0, g0+ng). NA accumulators per token keep enough
// independent VPDPBUSD chains in flight when NT is small. With `sums` the raw group sums are stored;
// otherwise y (f32) accumulates the epilogue, starting from 0 (first chunk) or from y itself.
template <int NT, int NA>
void block(const TernaryArgs& a, int64_t rb, int64_t t0, int64_t g0, int64_t ng, const float* alpha,
           float* y, int64_t ldy, int32_t* sums) {
  const int64_t G = a.cols / 128, KT = a.cols / 16;
  const bool first = g0 == 0, last = g0 + ng == G;
  const int64_t valid = a.rows - 16 * rb;
  const __mmask16 mask = valid >= 16 ? static_cast<__mmask16>(0xFFFF)
                                     : static_cast<__mmask16>((1u << (valid > 0 ? valid : 0)) - 1u);
  const __m512i m3 = _mm512_set1_epi8(3);
  __m512 yacc[NT];
  for (int t = 0; t < NT; ++t) {
    yacc[t] = (first || sums != nullptr) ? _mm512_setzero_ps()
                                         : _mm512_maskz_loadu_ps(mask, y + (t0 + t) * ldy + 16 * rb);
  }
  const uint8_t* tiles = a.codes + rb * KT * 64;
  for (int64_t g = g0; g < g0 + ng; ++g) {
    __m512i acc[NT][NA];
    for (int t = 0; t < NT; ++t) {
      for (int k = 0; k < NA; ++k) acc[t][k] = _mm512_setzero_si512();
    }
    for (int64_t kt = 8 * g; kt < 8 * g + 8; ++kt) {
      const __m512i w = _mm512_loadu_si512(tiles + kt * 64);
      const __m512i c[4] = {_mm512_and_si512(w, m3), _mm512_and_si512(_mm512_srli_epi16(w, 2), m3),
                            _mm512_and_si512(_mm512_srli_epi16(w, 4), m3),
                            _mm512_and_si512(_mm512_srli_epi16(w, 6), m3)};
      for (int t = 0; t < NT; ++t) {
        const int8_t* xq = a.q + (t0 + t) * a.cols + kt * 16;
        for (int s = 0; s < 4; ++s) {
          acc[t][s % NA] = _mm512_dpbusd_epi32(acc[t][s % NA], c[s], _mm512_set1_epi32(load_i32(xq + 4 * s)));
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      __m512i sum = acc[t][0];
      for (int k = 1; k < NA; ++k) sum = _mm512_add_epi32(sum, acc[t][k]);
      const int64_t tg = (t0 + t) * G + g;
      if (sums != nullptr) {
        alignas(64) int32_t tmp[16];
        _mm512_store_si512(tmp, sum);
        for (int64_t r = 0; r < 16; ++r) sums[((t0 + t) * a.rows_padded + 16 * rb + r) * G + g] = tmp[r];
        continue;
      }
      const float s = a.per_group ? a.xscale[tg] : a.xscale[t0 + t];
      const __m512 p = _mm512_mul_ps(_mm512_load_ps(alpha + (g - g0) * 16), _mm512_set1_ps(s));
      const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(a.gsum[tg])));
      yacc[t] = _mm512_fmadd_ps(d, p, yacc[t]);
    }
  }
  if (sums != nullptr) return;
  const __m512 bias = _mm512_loadu_ps(a.bias + 16 * rb);
  for (int t = 0; t < NT; ++t) {
    const __m512 out = last ? _mm512_add_ps(yacc[t], bias) : yacc[t];
    _mm512_mask_storeu_ps(y + (t0 + t) * ldy + 16 * rb, mask, out);
  }
}

template <int NT>
void block_nt(const TernaryArgs& a, int64_t rb, int64_t t0, int64_t g0, int64_t ng, const float* alpha,
              float* y, int64_t ldy, int32_t* sums) {
  constexpr int NA = NT == 1 ? 4 : NT < 4 ? 2 : 1;
  block<NT, NA>(a, rb, t0, g0, ng, alpha, y, ldy, sums);
}

void run(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy, int32_t* sums) {
  const int64_t G = a.cols / 128;
  alignas(64) float alpha[kChunkGroups * 16];
  // Prefill: the activations of kTokenChunk tokens stay in L2 while every row block passes over them
  // (with all T tokens per row block, T·cols bytes would be re-read from L3 for each row block).
  for (int64_t tc = 0; tc < a.tokens; tc += kTokenChunk) {
    const int64_t te = a.tokens - tc < kTokenChunk ? a.tokens : tc + kTokenChunk;
    for (int64_t rb = r0 / 16; rb < r1 / 16; ++rb) {
      if (sums == nullptr && 16 * rb >= a.rows) continue;  // only padding rows: nothing to write
      for (int64_t g0 = 0; g0 < G; g0 += kChunkGroups) {
        const int64_t ng = G - g0 < kChunkGroups ? G - g0 : kChunkGroups;
        if (sums == nullptr) load_alpha(a, rb, g0, ng, alpha);
        int64_t t0 = tc;
        for (; t0 + 8 <= te; t0 += 8) block_nt<8>(a, rb, t0, g0, ng, alpha, y, ldy, sums);
        switch (te - t0) {
          case 7: block_nt<7>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 6: block_nt<6>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 5: block_nt<5>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 4: block_nt<4>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 3: block_nt<3>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 2: block_nt<2>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          case 1: block_nt<1>(a, rb, t0, g0, ng, alpha, y, ldy, sums); break;
          default: break;
        }
      }
    }
  }
}

}  // namespace

void gemm_rows_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept {
  run(a, r0, r1, y, ldy, nullptr);
}

void group_sums_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept {
  run(a, r0, r1, nullptr, 0, acc);
}

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
