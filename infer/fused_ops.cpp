#include "infer/fused_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "infer/fused_ops_simd.h"
#include "infer/q4_head.h"

namespace tq::infer {

namespace {
// The row kernels follow the ternary kernels' target (TQ_KERNEL included): AVX-512 with avx512vnni,
// AVX2 with avx2, AVX2 plus the AVX-VNNI int8 head with avxvnni, the reference loops below with
// scalar — so the infer_scalar / infer_avx2 / infer_avxvnni test runs cover the reference and the
// ymm versions on an AVX-512 machine.
enum class RowIsa { ref, avx2, avxvnni, avx512 };
RowIsa row_isa() {
  static const RowIsa v = [] {
    const kq::KernelIsa k = kq::best_isa();
#ifdef TQ_HAVE_INFER_AVX512
    if (k == kq::KernelIsa::avx512vnni) return RowIsa::avx512;
#endif
#ifdef TQ_HAVE_INFER_AVX2
#ifdef TQ_HAVE_INFER_AVXVNNI
    if (k == kq::KernelIsa::avxvnni) return RowIsa::avxvnni;
#endif
    if (k == kq::KernelIsa::avx2 || k == kq::KernelIsa::avxvnni || k == kq::KernelIsa::avx512vnni)
      return RowIsa::avx2;
#endif
    (void)k;
    return RowIsa::ref;
  }();
  return v;
}
bool use_avx512() { return row_isa() == RowIsa::avx512; }
bool use_avx2() { return row_isa() == RowIsa::avx2 || row_isa() == RowIsa::avxvnni; }
}  // namespace

void act_buffers_alloc(kq::QuantizedActs& qa, int64_t T, int64_t cols, kq::ActScale mode) {
  const int64_t G = std::max<int64_t>(cols / kq::kPackGroup, 1);
  qa.tokens = T;
  qa.cols = cols;
  qa.mode = mode;
  qa.q = Tensor::zeros({T, cols}, DType::i8);
  qa.scale = mode == kq::ActScale::per_token ? Tensor::zeros({T}) : Tensor::zeros({T, G});
  qa.gsum = Tensor::zeros({T, G}, DType::i32);
}

void act_buffers_view(const kq::QuantizedActs& full, int64_t T, kq::QuantizedActs& view) {
  view.tokens = T;
  view.cols = full.cols;
  view.mode = full.mode;
  view.q = full.q.slice(0, 0, T);
  view.scale = full.scale.slice(0, 0, T);
  view.gsum = full.gsum.slice(0, 0, T);
}

namespace {
// One scale over x [n], as kq::quantize_acts (Note [int8 activation rounding]): m = max|x|,
// q = clamp(round_half_even(x · 127/m), ±127), s = m / 127 (0 when m == 0).
float quant_span(const float* x, int64_t n, int8_t* q) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512()) return detail::quant_span_avx512(x, n, q);
#endif
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2()) return detail::quant_span_avx2(x, n, q);
#endif
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(x[i]));
  const float inv = m > 0.0f ? 127.0f / m : 0.0f;
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23: (v + kMagic) − kMagic rounds half to even
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::fmin(std::fmax(x[i] * inv, -127.0f), 127.0f);
    q[i] = static_cast<int8_t>((v + kMagic) - kMagic);
  }
  return m / 127.0f;
}
}  // namespace

namespace {
// Dot products with 16 independent partial sums, so the compiler vectorises them without
// reassociating a single sum (-ffast-math is not used). The order is fixed: results are
// deterministic and the same for prefill and decode.
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (float v : acc) s += v;
  return s;
}

inline float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) {
      const uint32_t bits = static_cast<uint32_t>(w[i + k]) << 16;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      acc[k] += f * x[i + k];
    }
  }
  float s = 0;
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  for (float v : acc) s += v;
  return s;
}

inline int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t{a[i]} * int32_t{b[i]};
  return acc;
}

inline int32_t dot_i8_ones(const int8_t* a, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t{a[i]};
  return acc;
}
}  // namespace

float quantize_row_per_token(const float* x, int64_t n, int8_t* q) { return quant_span(x, n, q); }

void quantize_act_row(const float* x, int64_t t, kq::QuantizedActs& qa) {
  const int64_t cols = qa.cols, G = cols / kq::kPackGroup;
  int8_t* q = qa.q.data<int8_t>() + t * cols;
  int32_t* gs = qa.gsum.data<int32_t>() + t * G;
  if (qa.mode == kq::ActScale::per_token) {
    qa.scale.data<float>()[t] = quant_span(x, cols, q);
  } else {
    float* s = qa.scale.data<float>() + t * G;
    for (int64_t g = 0; g < G; ++g) {
      s[g] = quant_span(x + g * kq::kPackGroup, kq::kPackGroup, q + g * kq::kPackGroup);
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    int32_t sum = 0;
    for (int64_t i = 0; i < kq::kPackGroup; ++i) sum += q[g * kq::kPackGroup + i];
    gs[g] = sum;
  }
}

void add_rows(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void rms_norm_row(const float* x, const float* w, int64_t C, float eps, float* y) {
  // Eight partial sums in a fixed order (vectorisable; one sequential double sum was ~4 cycles per
  // element), the same for every token, so prefill and decode agree exactly.
  double part[8] = {};
  int64_t c0 = 0;
  for (; c0 + 8 <= C; c0 += 8) {
    for (int k = 0; k < 8; ++k) part[k] += static_cast<double>(x[c0 + k]) * x[c0 + k];
  }
  double ss = 0;
  for (int64_t c = c0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
  for (double v : part) ss += v;
  const auto rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
  for (int64_t c = 0; c < C; ++c) y[c] = x[c] * rs * w[c];
}

void rope_row(float* v, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * cos[i] - b * sin[i];
    v[i + half] = b * cos[i] + a * sin[i];
  }
}

namespace {
inline float cached(const float* p, int64_t i) { return p[i]; }
inline float cached(const uint16_t* p, int64_t i) { return f16_to_f32(p[i]); }

template <class E>
void attend_dispatch(const float* q, int64_t nq, int64_t ldq, const E* Kt, const E* V, int64_t n,
                     int64_t D, float scale, float* scores, float* out, int64_t ldo) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512() && D % 16 == 0 && D <= 256) {
    detail::attend_group_avx512(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
    return;
  }
#endif
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2() && D % 16 == 0 && D <= 256) {
    detail::attend_group_avx2(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
    return;
  }
#endif
  attend_group_ref(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

// One query at a time, plain sums; E = float or f16 bit patterns (converted exactly).
template <class E>
void attend_ref(const float* q, int64_t nq, int64_t ldq, const E* Kt, const E* V, int64_t n,
                int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  for (int64_t i = 0; i < nq; ++i) {
    const float* qi = q + i * ldq;
    float* o = out + i * ldo;
    float mx = -INFINITY;
    for (int64_t s = 0; s < n; ++s) {
      float acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += qi[d] * cached(Kt, kcache_index(s, d, D));
      scores[s] = acc * scale;
      mx = std::max(mx, scores[s]);
    }
    float sum = 0;
    for (int64_t s = 0; s < n; ++s) {
      scores[s] = std::exp(scores[s] - mx);
      sum += scores[s];
    }
    const float inv = 1.0f / sum;
    for (int64_t d = 0; d < D; ++d) o[d] = 0;
    for (int64_t s = 0; s < n; ++s) {
      const float p = scores[s] * inv;
      for (int64_t d = 0; d < D; ++d) o[d] += p * cached(V, s * D + d);
    }
  }
}
}  // namespace

void attend_group(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V, int64_t n,
                  int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  attend_dispatch(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}
void attend_group(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt, const uint16_t* V,
                  int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  attend_dispatch(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}
void attend_group_ref(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                      int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  attend_ref(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}
void attend_group_ref(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt, const uint16_t* V,
                      int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo) {
  attend_ref(q, nq, ldq, Kt, V, n, D, scale, scores, out, ldo);
}

void swiglu_row(const float* gate, const float* up, int64_t F, float* out) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512()) {
    detail::swiglu_avx512(gate, up, F, out);
    return;
  }
#endif
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2()) {
    detail::swiglu_avx2(gate, up, F, out);
    return;
  }
#endif
  swiglu_row_ref(gate, up, F, out);
}

void swiglu_row_ref(const float* gate, const float* up, int64_t F, float* out) {
  for (int64_t i = 0; i < F; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void f16_row(const float* x, int64_t n, uint16_t* out) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512()) {
    detail::f16_row_avx512(x, n, out);
    return;
  }
#endif
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2()) {
    detail::f16_row_avx2(x, n, out);
    return;
  }
#endif
  f16_row_ref(x, n, out);
}

void f16_row_ref(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

const char* fused_ops_isa() {
  switch (row_isa()) {
    case RowIsa::avx512: return "avx512";
    case RowIsa::avx2: return "avx2";
    case RowIsa::avxvnni: return "avxvnni";
    default: return "reference";
  }
}

// Cloned per ISA (GCC function multi-versioning, resolved once at load time through an ifunc): the
// int8 dot product vectorises to vpmovsxbw + vpmaddwd with AVX2 instead of SSE2 unpacks.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void lm_head_int8_ref(const int8_t* w, const float* sw, int64_t r0, int64_t r1, int64_t C,
                      const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo) {
  for (int64_t j = r0; j < r1; ++j) {
    const int8_t* wr = w + j * C;
    for (int64_t t = 0; t < T; ++t) {
      logits[t * ldo + j] = sx[t] * sw[j] * static_cast<float>(dot_i8(wr, qx + t * C, C));
    }
  }
}

void lm_head_int8(const int8_t* w, const float* sw, const int32_t* wsum, int64_t r0, int64_t r1,
                  int64_t C, const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512()) {
    detail::lm_head_int8_avx512vnni(w, sw, wsum, r0, r1, C, qx, sx, T, logits, ldo);
    return;
  }
#endif
#ifdef TQ_HAVE_INFER_AVXVNNI
  if (row_isa() == RowIsa::avxvnni) {
    detail::lm_head_int8_avxvnni(w, sw, wsum, r0, r1, C, qx, sx, T, logits, ldo);
    return;
  }
#endif
  (void)wsum;
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2()) {
    detail::lm_head_int8_avx2(w, sw, r0, r1, C, qx, sx, T, logits, ldo);
    return;
  }
#endif
  lm_head_int8_ref(w, sw, r0, r1, C, qx, sx, T, logits, ldo);
}

void int8_row_sums(const int8_t* w, int64_t r0, int64_t r1, int64_t C, int32_t* wsum) {
  for (int64_t j = r0; j < r1; ++j) wsum[j] = dot_i8_ones(w + j * C, C);
}

// See Note [q4 LM head layout]: exact int32 group sums, then one fma per group in group order.
void lm_head_q4_ref(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                    const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo) {
  const int64_t G = C / kQ4Group;
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {
      const int8_t* q = qx + t * C;
      float y = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        int32_t acc = 0;
        for (int64_t i = g * kQ4Group; i < (g + 1) * kQ4Group; ++i) {
          acc += q4_code(codes, C, j, i) * int32_t{q[i]};
        }
        y = std::fma(static_cast<float>(acc), f16_to_f32(q4_scale(scales, C, j, g)), y);
      }
      logits[t * ldo + j] = y * sx[t];
    }
  }
}

void lm_head_q4(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                const int8_t* qx, const float* sx, const int32_t* gs, int64_t T, float* logits,
                int64_t ldo) {
#ifdef TQ_HAVE_INFER_AVX512
  if (use_avx512()) {
    detail::lm_head_q4_avx512vnni(codes, scales, r0, r1, C, qx, sx, gs, T, logits, ldo);
    return;
  }
#endif
#ifdef TQ_HAVE_INFER_AVX2
  if (use_avx2()) {
    detail::lm_head_q4_avx2(codes, scales, r0, r1, C, qx, sx, gs, T, logits, ldo);
    return;
  }
#endif
#if !defined(TQ_HAVE_INFER_AVX512) && !defined(TQ_HAVE_INFER_AVX2)
  (void)gs;
#endif
  lm_head_q4_ref(codes, scales, r0, r1, C, qx, sx, T, logits, ldo);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void lm_head_f32(const float* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                 float* logits, int64_t ldo) {
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {
      logits[t * ldo + j] = dot_f32(w + j * C, x + t * C, C);
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void lm_head_bf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                  float* logits, int64_t ldo) {
  for (int64_t j = r0; j < r1; ++j) {
    for (int64_t t = 0; t < T; ++t) {
      logits[t * ldo + j] = dot_bf16(w + j * C, x + t * C, C);
    }
  }
}

}  // namespace tq::infer
