#include "infer/kern_shim.h"

#include <algorithm>
#include <cmath>

namespace tq::infer::shim {

PackedTernary pack_ternary(const Tensor& codes, const Tensor& alpha, const Tensor& bias) {
  const int64_t rows = codes.size(0), cols = codes.size(1);
  TQ_CHECK(cols % kPackGroup == 0, "[shim] cols {} % 128", cols);
  PackedTernary p;
  p.rows = rows;
  p.cols = cols;
  p.rows_padded = (rows + kTileRows - 1) / kTileRows * kTileRows;
  const int64_t G = cols / kPackGroup;
  p.codes = Tensor::zeros({p.rows_padded, cols}, DType::i8);
  p.scales = Tensor::zeros({p.rows_padded, G}, DType::f16);
  p.bias = Tensor::zeros({p.rows_padded}, DType::f32);
  const Tensor c = codes.contiguous(), a = alpha.contiguous(), b = bias.contiguous();
  std::copy_n(c.data<int8_t>(), rows * cols, static_cast<int8_t*>(p.codes.raw_data()));
  auto* sp = static_cast<uint16_t*>(p.scales.raw_data());
  for (int64_t i = 0; i < rows * G; ++i) sp[i] = f32_to_f16(a.data<float>()[i]);
  std::copy_n(b.data<float>(), rows, p.bias.data<float>());
  return p;
}

namespace {
void quant_row(const float* x, int64_t n, int8_t* q, float* s) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float scale = amax > 0 ? amax / 127.0f : 1.0f;
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f));
  }
  *s = scale;
}
}  // namespace

void quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, QuantizedActs& out) {
  const int64_t G = cols / kPackGroup;
  out.tokens = T;
  out.cols = cols;
  out.mode = mode;
  if (!out.q.defined() || out.q.numel() < T * cols) out.q = Tensor::empty({T, cols}, DType::i8);
  const int64_t ns = mode == ActScale::per_token ? T : T * G;
  if (!out.scale.defined() || out.scale.numel() < ns) out.scale = Tensor::empty({ns}, DType::f32);
  if (!out.gsum.defined() || out.gsum.numel() < T * G) out.gsum = Tensor::empty({T, G}, DType::i32);
  auto* q = out.q.data<int8_t>();
  auto* s = out.scale.data<float>();
  auto* gs = out.gsum.data<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    if (mode == ActScale::per_token) {
      quant_row(x + t * cols, cols, q + t * cols, s + t);
    } else {
      for (int64_t g = 0; g < G; ++g) {
        quant_row(x + t * cols + g * kPackGroup, kPackGroup, q + t * cols + g * kPackGroup,
                  s + t * G + g);
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (int64_t i = 0; i < kPackGroup; ++i) sum += q[t * cols + g * kPackGroup + i];
      gs[t * G + g] = sum;
    }
  }
}

void fake_quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, float* x_hat) {
  QuantizedActs qa;
  quantize_acts(x, T, cols, mode, qa);
  const int64_t G = cols / kPackGroup;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < cols; ++i) {
      const float s = mode == ActScale::per_token ? qa.scale.data<float>()[t]
                                                  : qa.scale.data<float>()[t * G + i / kPackGroup];
      x_hat[t * cols + i] = static_cast<float>(qa.q.data<int8_t>()[t * cols + i]) * s;
    }
  }
}

void ternary_gemm_rows(const PackedTernary& w, const QuantizedActs& x, int64_t r0, int64_t r1,
                       float* y, int64_t ldy, KernelIsa) {
  const int64_t cols = w.cols, G = cols / kPackGroup;
  const auto* codes = static_cast<const int8_t*>(w.codes.raw_data());
  const auto* sc = static_cast<const uint16_t*>(w.scales.raw_data());
  const float* bias = w.bias.data<float>();
  const int8_t* q = x.q.data<int8_t>();
  const float* s = x.scale.data<float>();
  r1 = std::min(r1, w.rows);
  for (int64_t t = 0; t < x.tokens; ++t) {
    for (int64_t j = r0; j < r1; ++j) {
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        int32_t a = 0;
        for (int64_t i = g * kPackGroup; i < (g + 1) * kPackGroup; ++i) {
          a += int32_t{codes[j * cols + i]} * int32_t{q[t * cols + i]};
        }
        const float st = x.mode == ActScale::per_token ? s[t] : s[t * G + g];
        acc += st * f16_to_f32(sc[j * G + g]) * static_cast<float>(a);
      }
      y[t * ldy + j] = acc + bias[j];
    }
  }
}

}  // namespace tq::infer::shim
