#include "infer/q4_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/parallel.h"

namespace tq::infer {

// See Note [q4 LM head layout].
Q4Head q4_head_pack(const float* w, int64_t V, int64_t C, const std::string& what) {
  TQ_CHECK(V > 0 && C > 0 && C % kQ4Group == 0,
           "[q4_head_pack] {}: [{}, {}] — the q4 LM head needs hidden_size a multiple of 32 — "
           "hint: use lm_head int8 for this model",
           what, V, C);
  Q4Head h;
  h.rows = V;
  h.cols = C;
  h.rows_padded = (V + kQ4TileRows - 1) / kQ4TileRows * kQ4TileRows;
  const int64_t NB = h.rows_padded / kQ4TileRows, G = C / kQ4Group, K = C / kQ4TileCols;
  h.codes = Tensor::empty({NB, K, kQ4TileBytes}, DType::u8);
  h.scales = Tensor::zeros({NB, G, kQ4TileRows}, DType::f16);
  uint8_t* cp = h.codes.data<uint8_t>();
  auto* sp = static_cast<uint16_t*>(h.scales.raw_data());
  std::memset(cp, 0x88, static_cast<size_t>(h.codes.nbytes()));  // padded rows: u = 8 (c = 0)
  parallel_for(V, 64, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const float* wr = w + j * C;
      const int64_t rb = j / kQ4TileRows, r = j % kQ4TileRows;
      for (int64_t g = 0; g < G; ++g) {
        float m = 0.0f;
        for (int64_t i = 0; i < kQ4Group; ++i) m = std::fmax(m, std::fabs(wr[g * kQ4Group + i]));
        const uint16_t a16 = f32_to_f16(std::fmin(m / 7.0f, 65504.0f));
        sp[(rb * G + g) * kQ4TileRows + r] = a16;
        const double a = f16_to_f32(a16);
        for (int64_t i = g * kQ4Group; i < (g + 1) * kQ4Group; ++i) {
          // std::nearbyint in the default rounding mode: round half to even.
          const double c =
              a > 0.0 ? std::clamp(std::nearbyint(static_cast<double>(wr[i]) / a), -7.0, 7.0) : 0.0;
          const auto u = static_cast<uint8_t>(static_cast<int>(c) + 8);
          const int64_t k = i / kQ4TileCols, el = i % kQ4TileCols;
          uint8_t& byte = cp[(rb * (C / kQ4TileCols) + k) * kQ4TileBytes + 4 * r + el % 4];
          byte = el < 4 ? static_cast<uint8_t>((byte & 0xF0) | u)
                        : static_cast<uint8_t>((byte & 0x0F) | (u << 4));
        }
      }
    }
  });
  return h;
}

void q4_act_group_sums(const int8_t* q, int64_t C, int32_t* gs) {
  for (int64_t g = 0; g < C / kQ4Group; ++g) {
    int32_t s = 0;
    for (int64_t i = 0; i < kQ4Group; ++i) s += q[g * kQ4Group + i];
    gs[g] = s;
  }
}

}  // namespace tq::infer
