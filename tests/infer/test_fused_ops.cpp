// infer/fused_ops: the dispatched row kernels (AVX-512 where the ternary kernels run AVX-512 VNNI,
// AVX2 where they run AVX2 / AVX-VNNI, the reference loops with TQ_KERNEL=scalar) against float64 references written here, and against the library's
// reference loops: attention of a GQA group over the blocked K cache (ragged n, odd group sizes,
// head dims the fast path takes and one it refuses; f32 and f16 caches), SwiGLU, the int8 LM head (exact), RMSNorm.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "infer/fused_ops.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::infer;

namespace {

// softmax(scale·q·Kᵀ)·V in float64 for one query over n keys (K given row-major [n, D]).
std::vector<double> attend_f64(const float* q, const std::vector<float>& K,
                               const std::vector<float>& V, int64_t n, int64_t D, double scale) {
  std::vector<double> s(static_cast<size_t>(n)), out(static_cast<size_t>(D), 0.0);
  double mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    double a = 0;
    for (int64_t d = 0; d < D; ++d) a += double{q[d]} * K[static_cast<size_t>(j * D + d)];
    s[static_cast<size_t>(j)] = a * scale;
    mx = std::max(mx, a * scale);
  }
  double sum = 0;
  for (double& v : s) sum += (v = std::exp(v - mx));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t d = 0; d < D; ++d)
      out[static_cast<size_t>(d)] +=
          s[static_cast<size_t>(j)] / sum * V[static_cast<size_t>(j * D + d)];
  }
  return out;
}

}  // namespace

TEST_CASE("fused ops: attend_group over the blocked K cache matches float64 and the reference") {
  Rng rng = test::make_rng(31);
  MESSAGE("row kernels: " << fused_ops_isa());
  for (int64_t D :
       {16, 48, 64, 128, 160, 40}) {  // 40: not a multiple of 16, always the reference loop
    for (int64_t n : {1, 15, 16, 17, 70}) {
      for (int64_t nq : {1, 3, 4, 5}) {
        CAPTURE(D);
        CAPTURE(n);
        CAPTURE(nq);
        const int64_t S = 80;  // cache capacity (≥ n)
        std::vector<float> K(static_cast<size_t>(n * D)), V(static_cast<size_t>(S * D));
        std::vector<float> Kt(static_cast<size_t>(kcache_elems(S, D)),
                              1e30f);  // unused slots poisoned
        for (auto& v : K) v = static_cast<float>(rng.normal());
        for (auto& v : V) v = static_cast<float>(rng.normal());
        for (int64_t p = 0; p < n; ++p) {
          for (int64_t d = 0; d < D; ++d)
            Kt[static_cast<size_t>(kcache_index(p, d, D))] = K[static_cast<size_t>(p * D + d)];
        }
        const int64_t ldq = D + 3;  // queries not packed back to back
        std::vector<float> q(static_cast<size_t>(nq * ldq));
        for (auto& v : q) v = static_cast<float>(2.0 * rng.normal());
        const float scale = 1.0f / std::sqrt(static_cast<float>(D));
        const int64_t lds = (n + 15) / 16 * 16;
        std::vector<float> sc(static_cast<size_t>(nq * lds)), out(static_cast<size_t>(nq * D)),
            ref(static_cast<size_t>(nq * D));
        attend_group(q.data(), nq, ldq, Kt.data(), V.data(), n, D, scale, sc.data(), out.data(), D);
        attend_group_ref(q.data(), nq, ldq, Kt.data(), V.data(), n, D, scale, sc.data(), ref.data(),
                         D);
        double err = 0, err_ref = 0, mag = 0;
        for (int64_t i = 0; i < nq; ++i) {
          const std::vector<double> want = attend_f64(q.data() + i * ldq, K, V, n, D, scale);
          for (int64_t d = 0; d < D; ++d) {
            const auto k = static_cast<size_t>(i * D + d);
            err = std::max(err, std::fabs(out[k] - want[static_cast<size_t>(d)]));
            err_ref = std::max(err_ref, std::fabs(ref[k] - want[static_cast<size_t>(d)]));
            mag = std::max(mag, std::fabs(want[static_cast<size_t>(d)]));
          }
        }
        CHECK(err <= 2e-6 * std::max(mag, 1.0));
        CHECK(err_ref <= 2e-6 * std::max(mag, 1.0));
        // Each query's result is independent of the group it is computed in (prefill == decode).
        std::vector<float> one(static_cast<size_t>(D));
        attend_group(q.data() + (nq - 1) * ldq, 1, ldq, Kt.data(), V.data(), n, D, scale, sc.data(),
                     one.data(), D);
        CHECK(std::equal(one.begin(), one.end(), out.begin() + (nq - 1) * D));
        // The f16 cache: the same cache rounded to f16 gives bit for bit what the f32 overloads
        // give on the rounded values (the conversion is exact, the arithmetic the same), on the
        // dispatched kernel and on the reference.
        std::vector<uint16_t> Kh(Kt.size(), 0x7bff), Vh(V.size());  // poison: 65504
        std::vector<float> Kr(Kt), Vr(V);
        for (size_t i = 0; i < Kt.size(); ++i) {
          if (Kt[i] != 1e30f) Kr[i] = f16_to_f32(Kh[i] = f32_to_f16(Kt[i]));
        }
        for (size_t i = 0; i < V.size(); ++i) Vr[i] = f16_to_f32(Vh[i] = f32_to_f16(V[i]));
        std::vector<float> oh(out.size()), of(out.size());
        attend_group(q.data(), nq, ldq, Kh.data(), Vh.data(), n, D, scale, sc.data(), oh.data(), D);
        attend_group(q.data(), nq, ldq, Kr.data(), Vr.data(), n, D, scale, sc.data(), of.data(), D);
        CHECK(oh == of);
        attend_group_ref(q.data(), nq, ldq, Kh.data(), Vh.data(), n, D, scale, sc.data(), oh.data(),
                         D);
        attend_group_ref(q.data(), nq, ldq, Kr.data(), Vr.data(), n, D, scale, sc.data(), of.data(),
                         D);
        CHECK(oh == of);
        double err16 = 0;  // and the rounding moved the result (the test can tell the caches apart)
        for (size_t k = 0; k < out.size(); ++k) err16 = std::max(err16, double{std::fabs(of[k] - ref[k])});
        CHECK(err16 > 0);
      }
    }
  }
}

TEST_CASE("fused ops: f16_row rounds as f32_to_f16, ties, subnormals and overflow included") {
  Rng rng = test::make_rng(35);
  std::vector<float> x;
  for (int i = 0; i < 2000; ++i) x.push_back(static_cast<float>(rng.normal() * std::exp2(rng.uniform(-30, 18))));
  for (uint16_t h : {uint16_t{0x0001}, uint16_t{0x03ff}, uint16_t{0x0400}, uint16_t{0x3c00},
                     uint16_t{0x3c01}, uint16_t{0x7bfe}, uint16_t{0x7bff}}) {
    const float a = f16_to_f32(h), b = f16_to_f32(static_cast<uint16_t>(h + 1));
    x.push_back(a);
    x.push_back(-a);
    x.push_back(a + (b - a) / 2);  // exact ties: to the even neighbour
    x.push_back(std::nextafter(a + (b - a) / 2, b));
  }
  for (float v : {0.0f, -0.0f, 65519.0f, 65520.0f, -1e6f, 1e-9f, INFINITY, -INFINITY}) x.push_back(v);
  std::vector<uint16_t> got(x.size() + 1, 0xAAAA), want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = f32_to_f16(x[i]);
  for (int64_t n : {int64_t{1}, int64_t{15}, static_cast<int64_t>(x.size())}) {
    std::fill(got.begin(), got.end(), uint16_t{0xAAAA});
    f16_row(x.data(), n, got.data());
    CHECK(std::equal(got.begin(), got.begin() + n, want.begin()));
    CHECK(got[static_cast<size_t>(n)] == 0xAAAA);  // nothing written past n
    f16_row_ref(x.data(), n, got.data());
    CHECK(std::equal(got.begin(), got.begin() + n, want.begin()));
  }
  CHECK(f16_to_f32(want[want.size() - 6]) == 65504.0f);  // 65519 rounds down to the largest f16
  CHECK(f16_to_f32(want[want.size() - 5]) == INFINITY);  // 65520 rounds up past it
  const float nan = std::nanf("");
  f16_row(&nan, 1, got.data());
  CHECK(std::isnan(f16_to_f32(got[0])));
}

TEST_CASE("fused ops: swiglu_row matches float64 silu(gate)·up, extremes included") {
  Rng rng = test::make_rng(32);
  for (int64_t F : {1, 17, 256}) {
    std::vector<float> g(static_cast<size_t>(F)), u(static_cast<size_t>(F)),
        out(static_cast<size_t>(F)), ref(static_cast<size_t>(F));
    for (auto& v : g) v = static_cast<float>(rng.uniform(-30, 30));
    for (auto& v : u) v = static_cast<float>(rng.normal());
    if (F > 4) {
      g[0] = 0.0f;
      g[1] = -100.0f;
      g[2] = 100.0f;
      g[3] = -87.0f;
    }
    swiglu_row(g.data(), u.data(), F, out.data());
    swiglu_row_ref(g.data(), u.data(), F, ref.data());
    for (int64_t i = 0; i < F; ++i) {
      const auto k = static_cast<size_t>(i);
      const double want = double{g[k]} / (1.0 + std::exp(-double{g[k]})) * u[k];
      CAPTURE(g[k]);
      CHECK(std::fabs(out[k] - want) <= 4e-7 * std::fabs(want) + 1e-30);
      CHECK(std::fabs(ref[k] - want) <= 4e-7 * std::fabs(want) + 1e-30);
    }
  }
}

TEST_CASE("fused ops: lm_head_int8 equals the reference loop bit for bit") {
  Rng rng = test::make_rng(33);
  for (int64_t C : {64, 100, 2048}) {
    const int64_t Vr = 23, T = 3;
    std::vector<int8_t> w(static_cast<size_t>(Vr * C)), qx(static_cast<size_t>(T * C));
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng.below(255)) - 127);
    for (auto& v : qx) v = static_cast<int8_t>(static_cast<int>(rng.below(255)) - 127);
    for (int64_t i = 0; i < C; ++i) {  // row 0 and token 0 at the extremes
      w[static_cast<size_t>(i)] = -127;
      qx[static_cast<size_t>(i)] = 127;
    }
    std::vector<float> sw(static_cast<size_t>(Vr)), sx(static_cast<size_t>(T));
    for (auto& v : sw) v = static_cast<float>(rng.uniform(0.001, 0.01));
    for (auto& v : sx) v = static_cast<float>(rng.uniform(0.01, 0.1));
    std::vector<int32_t> wsum(static_cast<size_t>(Vr));
    int8_row_sums(w.data(), 0, Vr, C, wsum.data());
    for (int64_t j = 0; j < Vr; ++j) {
      int32_t s = 0;
      for (int64_t i = 0; i < C; ++i) s += w[static_cast<size_t>(j * C + i)];
      CHECK(wsum[static_cast<size_t>(j)] == s);
    }
    const int64_t ldo = Vr + 2;
    std::vector<float> got(static_cast<size_t>(T * ldo), -1.0f),
        want(static_cast<size_t>(T * ldo), -1.0f);
    // Two ragged row ranges, as two threads would split them.
    lm_head_int8(w.data(), sw.data(), wsum.data(), 0, 9, C, qx.data(), sx.data(), T, got.data(),
                 ldo);
    lm_head_int8(w.data(), sw.data(), wsum.data(), 9, Vr, C, qx.data(), sx.data(), T, got.data(),
                 ldo);
    lm_head_int8_ref(w.data(), sw.data(), 0, Vr, C, qx.data(), sx.data(), T, want.data(), ldo);
    CAPTURE(C);
    CHECK(got == want);
    // Row 0 × token 0 is −127·127·C exactly.
    CHECK(got[0] == sx[0] * sw[0] * static_cast<float>(-127 * 127 * C));
  }
}

TEST_CASE("fused ops: rms_norm_row matches float64") {
  Rng rng = test::make_rng(34);
  for (int64_t C : {1, 7, 8, 2048}) {
    std::vector<float> x(static_cast<size_t>(C)), w(static_cast<size_t>(C)),
        y(static_cast<size_t>(C));
    for (auto& v : x) v = static_cast<float>(10 * rng.normal());
    for (auto& v : w) v = static_cast<float>(rng.uniform(0.5, 1.5));
    rms_norm_row(x.data(), w.data(), C, 1e-5f, y.data());
    double ss = 0;
    for (float v : x) ss += double{v} * v;
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(C) + 1e-5);
    for (int64_t i = 0; i < C; ++i) {
      const auto k = static_cast<size_t>(i);
      CHECK(std::fabs(y[k] - x[k] * rs * w[k]) <= 1e-6 * std::fabs(x[k] * rs * w[k]) + 1e-12);
    }
  }
}
