#include "infer/fused_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tq::infer {

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
inline float quant_span(const float* x, int64_t n, int8_t* q) {
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
  double ss = 0;
  for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
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

void attend_row(const float* q, const float* K, const float* V, int64_t n, int64_t D, float scale,
                float* scores, float* out) {
  float mx = -INFINITY;
  for (int64_t s = 0; s < n; ++s) {
    scores[s] = dot_f32(q, K + s * D, D) * scale;
    mx = std::max(mx, scores[s]);
  }
  float sum = 0;
  for (int64_t s = 0; s < n; ++s) {
    scores[s] = std::exp(scores[s] - mx);
    sum += scores[s];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < D; ++i) out[i] = 0;
  for (int64_t s = 0; s < n; ++s) {
    const float p = scores[s] * inv;
    for (int64_t i = 0; i < D; ++i) out[i] += p * V[s * D + i];
  }
}

void swiglu_row(const float* gate, const float* up, int64_t F, float* out) {
  for (int64_t i = 0; i < F; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// Cloned per ISA (GCC function multi-versioning, resolved once at load time through an ifunc): the
// int8 dot product vectorises to vpmovsxbw + vpmaddwd with AVX2 instead of SSE2 unpacks.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void lm_head_int8(const int8_t* w, const float* sw, int64_t r0, int64_t r1, int64_t C,
                  const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo) {
  for (int64_t j = r0; j < r1; ++j) {
    const int8_t* wr = w + j * C;
    for (int64_t t = 0; t < T; ++t) {
      logits[t * ldo + j] = sx[t] * sw[j] * static_cast<float>(dot_i8(wr, qx + t * C, C));
    }
  }
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
