// int8 activation quantization for the packed ternary kernels. See Note [int8 activation rounding].
#include "quant/act_quant.h"

#include <cmath>

#include "core/error.h"
#include "quant/ternary_pack.h"

namespace tq::quant {

namespace {

// Round half to even for |v| < 2^22: adding 1.5·2^23 leaves no fraction bits, so the FPU rounds
// (to nearest even, the default mode); subtracting it back is exact. Vectorises without SSE4.1.
inline float round_half_even(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23
  return (v + kMagic) - kMagic;
}

float abs_max(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(x[i]));
  return m;
}

// Quantizes x [n] with the scale of abs-max m; writes q (if non-null) and x̂ (if non-null).
void quantize_span(const float* x, int64_t n, float m, int8_t* q, float* x_hat) {
  const float inv = m > 0.0f ? 127.0f / m : 0.0f;
  const float scale = m / 127.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::fmin(std::fmax(x[i] * inv, -127.0f), 127.0f);
    const float r = round_half_even(v);
    if (q != nullptr) q[i] = static_cast<int8_t>(r);
    if (x_hat != nullptr) x_hat[i] = r * scale;
  }
}

void check_args(const float* x, int64_t T, int64_t cols, const char* op) {
  TQ_CHECK(T >= 0 && cols > 0 && cols % kPackGroup == 0,
           "[{}] cols ({}) must be a positive multiple of {} and T ({}) ≥ 0", op, cols, kPackGroup, T);
  TQ_CHECK(x != nullptr || T == 0, "[{}] x is null", op);
}

void ensure(Tensor& t, const Shape& shape, DType dtype) {
  if (!t.defined() || t.dtype() != dtype || t.shape() != shape || !t.is_contiguous() ||
      (t.storage() && t.storage()->read_only())) {
    t = Tensor::empty(shape, dtype);
  }
}

}  // namespace

const char* act_scale_name(ActScale mode) {
  return mode == ActScale::per_group ? "per_group" : "per_token";
}

ActScale parse_act_scale(const std::string& s) {
  if (s == "per_token") return ActScale::per_token;
  if (s == "per_group") return ActScale::per_group;
  TQ_THROW("[act_quant] activation scale '{}' is not one of per_token, per_group", s);
}

void quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, QuantizedActs& out) {
  check_args(x, T, cols, "quantize_acts");
  const int64_t G = cols / kPackGroup;
  out.tokens = T;
  out.cols = cols;
  out.mode = mode;
  ensure(out.q, {T, cols}, DType::i8);
  ensure(out.scale, mode == ActScale::per_group ? Shape({T, G}) : Shape({T}), DType::f32);
  ensure(out.gsum, {T, G}, DType::i32);
  int8_t* q = out.q.data<int8_t>();
  float* scale = out.scale.data<float>();
  int32_t* gsum = out.gsum.data<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * cols;
    int8_t* qt = q + t * cols;
    if (mode == ActScale::per_token) {
      const float m = abs_max(xt, cols);
      quantize_span(xt, cols, m, qt, nullptr);
      scale[t] = m / 127.0f;
    } else {
      for (int64_t g = 0; g < G; ++g) {
        const float m = abs_max(xt + g * kPackGroup, kPackGroup);
        quantize_span(xt + g * kPackGroup, kPackGroup, m, qt + g * kPackGroup, nullptr);
        scale[t * G + g] = m / 127.0f;
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      int32_t s = 0;
      for (int64_t i = 0; i < kPackGroup; ++i) s += qt[g * kPackGroup + i];
      gsum[t * G + g] = s;
    }
  }
}

void fake_quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, float* x_hat) {
  check_args(x, T, cols, "fake_quantize_acts");
  TQ_CHECK(x_hat != nullptr || T == 0, "[fake_quantize_acts] x_hat is null");
  const int64_t G = cols / kPackGroup;
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * cols;
    float* ot = x_hat + t * cols;
    if (mode == ActScale::per_token) {
      quantize_span(xt, cols, abs_max(xt, cols), nullptr, ot);
    } else {
      for (int64_t g = 0; g < G; ++g) {
        const float* xg = xt + g * kPackGroup;
        quantize_span(xg, kPackGroup, abs_max(xg, kPackGroup), nullptr, ot + g * kPackGroup);
      }
    }
  }
}

}  // namespace tq::quant
