// infer/q4_head and the q4 LM head kernels (fused_ops.h lm_head_q4): packing against a float64
// quantization written here (α = max|w| / 7 in f16, codes round-half-even, decoded with this file's
// own reading of Note [q4 LM head layout]); the dispatched kernel (AVX-512 VNNI where available)
// against the reference bit for bit on ragged row ranges; both against the float64 sum within the
// bound the two quantization steps give.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "infer/fused_ops.h"
#include "infer/q4_head.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::infer;

namespace {

// Code of W[j, i] read from the packed bytes as docs/formats.md describes them.
int code_at(const Q4Head& h, int64_t j, int64_t i) {
  const auto* p = h.codes.data<uint8_t>();
  const int64_t tile = (j / 16) * (h.cols / 8) + i / 8;
  const uint8_t byte = p[tile * 64 + (j % 16) * 4 + (i % 8) % 4];
  const int u = (i % 8) < 4 ? byte % 16 : byte / 16;
  return u - 8;
}

double alpha_at(const Q4Head& h, int64_t j, int64_t g) {
  const auto* s = static_cast<const uint16_t*>(h.scales.raw_data());
  return f16_to_f32(s[((j / 16) * (h.cols / 32) + g) * 16 + j % 16]);
}

std::vector<float> random_weights(Rng& rng, int64_t V, int64_t C) {
  std::vector<float> w(static_cast<size_t>(V * C));
  for (auto& v : w) v = static_cast<float>(0.05 * rng.normal());
  if (V > 2) {
    for (int64_t i = 0; i < C; ++i) w[static_cast<size_t>(i)] = 1.0f;                // codes +7
    for (int64_t i = 0; i < C; ++i) w[static_cast<size_t>(C + i)] = i % 2 ? -2.0f : 2.0f;  // ±7
    for (int64_t i = 0; i < std::min<int64_t>(C, 32); ++i) w[static_cast<size_t>(2 * C + i)] = 0.0f;
  }
  return w;
}

}  // namespace

TEST_CASE("q4 head: packing equals the float64 quantization (α = max|w|/7 in f16, round half even)") {
  Rng rng = test::make_rng(51);
  for (int64_t V : {1, 16, 37}) {
    for (int64_t C : {32, 96, 256}) {
      std::vector<float> w = random_weights(rng, V, C);
      // Exact ties: w = (k + 0.5)·α must round to the even code. α = 1/7·max = 0.5 when max = 3.5.
      if (V > 3) {
        float* r = w.data() + 3 * C;
        for (int i = 0; i < 32; ++i) r[i] = static_cast<float>(i % 8) * 0.5f - 1.75f;  // ±0.25, ±0.75, …, ±1.75
        r[31] = 3.5f;                                                      // α = 0.5 exactly
      }
      const Q4Head h = q4_head_pack(w.data(), V, C);
      const int64_t Vp = (V + 15) / 16 * 16;
      CHECK(h.rows_padded == Vp);
      CHECK(h.codes.shape() == Shape({Vp / 16, C / 8, 64}));
      CHECK(h.scales.shape() == Shape({Vp / 16, C / 32, 16}));
      for (int64_t j = 0; j < Vp; ++j) {
        for (int64_t g = 0; g < C / 32; ++g) {
          const double a = alpha_at(h, j, g);
          if (j >= V) {  // padding: zero scale and code 0 (stored 8)
            CHECK(a == 0.0);
            for (int64_t i = g * 32; i < g * 32 + 32; ++i) CHECK(code_at(h, j, i) == 0);
            continue;
          }
          double m = 0;
          for (int64_t i = g * 32; i < g * 32 + 32; ++i) {
            m = std::max(m, std::fabs(double{w[static_cast<size_t>(j * C + i)]}));
          }
          // f16 rounding of m/7: within half an f16 ulp (relative 2^-11), or 2^-25 in the subnormals.
          CHECK(std::fabs(a - m / 7.0) <= std::max(m / 7.0 * std::ldexp(1.0, -11), std::ldexp(1.0, -25)));
          for (int64_t i = g * 32; i < g * 32 + 32; ++i) {
            const int c = code_at(h, j, i);
            const double r = a > 0 ? double{w[static_cast<size_t>(j * C + i)]} / a : 0.0;
            double want = std::floor(r + 0.5);
            if (want - r == 0.5 && std::fmod(want, 2.0) != 0.0) want -= 1.0;  // half to even
            want = std::clamp(want, -7.0, 7.0);
            CAPTURE(j);
            CAPTURE(i);
            CHECK(c == static_cast<int>(want));
            CHECK(q4_code(h.codes.data<uint8_t>(), C, j, i) == c);
          }
        }
      }
      if (V > 3) {
        CHECK(alpha_at(h, 0, 0) == double{f16_to_f32(f32_to_f16(1.0f / 7.0f))});
        CHECK(code_at(h, 0, 5) == 7);
        CHECK(code_at(h, 1, 0) == 7);
        CHECK(code_at(h, 1, 1) == -7);
        CHECK(alpha_at(h, 2, 0) == 0.0);
        CHECK(code_at(h, 2, 3) == 0);
        CHECK(alpha_at(h, 3, 0) == 0.5);
        // r = w/α = -3.5, -2.5, …, 3.5 → -4, -2, -2, 0, 0, 2, 2, 4 (half to even)
        const int want[8] = {-4, -2, -2, 0, 0, 2, 2, 4};
        for (int i = 0; i < 8; ++i) CHECK(code_at(h, 3, i) == want[i]);
      }
    }
  }
  CHECK(test::error_of([] {
          std::vector<float> w(3 * 48);
          q4_head_pack(w.data(), 3, 48, "lm_head");
        }).find("multiple of 32") != std::string::npos);
}

TEST_CASE("q4 head: lm_head_q4 equals the reference bit for bit and float64 within its bound") {
  Rng rng = test::make_rng(52);
  for (int64_t C : {32, 96, 2048}) {
    for (int64_t V : {1, 16, 37, 133}) {
      for (int64_t T : {1, 3}) {
        const std::vector<float> w = random_weights(rng, V, C);
        const Q4Head h = q4_head_pack(w.data(), V, C);
        std::vector<float> x(static_cast<size_t>(T * C));
        for (auto& v : x) v = static_cast<float>(rng.normal());
        for (int64_t i = 0; i < C; ++i) x[static_cast<size_t>(i)] = -3.0f;  // token 0: q = -127
        std::vector<int8_t> qx(x.size());
        std::vector<float> sx(static_cast<size_t>(T));
        std::vector<int32_t> gs(static_cast<size_t>(T * C / 32));
        for (int64_t t = 0; t < T; ++t) {
          sx[static_cast<size_t>(t)] = quantize_row_per_token(x.data() + t * C, C, qx.data() + t * C);
          q4_act_group_sums(qx.data() + t * C, C, gs.data() + t * C / 32);
        }
        const int64_t ldo = V + 3;
        std::vector<float> got(static_cast<size_t>(T * ldo), -1.0f), want(got);
        const auto* codes = h.codes.data<uint8_t>();
        const auto* scales = static_cast<const uint16_t*>(h.scales.raw_data());
        // Two ragged row ranges, as two threads would split them (one 16-row block shared).
        const int64_t mid = V / 2 + (V > 1 ? 1 : 0);
        lm_head_q4(codes, scales, 0, mid, C, qx.data(), sx.data(), gs.data(), T, got.data(), ldo);
        lm_head_q4(codes, scales, mid, V, C, qx.data(), sx.data(), gs.data(), T, got.data(), ldo);
        lm_head_q4_ref(codes, scales, 0, V, C, qx.data(), sx.data(), T, want.data(), ldo);
        CAPTURE(C);
        CAPTURE(V);
        CAPTURE(T);
        CHECK(got == want);  // the untouched columns V..ldo stay -1 in both
        // Against Σ x·w in float64: |Δ| ≤ Σ_i (|x_i|·α/2 + |ŵ_i|·s_x/2) + f32 rounding.
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t j = 0; j < V; ++j) {
            double exact = 0, bound = 0, mag = 0;
            for (int64_t i = 0; i < C; ++i) {
              const double xi = x[static_cast<size_t>(t * C + i)], wi = w[static_cast<size_t>(j * C + i)];
              const double a = alpha_at(h, j, i / 32), wq = a * code_at(h, j, i);
              exact += xi * wi;
              bound += std::fabs(xi) * a / 2 + std::fabs(wq) * sx[static_cast<size_t>(t)] / 2;
              mag += std::fabs(wq * xi);
            }
            const double y = got[static_cast<size_t>(t * ldo + j)];
            CHECK(std::fabs(y - exact) <= bound + 1e-5 * mag + 1e-30);
          }
        }
        if (V > 3) {  // row 0 (codes 7, α = f16(1/7)) × token 0 (q = -127): each group −7·127·32
          float y = 0;
          const float a = f16_to_f32(f32_to_f16(1.0f / 7.0f));
          for (int64_t g = 0; g < C / 32; ++g) y = std::fma(-28448.0f, a, y);
          CHECK(got[0] == y * sx[0]);
        }
      }
    }
  }
}
