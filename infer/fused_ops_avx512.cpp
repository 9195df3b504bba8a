// AVX-512 row kernels of the inference plan (compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni -mfma): attention of a GQA query group over the blocked K cache, SwiGLU with a
// vectorised exp, and the int8 LM head with VPDPBUSD. The plain loops in fused_ops.cpp are the
// reference they are tested against (tests/infer/test_fused_ops.cpp). Raw pointers only (see
// fused_ops_simd.h).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "infer/fused_ops_simd.h"

namespace tq::infer::detail {

namespace {

// exp(x) in f32 (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial, then ·2^n by
// VSCALEFPS; ≈ 1 ulp). x is clamped to [-104, 88.7]: below, the result is 0; above, f32 overflows.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kExpLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int k = 1; k < 6; ++k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[k]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t k) {  // the first k (≤ 16) lanes
  return k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << k) - 1u);
}

// 16 cached values as f32: the f32 cache as is, the f16 cache (IEEE bit patterns) by VCVTPH2PS,
// which is exact.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Scores of NQ queries against the 16 keys of one cache block: s[i][lane] = scale · Σ_d
// q_i[d]·K[d][lane]. Two partial sums per query (even / odd d) keep 2·NQ FMA chains in flight.
template <int NQ, class E>
void block_scores(const float* q, int64_t ldq, const E* kb, int64_t D, float scale, __mmask16 m,
                  float* const* sc) {
  __m512 a[NQ], b[NQ];
  for (int i = 0; i < NQ; ++i) a[i] = b[i] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d += 2) {
    const __m512 k0 = load16(kb + d * 16), k1 = load16(kb + (d + 1) * 16);
    for (int i = 0; i < NQ; ++i) {
      a[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * ldq + d]), k0, a[i]);
      b[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * ldq + d + 1]), k1, b[i]);
    }
  }
  for (int i = 0; i < NQ; ++i) {
    _mm512_mask_storeu_ps(sc[i], m,
                          _mm512_mul_ps(_mm512_add_ps(a[i], b[i]), _mm512_set1_ps(scale)));
  }
}

template <int NQ, class E>
void group_scores(const float* q, int64_t ldq, const E* Kt, int64_t n, int64_t D, float scale,
                  float* scores, int64_t lds) {
  for (int64_t s0 = 0; s0 < n; s0 += 16) {
    float* sc[NQ];
    for (int i = 0; i < NQ; ++i) sc[i] = scores + i * lds + s0;
    block_scores<NQ>(q, ldq, Kt + s0 * D, D, scale, tail_mask(n - s0), sc);
  }
}

// scores[0..n) ← softmax(scores): exp(s − max) in place, summed over 16 lanes (fixed order), then
// scaled by 1/sum — the probabilities p_s that multiply V.
void softmax_inplace(float* sc, int64_t n) {
  __m512 mx = _mm512_set1_ps(-__builtin_inff());
  for (int64_t s = 0; s < n; s += 16) {
    mx = _mm512_max_ps(
        mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), tail_mask(n - s), sc + s));
  }
  const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t s = 0; s < n; s += 16) {
    const __mmask16 m = tail_mask(n - s);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + s), vmax));
    _mm512_mask_storeu_ps(sc + s, m, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (int64_t s = 0; s < n; s += 16) {
    const __mmask16 m = tail_mask(n - s);
    _mm512_mask_storeu_ps(sc + s, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, sc + s), inv));
  }
}

// out_i [16·NC] = Σ_s p_i[s]·V[s] for NQ queries at once (each V row loaded once for all of them).
// Every query's sum is one FMA chain per 16 lanes in s order, whatever NQ is.
template <int NQ, int NC, class E>
void pv_block(const float* const* p, const E* V, int64_t n, float* const* out) {
  constexpr int64_t D = 16 * NC;
  __m512 acc[NQ][NC];
  for (int i = 0; i < NQ; ++i) {
    for (int c = 0; c < NC; ++c) acc[i][c] = _mm512_setzero_ps();
  }
  for (int64_t s = 0; s < n; ++s) {
    __m512 v[NC];
    for (int c = 0; c < NC; ++c) v[c] = load16(V + s * D + 16 * c);
    for (int i = 0; i < NQ; ++i) {
      const __m512 pi = _mm512_set1_ps(p[i][s]);
      for (int c = 0; c < NC; ++c) acc[i][c] = _mm512_fmadd_ps(pi, v[c], acc[i][c]);
    }
  }
  for (int i = 0; i < NQ; ++i) {
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out[i] + 16 * c, acc[i][c]);
  }
}

// The nq queries in chunks of NQ = 16 / NC (≤ 4) so that NQ·NC accumulators fit the 32 zmm
// registers.
template <int NC, class E>
void pv_group(const float* scores, int64_t lds, int64_t nq, const E* V, int64_t n, float* out,
              int64_t ldo) {
  constexpr int NQ = NC >= 4 ? 16 / NC : 4;
  int64_t i = 0;
  for (; i < nq; i += NQ) {
    const float* p[NQ];
    float* o[NQ];
    if (nq - i >= NQ) {
      for (int k = 0; k < NQ; ++k) {
        p[k] = scores + (i + k) * lds;
        o[k] = out + (i + k) * ldo;
      }
      pv_block<NQ, NC, E>(p, V, n, o);
    } else {
      for (int64_t k = i; k < nq; ++k) {
        const float* p1[1] = {scores + k * lds};
        float* o1[1] = {out + k * ldo};
        pv_block<1, NC, E>(p1, V, n, o1);
      }
    }
  }
}

template <class E>
void attend_impl(const float* q, int64_t nq, int64_t ldq, const E* Kt, const E* V, int64_t n,
                 int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  const int64_t lds = (n + 15) / 16 * 16;
  int64_t i = 0;
  for (; i + 4 <= nq; i += 4)
    group_scores<4>(q + i * ldq, ldq, Kt, n, D, scale, scores + i * lds, lds);
  switch (nq - i) {
    case 3:
      group_scores<3>(q + i * ldq, ldq, Kt, n, D, scale, scores + i * lds, lds);
      break;
    case 2:
      group_scores<2>(q + i * ldq, ldq, Kt, n, D, scale, scores + i * lds, lds);
      break;
    case 1:
      group_scores<1>(q + i * ldq, ldq, Kt, n, D, scale, scores + i * lds, lds);
      break;
    default:
      break;
  }
  for (int64_t k = 0; k < nq; ++k) softmax_inplace(scores + k * lds, n);
  // P·V templated on D/16 ≤ 8 (accumulators in registers); wider heads (D = 144 … 256) take one
  // query and 16 lanes at a time, one chain per lane in s order.
  using PvFn = void (*)(const float*, int64_t, int64_t, const E*, int64_t, float*, int64_t);
  static constexpr PvFn kPv[9] = {nullptr,        pv_group<1, E>, pv_group<2, E>,
                                  pv_group<3, E>, pv_group<4, E>, pv_group<5, E>,
                                  pv_group<6, E>, pv_group<7, E>, pv_group<8, E>};
  if (D / 16 <= 8) {
    kPv[D / 16](scores, lds, nq, V, n, out, ldo);
    return;
  }
  for (int64_t k = 0; k < nq; ++k) {
    const float* p1 = scores + k * lds;
    for (int64_t c = 0; c < D; c += 16) {
      __m512 acc = _mm512_setzero_ps();
      for (int64_t s = 0; s < n; ++s) {
        acc = _mm512_fmadd_ps(_mm512_set1_ps(p1[s]), load16(V + s * D + c), acc);
      }
      _mm512_storeu_ps(out + k * ldo + c, acc);
    }
  }
}

}  // namespace

void attend_group_avx512(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                         int64_t n, int64_t D, float scale, float* scores, float* out,
                         int64_t ldo) noexcept {
  attend_impl(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

void attend_group_avx512(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt,
                         const uint16_t* V, int64_t n, int64_t D, float scale, float* scores,
                         float* out, int64_t ldo) noexcept {
  attend_impl(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

float quant_span_avx512(const float* x, int64_t n, int8_t* q) noexcept {
  __m512 mx = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(n - i), x + i)));
  }
  const float m = _mm512_reduce_max_ps(mx);
  const float inv = m > 0.0f ? 127.0f / m : 0.0f;
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f),
               hi = _mm512_set1_ps(127.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), vinv);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm512_mask_cvtsepi32_storeu_epi8(q + i, k,
                                      _mm512_cvtps_epi32(v));  // MXCSR: round to nearest even
  }
  return m / 127.0f;
}

void f16_row_avx512(const float* x, int64_t n, uint16_t* out) noexcept {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(out + i, m, h);
  }
}

void swiglu_avx512(const float* gate, const float* up, int64_t F, float* out) noexcept {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < F; i += 16) {
    const __mmask16 m = tail_mask(F - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

namespace {

// Σ_i (q_i + 128)·w_i over one row of C bytes, two accumulators (even / odd 64-byte chunks). One row
// at a time streams the matrix strictly sequentially: taking 4 rows at once (4 interleaved streams
// 2 KiB apart) ran at 13 GB/s against 24 GB/s for this on one thread (docs/infer.md, "LM head"). No
// software prefetch: this one stream is the hardware prefetcher's best case, and prefetching 1–4 KiB
// ahead was 4–15% slower (alternated in one process, 1 and 2 threads).
inline int32_t head_row(const int8_t* w, int64_t C, const int8_t* x) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 128 <= C; i += 128) {
    a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512(x + i), bias),
                             _mm512_loadu_si512(w + i));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(_mm512_loadu_si512(x + i + 64), bias),
                             _mm512_loadu_si512(w + i + 64));
  }
  for (; i < C; i += 64) {  // masked-off bytes load as 0 on both sides and add nothing
    const __mmask64 m = C - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (C - i)) - 1;
    const __m512i xu =
        _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + i), bias));
    a0 = _mm512_dpbusd_epi32(a0, xu, _mm512_maskz_loadu_epi8(m, w + i));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
}

}  // namespace

void lm_head_int8_avx512vnni(const int8_t* w, const float* sw, const int32_t* wsum, int64_t r0,
                             int64_t r1, int64_t C, const int8_t* qx, const float* sx, int64_t T,
                             float* logits, int64_t ldo) noexcept {
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {  // the row stays in L1 for the other tokens
      const int32_t d =
          head_row(w + j * C, C, qx + t * C) - 128 * wsum[j];  // Σ (q+128)·w − 128·Σ w
      logits[t * ldo + j] = sx[t] * sw[j] * static_cast<float>(d);
    }
  }
}

namespace {

// NB blocks of 16 rows (Note [q4 LM head layout]) × one token; out[b] = the 16 rows' logits. Two
// VPDPBUSD chains per block (low / high nibbles) and NB blocks keep 2·NB chains in flight; each
// activation broadcast serves all NB blocks. The f32 epilogue is the reference's: one fma per group
// in group order, then × s_x.
template <int NB>
inline void q4_blocks(const uint8_t* codes, const uint16_t* scales, int64_t C, const int8_t* x,
                      const int32_t* gs, float sx, __m512* out) {
  const int64_t G = C / 32, blk_c = C / 8 * 64, blk_s = G * 16;
  const __m512i nib = _mm512_set1_epi8(0x0F);
  __m512 y[NB];
  for (int b = 0; b < NB; ++b) y[b] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i lo[NB], hi[NB];
    for (int b = 0; b < NB; ++b) lo[b] = hi[b] = _mm512_setzero_si512();
    const uint8_t* cg = codes + g * 4 * 64;
    for (int k = 0; k < 4; ++k) {
      int32_t xa, xb;  // activations of inputs 8k..8k+3 and 8k+4..8k+7 of the group
      std::memcpy(&xa, x + g * 32 + k * 8, 4);
      std::memcpy(&xb, x + g * 32 + k * 8 + 4, 4);
      const __m512i va = _mm512_set1_epi32(xa), vb = _mm512_set1_epi32(xb);
      for (int b = 0; b < NB; ++b) {
        const __m512i tile = _mm512_loadu_si512(cg + b * blk_c + k * 64);
        lo[b] = _mm512_dpbusd_epi32(lo[b], _mm512_and_si512(tile, nib), va);
        hi[b] = _mm512_dpbusd_epi32(hi[b], _mm512_and_si512(_mm512_srli_epi16(tile, 4), nib), vb);
      }
    }
    const __m512i off = _mm512_set1_epi32(8 * gs[g]);  // Σ (c + 8)·q − 8·Σ q = Σ c·q, exact
    for (int b = 0; b < NB; ++b) {
      const __m512 a = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + b * blk_s + g * 16)));
      const __m512i acc = _mm512_sub_epi32(_mm512_add_epi32(lo[b], hi[b]), off);
      y[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), a, y[b]);
    }
  }
  for (int b = 0; b < NB; ++b) out[b] = _mm512_mul_ps(y[b], _mm512_set1_ps(sx));
}

}  // namespace

void lm_head_q4_avx512vnni(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1,
                           int64_t C, const int8_t* qx, const float* sx, const int32_t* gs,
                           int64_t T, float* logits, int64_t ldo) noexcept {
  constexpr int64_t NB = 4;
  const int64_t G = C / 32, blk_c = C / 8 * 64, blk_s = G * 16;
  const int64_t b1 = (r1 + 15) / 16;
  for (int64_t b = r0 / 16; b < b1; b += NB) {
    const int64_t nb = b1 - b < NB ? b1 - b : NB;
    const uint8_t* cb = codes + b * blk_c;
    const uint16_t* sb = scales + b * blk_s;
    for (int64_t t = 0; t < T; ++t) {
      __m512 out[NB];
      const int8_t* x = qx + t * C;
      const int32_t* g = gs + t * G;
      switch (nb) {
        case 4:
          q4_blocks<4>(cb, sb, C, x, g, sx[t], out);
          break;
        case 3:
          q4_blocks<3>(cb, sb, C, x, g, sx[t], out);
          break;
        case 2:
          q4_blocks<2>(cb, sb, C, x, g, sx[t], out);
          break;
        default:
          q4_blocks<1>(cb, sb, C, x, g, sx[t], out);
          break;
      }
      for (int64_t k = 0; k < nb; ++k) {  // store only the lanes of rows in [r0, r1)
        const int64_t row0 = (b + k) * 16;
        const int64_t lo = r0 > row0 ? r0 - row0 : 0, hi = r1 - row0 < 16 ? r1 - row0 : 16;
        const auto m = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        _mm512_mask_storeu_ps(logits + t * ldo + row0, m, out[k]);
      }
    }
  }
}

}  // namespace tq::infer::detail
