// Scalar reference kernels for the packed ternary format: plain loops over the documented layout
// (Note [Packed ternary tile]); the oracle the SIMD kernels are tested against. Always built.
#include <cmath>

#include "core/dtype.h"
#include "quant/ternary_kernels.h"

namespace tq::quant::detail {

namespace {

// Σ_{i ∈ group g} c_{j,i}·q_i for row j = 16·rb + r, reading the codes straight from the tiles.
int32_t group_dot(const TernaryArgs& a, int64_t rb, int64_t r, int64_t g, const int8_t* q) {
  const int64_t tiles_per_row_block = a.cols / 16;
  int32_t acc = 0;
  for (int64_t kt = 8 * g; kt < 8 * g + 8; ++kt) {
    const uint8_t* tile = a.codes + (rb * tiles_per_row_block + kt) * 64;
    for (int s = 0; s < 4; ++s) {
      for (int k = 0; k < 4; ++k) {
        const int32_t code = (tile[4 * r + k] >> (2 * s)) & 0x03;
        acc += code * static_cast<int32_t>(q[16 * kt + 4 * s + k]);
      }
    }
  }
  return acc;
}

}  // namespace

void group_sums_scalar(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept {
  const int64_t G = a.cols / 128;
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int8_t* q = a.q + t * a.cols;
    for (int64_t j = r0; j < r1; ++j) {
      for (int64_t g = 0; g < G; ++g) {
        acc[(t * a.rows_padded + j) * G + g] = group_dot(a, j / 16, j % 16, g, q);
      }
    }
  }
}

void gemm_rows_scalar(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept {
  const int64_t G = a.cols / 128;
  const int64_t end = r1 < a.rows ? r1 : a.rows;
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int8_t* q = a.q + t * a.cols;
    for (int64_t j = r0; j < end; ++j) {
      // Note [Per-token scale after the groups] (ternary_kernels.h): with one activation scale per
      // token it multiplies the sum over groups once, at the end.
      float acc_y = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        // α of row j, group g: scales[j/16, g, j%16] (Note [Packed ternary tile]).
        const float alpha = f16_to_f32(a.scales[(j / 16 * G + g) * 16 + j % 16]);
        const float p = a.per_group ? alpha * a.xscale[t * G + g] : alpha;
        const int32_t d = group_dot(a, j / 16, j % 16, g, q) - a.gsum[t * G + g];
        acc_y = std::fma(static_cast<float>(d), p, acc_y);
      }
      y[t * ldy + j] = a.per_group ? acc_y + a.bias[j] : std::fma(acc_y, a.xscale[t], a.bias[j]);
    }
  }
}

}  // namespace tq::quant::detail
