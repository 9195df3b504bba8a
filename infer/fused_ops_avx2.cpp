// AVX2 row kernels of the inference plan (compiled with -mavx2 -mfma -mf16c), for CPUs whose ternary
// kernels run AVX2 or AVX-VNNI: attention of a GQA query group over the blocked K cache, int8
// quantization of a span, f16 rounding of a row, SwiGLU with a vectorised exp, and the int8 and q4 LM
// heads with VPMADDUBSW. The plain loops in fused_ops.cpp are the reference they are tested against
// (tests/infer/test_fused_ops.cpp, run once per TQ_KERNEL target). Raw pointers only, and no call
// into inline library code (fused_ops_simd.h): tails go through small stack buffers.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "infer/fused_ops_simd.h"

namespace tq::infer::detail {

namespace {

// exp(x) in f32, the polynomial of fused_ops_avx512.cpp exp_ps (Cephes expf, ≈ 1 ulp). AVX2 has no
// VSCALEFPS: 2^n is applied as 2^⌊n/2⌋ · 2^(n−⌊n/2⌋), two normal powers of two for every n the
// clamp allows (−151 … 128), so the first product is exact and the second rounds once, as VSCALEFPS
// does (subnormal and overflowing results included).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(88.7f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kExpLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[k]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Lanes summed in a fixed order (deterministic; the same for every caller).
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i lane_mask(int64_t k) {  // the first k (≤ 8) lanes
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(k > 8 ? 8 : k)), idx);
}

// 8 cached values as f32: the f32 cache as is, the f16 cache by VCVTPH2PS (exact).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Scores of NQ queries against the 16 keys of one cache block (two ymm halves): one FMA chain per
// (query, half) over d, 2·NQ chains in flight.
template <int NQ, class E>
void block_scores(const float* q, int64_t ldq, const E* kb, int64_t D, float scale, int64_t valid,
                  float* const* sc) {
  __m256 a[NQ], b[NQ];
  for (int i = 0; i < NQ; ++i) a[i] = b[i] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m256 k0 = load8(kb + d * 16), k1 = load8(kb + d * 16 + 8);
    for (int i = 0; i < NQ; ++i) {
      const __m256 qd = _mm256_broadcast_ss(q + i * ldq + d);
      a[i] = _mm256_fmadd_ps(qd, k0, a[i]);
      b[i] = _mm256_fmadd_ps(qd, k1, b[i]);
    }
  }
  const __m256 vs = _mm256_set1_ps(scale);
  for (int i = 0; i < NQ; ++i) {
    const __m256 lo = _mm256_mul_ps(a[i], vs), hi = _mm256_mul_ps(b[i], vs);
    if (valid >= 16) {
      _mm256_storeu_ps(sc[i], lo);
      _mm256_storeu_ps(sc[i] + 8, hi);
    } else {
      _mm256_maskstore_ps(sc[i], lane_mask(valid), lo);
      _mm256_maskstore_ps(sc[i] + 8, lane_mask(valid - 8), hi);
    }
  }
}

template <int NQ, class E>
void group_scores(const float* q, int64_t ldq, const E* Kt, int64_t n, int64_t D, float scale,
                  float* scores, int64_t lds) {
  for (int64_t s0 = 0; s0 < n; s0 += 16) {
    float* sc[NQ];
    for (int i = 0; i < NQ; ++i) sc[i] = scores + i * lds + s0;
    block_scores<NQ>(q, ldq, Kt + s0 * D, D, scale, n - s0, sc);
  }
}

// scores[0..n) ← softmax(scores), as fused_ops_avx512.cpp softmax_inplace with 8 lanes.
void softmax_inplace(float* sc, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 mx = ninf;
  for (int64_t s = 0; s < n; s += 8) {
    const __m256i m = lane_mask(n - s);
    mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, _mm256_maskload_ps(sc + s, m), _mm256_castsi256_ps(m)));
  }
  const __m256 vmax = _mm256_set1_ps(hmax(mx));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t s = 0; s < n; s += 8) {
    const __m256i m = lane_mask(n - s);
    const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_maskload_ps(sc + s, m), vmax)),
                                   _mm256_castsi256_ps(m));
    _mm256_maskstore_ps(sc + s, m, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_set1_ps(1.0f / hsum(sum));
  for (int64_t s = 0; s < n; s += 8) {
    const __m256i m = lane_mask(n - s);
    _mm256_maskstore_ps(sc + s, m, _mm256_mul_ps(_mm256_maskload_ps(sc + s, m), inv));
  }
}

// out_i[c0 … c0 + 8·NC) = Σ_s p_i[s]·V[s] for NQ queries (each V row loaded once for all of them).
// One FMA chain per (query, lane) in s order, whatever NQ is: a query's result does not depend on
// the group it is computed in.
template <int NQ, int NC, class E>
void pv_block(const float* const* p, const E* V, int64_t n, int64_t D, int64_t c0,
              float* const* out) {
  __m256 acc[NQ][NC];
  for (int i = 0; i < NQ; ++i) {
    for (int c = 0; c < NC; ++c) acc[i][c] = _mm256_setzero_ps();
  }
  for (int64_t s = 0; s < n; ++s) {
    __m256 v[NC];
    for (int c = 0; c < NC; ++c) v[c] = load8(V + s * D + c0 + 8 * c);
    for (int i = 0; i < NQ; ++i) {
      const __m256 pi = _mm256_broadcast_ss(p[i] + s);
      for (int c = 0; c < NC; ++c) acc[i][c] = _mm256_fmadd_ps(pi, v[c], acc[i][c]);
    }
  }
  for (int i = 0; i < NQ; ++i) {
    for (int c = 0; c < NC; ++c) _mm256_storeu_ps(out[i] + c0 + 8 * c, acc[i][c]);
  }
}

// Columns in chunks of 16 (2 ymm), queries in fours: 8 accumulators + 2 V rows + 1 broadcast of the
// 16 ymm registers.
template <class E>
void pv_group(const float* scores, int64_t lds, int64_t nq, const E* V, int64_t n, int64_t D,
              float* out, int64_t ldo) {
  for (int64_t c0 = 0; c0 < D; c0 += 16) {
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) {
      const float* p[4];
      float* o[4];
      for (int k = 0; k < 4; ++k) {
        p[k] = scores + (i + k) * lds;
        o[k] = out + (i + k) * ldo;
      }
      pv_block<4, 2, E>(p, V, n, D, c0, o);
    }
    for (; i < nq; ++i) {
      const float* p1[1] = {scores + i * lds};
      float* o1[1] = {out + i * ldo};
      pv_block<1, 2, E>(p1, V, n, D, c0, o1);
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
  pv_group(scores, lds, nq, V, n, D, out, ldo);
}

// 32 f32 values (four ymm) → 32 int8 in order, saturating (the values are already in ±127).
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

void attend_group_avx2(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                       int64_t n, int64_t D, float scale, float* scores, float* out,
                       int64_t ldo) noexcept {
  attend_impl(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

void attend_group_avx2(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt,
                       const uint16_t* V, int64_t n, int64_t D, float scale, float* scores,
                       float* out, int64_t ldo) noexcept {
  attend_impl(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

float quant_span_avx2(const float* x, int64_t n, int8_t* q) noexcept {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 mx = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  if (i < n) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_maskload_ps(x + i, lane_mask(n - i)), abs_mask));
  const float m = hmax(mx);
  const float inv = m > 0.0f ? 127.0f / m : 0.0f;
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  auto conv = [&](__m256 v) {  // VCVTPS2DQ: MXCSR round to nearest even, as the reference
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, vinv), lo), hi));
  };
  i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i b = pack32(conv(_mm256_loadu_ps(x + i)), conv(_mm256_loadu_ps(x + i + 8)),
                             conv(_mm256_loadu_ps(x + i + 16)), conv(_mm256_loadu_ps(x + i + 24)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), b);
  }
  if (i < n) {  // the last < 32 values through a zero-padded buffer
    alignas(32) float buf[32] = {};
    alignas(32) int8_t out[32];
    std::memcpy(buf, x + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out),
                       pack32(conv(_mm256_load_ps(buf)), conv(_mm256_load_ps(buf + 8)),
                              conv(_mm256_load_ps(buf + 16)), conv(_mm256_load_ps(buf + 24))));
    std::memcpy(q + i, out, static_cast<size_t>(n - i));
  }
  return m / 127.0f;
}

void f16_row_avx2(const float* x, int64_t n, uint16_t* out) noexcept {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), kRound));
  }
  if (i < n) {
    alignas(32) float buf[8] = {};
    alignas(16) uint16_t h[8];
    std::memcpy(buf, x + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm_store_si128(reinterpret_cast<__m128i*>(h), _mm256_cvtps_ph(_mm256_load_ps(buf), kRound));
    std::memcpy(out + i, h, static_cast<size_t>(n - i) * sizeof(uint16_t));
  }
}

void swiglu_avx2(const float* gate, const float* up, int64_t F, float* out) noexcept {
  const __m256 one = _mm256_set1_ps(1.0f);
  auto f = [&](__m256 g, __m256 u) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
  };
  int64_t i = 0;
  for (; i + 8 <= F; i += 8) _mm256_storeu_ps(out + i, f(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < F) {
    const __m256i m = lane_mask(F - i);
    _mm256_maskstore_ps(out + i, m, f(_mm256_maskload_ps(gate + i, m), _mm256_maskload_ps(up + i, m)));
  }
}

namespace {

// Σ_i w_i·x_i over one row of C bytes with VPMADDUBSW(|w|, sign(x, w)): |w| ≤ 128 (VPABSB of −128 is
// 0x80, read as the unsigned 128) and |x| ≤ 127 (the activation quantizer's range), so the i16 pair
// sums (≤ 32512) never saturate; VPMADDWD by ones widens them to i32 (exact). Two accumulators
// (even / odd 32-byte chunks); one row at a time streams the matrix sequentially.
// Software prefetch kHeadPrefetchBytes ahead (fused_ops_simd.h).
inline int32_t head_row(const int8_t* w, int64_t C, const int8_t* x) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  auto step = [&](__m256i acc, __m256i wv, __m256i xv) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  };
  int64_t i = 0;
  for (; i + 64 <= C; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(w + i + kHeadPrefetchBytes), _MM_HINT_T0);
    a0 = step(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    a1 = step(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 32)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32)));
  }
  if (i < C) {  // zero-padded tail: zeros add nothing
    alignas(32) int8_t wb[64] = {}, xb[64] = {};
    std::memcpy(wb, w + i, static_cast<size_t>(C - i));
    std::memcpy(xb, x + i, static_cast<size_t>(C - i));
    a0 = step(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(wb)),
              _mm256_load_si256(reinterpret_cast<const __m256i*>(xb)));
    a1 = step(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(wb + 32)),
              _mm256_load_si256(reinterpret_cast<const __m256i*>(xb + 32)));
  }
  __m256i s = _mm256_add_epi32(a0, a1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
  return _mm_cvtsi128_si32(h);
}

}  // namespace

void lm_head_int8_avx2(const int8_t* w, const float* sw, int64_t r0, int64_t r1, int64_t C,
                       const int8_t* qx, const float* sx, int64_t T, float* logits,
                       int64_t ldo) noexcept {
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {  // the row stays in L1 for the other tokens
      const int32_t d = head_row(w + j * C, C, qx + t * C);
      logits[t * ldo + j] = sx[t] * sw[j] * static_cast<float>(d);
    }
  }
}

namespace {

// NB blocks of 16 rows (Note [q4 LM head layout]) × one token, each block as two ymm halves of 8
// rows; out[2b + h] = rows 16b + 8h … of the logits before × s_x. Per group of 32 inputs, 8
// VPMADDUBSW per half (low / high nibbles of 4 tiles) summed in i16: |Σ| ≤ 8·2·15·127 = 30480, no
// saturation (codes c + 8 ≤ 15, |q| ≤ 127); one VPMADDWD by ones, minus 8·gs, then the reference's
// f32 epilogue (one fma per group in group order), so the logits equal lm_head_q4_ref bit for bit.
template <int NB>
inline void q4_blocks(const uint8_t* codes, const uint16_t* scales, int64_t C, const int8_t* x,
                      const int32_t* gs, __m256* out) {
  const int64_t G = C / 32, blk_c = C / 8 * 64, blk_s = G * 16;
  const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 y[2 * NB];
  for (int b = 0; b < 2 * NB; ++b) y[b] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256i acc[2 * NB];
    for (int b = 0; b < 2 * NB; ++b) acc[b] = _mm256_setzero_si256();
    const uint8_t* cg = codes + g * 4 * 64;
    for (int k = 0; k < 4; ++k) {
      int32_t xa, xb;  // activations of inputs 8k..8k+3 and 8k+4..8k+7 of the group
      std::memcpy(&xa, x + g * 32 + k * 8, 4);
      std::memcpy(&xb, x + g * 32 + k * 8 + 4, 4);
      const __m256i va = _mm256_set1_epi32(xa), vb = _mm256_set1_epi32(xb);
      for (int b = 0; b < 2 * NB; ++b) {
        const __m256i tile =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cg + (b / 2) * blk_c + k * 64 + 32 * (b % 2)));
        const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(tile, nib), va);
        const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(tile, 4), nib), vb);
        acc[b] = _mm256_add_epi16(acc[b], _mm256_add_epi16(lo, hi));
      }
    }
    const __m256i off = _mm256_set1_epi32(8 * gs[g]);  // Σ (c + 8)·q − 8·Σ q = Σ c·q, exact
    for (int b = 0; b < 2 * NB; ++b) {
      const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128(
          reinterpret_cast<const __m128i*>(scales + (b / 2) * blk_s + g * 16 + 8 * (b % 2))));
      const __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(acc[b], ones), off);
      y[b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), a, y[b]);
    }
  }
  for (int b = 0; b < 2 * NB; ++b) out[b] = y[b];
}

}  // namespace

void lm_head_q4_avx2(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                     const int8_t* qx, const float* sx, const int32_t* gs, int64_t T, float* logits,
                     int64_t ldo) noexcept {
  constexpr int64_t NB = 2;
  const int64_t G = C / 32, blk_c = C / 8 * 64, blk_s = G * 16;
  const int64_t b1 = (r1 + 15) / 16;
  for (int64_t b = r0 / 16; b < b1; b += NB) {
    const int64_t nb = b1 - b < NB ? b1 - b : NB;
    const uint8_t* cb = codes + b * blk_c;
    const uint16_t* sb = scales + b * blk_s;
    for (int64_t t = 0; t < T; ++t) {
      __m256 out[2 * NB];
      if (nb == 2) {
        q4_blocks<2>(cb, sb, C, qx + t * C, gs + t * G, out);
      } else {
        q4_blocks<1>(cb, sb, C, qx + t * C, gs + t * G, out);
      }
      alignas(32) float rows[16 * NB];
      for (int64_t k = 0; k < 2 * nb; ++k) _mm256_store_ps(rows + 8 * k, _mm256_mul_ps(out[k], _mm256_set1_ps(sx[t])));
      // Only the rows in [r0, r1): a block may straddle another thread's range.
      const int64_t lo = r0 > 16 * b ? r0 : 16 * b, hi = r1 < 16 * (b + nb) ? r1 : 16 * (b + nb);
      for (int64_t j = lo; j < hi; ++j) logits[t * ldo + j] = rows[j - 16 * b];
    }
  }
}

}  // namespace tq::infer::detail
