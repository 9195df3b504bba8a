// tq::gemm (f32 on oneDNN, f64 on Eigen, bf16) against the triple-loop gemm_ref oracle: every
// transpose pair, leading dimensions larger than natural, unaligned base pointers, alpha/beta
// values, ragged sizes, NaN in C with beta == 0, degenerate sizes, the primitive cache and argument
// errors.
//
// Tolerance: any summation order of K products obeys |c - c_exact| <= K*u*sum_k |a_ik*b_kj| (u the
// unit roundoff); we allow (K + 4)*u*(|alpha|*sum_k |a_ik*b_kj| + |beta*c_ij|), the 4 covering the
// alpha/beta scaling and the rounding of the double-accumulated reference. The scale is itself
// computed by gemm_ref on absolute values. bf16 products are exact in f32, so bf16 uses u = 2^-24
// as f32 does; f64 uses the stated 1e-12 relative to the same scale.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tests/test_util.h"

namespace {

using tq::GemmShape;

constexpr float kSentinel = 12345.0f;  // in padding columns of C: gemm must not touch them
constexpr int64_t kBase = 1;           // base-pointer offset so operands are not 64-byte aligned

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  int64_t pad;  // added to every natural leading dimension
  double alpha, beta;
};

GemmShape make_shape(const Case& c) {
  GemmShape s = tq::gemm_shape(c.ta, c.tb, c.M, c.N, c.K);
  s.lda += c.pad;
  s.ldb += c.pad;
  s.ldc += c.pad;
  return s;
}

int64_t a_elems(const GemmShape& s) { return (s.trans_a ? s.K : s.M) * s.lda; }
int64_t b_elems(const GemmShape& s) { return (s.trans_b ? s.N : s.K) * s.ldb; }
int64_t c_elems(const GemmShape& s) { return s.M * s.ldc; }

template <class T>
std::vector<T> randn(tq::Rng& rng, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n + kBase));
  for (auto& x : v) x = static_cast<T>(rng.normal());
  return v;
}

std::vector<uint16_t> randn_bf16(tq::Rng& rng, int64_t n) {
  std::vector<uint16_t> v(static_cast<size_t>(n + kBase));
  for (auto& x : v) x = tq::f32_to_bf16(static_cast<float>(rng.normal()));
  return v;
}

// C with random values in the [M, N] block (NaN when nan_c) and the sentinel in the padding.
template <class T>
std::vector<T> make_c(tq::Rng& rng, const GemmShape& s, bool nan_c) {
  std::vector<T> c(static_cast<size_t>(c_elems(s) + kBase), static_cast<T>(kSentinel));
  for (int64_t i = 0; i < s.M; ++i) {
    for (int64_t j = 0; j < s.N; ++j) {
      c[static_cast<size_t>(kBase + i * s.ldc + j)] =
          nan_c ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(rng.normal());
    }
  }
  return c;
}

template <class T>
std::vector<T> abs_of(const std::vector<T>& v) {
  std::vector<T> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::abs(v[i]);
  return r;
}

std::vector<uint16_t> abs_of_bf16(const std::vector<uint16_t>& v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = static_cast<uint16_t>(v[i] & 0x7fffu);
  return r;
}

std::string case_str(const Case& c) {
  return "ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) +
         " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " pad=" + std::to_string(c.pad) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta);
}

// Compares got against want element-wise with tolerance rel * scale, and checks padding.
template <class T>
void check_result(const GemmShape& s, const std::vector<T>& got, const std::vector<T>& want,
                  const std::vector<T>& scale, double rel, const std::string& what) {
  int64_t bad = 0;
  std::string first;
  for (int64_t i = 0; i < s.M; ++i) {
    for (int64_t j = 0; j < s.ldc; ++j) {
      const size_t idx = static_cast<size_t>(kBase + i * s.ldc + j);
      const double g = static_cast<double>(got[idx]);
      const double w = static_cast<double>(want[idx]);
      bool ok;
      if (j >= s.N) {
        ok = g == static_cast<double>(kSentinel);
      } else {
        const double tol = rel * static_cast<double>(scale[idx]) + 1e-300;
        ok = std::isfinite(g) && std::abs(g - w) <= tol;
      }
      if (!ok && bad++ == 0) {
        first = "C[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + std::to_string(g) +
                ", want " + std::to_string(w);
      }
    }
  }
  INFO(what << ": " << bad << " mismatches, first " << first);
  CHECK(bad == 0);
}

template <class T>
void run_case(tq::Rng& rng, const Case& cs, bool nan_c) {
  const GemmShape s = make_shape(cs);
  const std::vector<T> a = randn<T>(rng, a_elems(s));
  const std::vector<T> b = randn<T>(rng, b_elems(s));
  const std::vector<T> c0 = make_c<T>(rng, s, nan_c);
  const T alpha = static_cast<T>(cs.alpha), beta = static_cast<T>(cs.beta);
  std::vector<T> got = c0, want = c0, scale = abs_of(c0);
  tq::gemm(s, alpha, a.data() + kBase, b.data() + kBase, beta, got.data() + kBase);
  tq::gemm_ref(s, alpha, a.data() + kBase, b.data() + kBase, beta, want.data() + kBase);
  const std::vector<T> aa = abs_of(a), ab = abs_of(b);
  tq::gemm_ref(s, std::abs(alpha), aa.data() + kBase, ab.data() + kBase, std::abs(beta),
               scale.data() + kBase);
  const double u = std::is_same<T, float>::value ? std::ldexp(1.0, -24) : 0.0;
  const double rel = std::is_same<T, float>::value ? static_cast<double>(cs.K + 4) * u : 1e-12;
  check_result(s, got, want, scale, rel, case_str(cs) + (nan_c ? " nan_c" : ""));
}

void run_case_bf16(tq::Rng& rng, const Case& cs, bool nan_c) {
  const GemmShape s = make_shape(cs);
  const std::vector<uint16_t> a = randn_bf16(rng, a_elems(s));
  const std::vector<uint16_t> b = randn_bf16(rng, b_elems(s));
  const std::vector<float> c0 = make_c<float>(rng, s, nan_c);
  const float alpha = static_cast<float>(cs.alpha), beta = static_cast<float>(cs.beta);
  std::vector<float> got = c0, want = c0, scale = abs_of(c0);
  tq::gemm_bf16(s, alpha, a.data() + kBase, b.data() + kBase, beta, got.data() + kBase);
  tq::gemm_bf16_ref(s, alpha, a.data() + kBase, b.data() + kBase, beta, want.data() + kBase);
  const std::vector<uint16_t> aa = abs_of_bf16(a), ab = abs_of_bf16(b);
  tq::gemm_bf16_ref(s, std::abs(alpha), aa.data() + kBase, ab.data() + kBase, std::abs(beta),
                    scale.data() + kBase);
  const double rel = static_cast<double>(cs.K + 4) * std::ldexp(1.0, -24);
  check_result(s, got, want, scale, rel, "bf16 " + case_str(cs) + (nan_c ? " nan_c" : ""));
}

// Every transpose pair x ragged sizes x {natural, padded} leading dims x alpha/beta pairs.
std::vector<Case> all_cases() {
  const int64_t sizes[][3] = {{1, 1, 1},    {1, 7, 33},   {7, 1, 129},  {33, 129, 1},
                              {7, 33, 129}, {129, 7, 33}, {33, 129, 7}, {64, 48, 80},
                              {1, 129, 257}, {130, 67, 129}};
  const double ab[][2] = {{1.0, 0.0}, {0.5, 0.0}, {1.0, 1.0}, {-1.5, 0.25}};
  std::vector<Case> cases;
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (const auto& sz : sizes) {
        for (int64_t pad : {int64_t{0}, int64_t{3}}) {
          for (const auto& p : ab) {
            cases.push_back({ta == 1, tb == 1, sz[0], sz[1], sz[2], pad, p[0], p[1]});
          }
        }
      }
    }
  }
  return cases;
}

}  // namespace

TEST_CASE("gemm f32 matches gemm_ref for all transposes, leading dims, alpha/beta, ragged sizes") {
  tq::Rng rng = tq::test::make_rng(101);
  for (const Case& c : all_cases()) run_case<float>(rng, c, false);
}

TEST_CASE("gemm f32 on a larger shape (blocked oneDNN kernels)") {
  tq::Rng rng = tq::test::make_rng(102);
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      run_case<float>(rng, {ta == 1, tb == 1, 200, 260, 300, 5, 1.0, 0.0}, false);
      run_case<float>(rng, {ta == 1, tb == 1, 200, 260, 300, 0, 0.75, -1.0}, false);
    }
  }
}

TEST_CASE("gemm f64 matches gemm_ref to 1e-12") {
  tq::Rng rng = tq::test::make_rng(103);
  for (const Case& c : all_cases()) run_case<double>(rng, c, false);
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      run_case<double>(rng, {ta == 1, tb == 1, 150, 170, 190, 2, 0.5, 2.0}, false);
    }
  }
}

TEST_CASE("gemm_bf16 matches gemm_bf16_ref") {
  tq::Rng rng = tq::test::make_rng(104);
  for (const Case& c : all_cases()) run_case_bf16(rng, c, false);
  run_case_bf16(rng, {false, true, 200, 260, 300, 4, 1.0, 0.0}, false);
}

TEST_CASE("gemm with beta == 0 never reads C (NaN-filled C stays out of the result)") {
  tq::Rng rng = tq::test::make_rng(105);
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (const Case& c : {Case{ta == 1, tb == 1, 33, 17, 65, 2, 1.0, 0.0},
                            Case{ta == 1, tb == 1, 1, 129, 7, 0, -2.0, 0.0},
                            Case{ta == 1, tb == 1, 200, 64, 128, 1, 1.0, 0.0}}) {
        run_case<float>(rng, c, true);
        run_case<double>(rng, c, true);
        run_case_bf16(rng, c, true);
      }
    }
  }
}

TEST_CASE("gemm degenerate sizes and alpha == 0") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  SUBCASE("M == 0 or N == 0: nothing is touched, null pointers allowed") {
    tq::gemm(tq::gemm_shape(false, false, 0, 5, 3), 1.0f, nullptr, nullptr, 0.0f,
             static_cast<float*>(nullptr));
    tq::gemm(tq::gemm_shape(true, true, 4, 0, 3), 1.0, nullptr, nullptr, 0.0,
             static_cast<double*>(nullptr));
  }
  SUBCASE("K == 0: C = beta * C, and beta == 0 zeroes NaN") {
    GemmShape s = tq::gemm_shape(false, false, 3, 4, 0);
    s.ldc = 6;
    std::vector<float> c(18, nan);
    tq::gemm(s, 1.0f, nullptr, nullptr, 0.0f, c.data());
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 6; ++j) {
        const float v = c[static_cast<size_t>(i * 6 + j)];
        if (j < 4) {
          CHECK(v == 0.0f);
        } else {
          CHECK(std::isnan(v));  // padding untouched
        }
      }
    }
    std::vector<double> d(12, 1.5);
    tq::gemm(tq::gemm_shape(true, false, 3, 4, 0), 2.0, nullptr, nullptr, 2.0, d.data());
    for (double v : d) CHECK(v == 3.0);
    std::vector<float> e(12, 1.5f);
    tq::gemm_bf16(tq::gemm_shape(false, true, 3, 4, 0), 1.0f, nullptr, nullptr, -1.0f, e.data());
    for (float v : e) CHECK(v == -1.5f);
  }
  SUBCASE("alpha == 0: A and B are not read (BLAS semantics)") {
    const GemmShape s = tq::gemm_shape(false, false, 2, 3, 4);
    const std::vector<float> a(8, nan), b(12, nan);
    std::vector<float> c(6, 2.0f);
    tq::gemm(s, 0.0f, a.data(), b.data(), 0.5f, c.data());
    for (float v : c) CHECK(v == 1.0f);
  }
}

TEST_CASE("gemm primitive cache: a repeated shape reuses its primitive") {
  tq::gemm_cache_clear();
  CHECK(tq::gemm_cache_size() == 0);
  tq::Rng rng = tq::test::make_rng(106);
  const GemmShape s = tq::gemm_shape(false, true, 17, 23, 31);
  const std::vector<float> a = randn<float>(rng, 17 * 31), b = randn<float>(rng, 23 * 31);
  std::vector<float> c(17 * 23);
  tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data());
  CHECK(tq::gemm_cache_size() == 1);
  for (int rep = 0; rep < 5; ++rep) tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data());
  CHECK(tq::gemm_cache_size() == 1);
  tq::gemm(s, 1.0f, a.data(), b.data(), 1.0f, c.data());  // beta is part of the key
  CHECK(tq::gemm_cache_size() == 2);
  GemmShape s2 = s;
  s2.ldc = 30;
  std::vector<float> c2(17 * 30);
  tq::gemm(s2, 1.0f, a.data(), b.data(), 0.0f, c2.data());  // so is ldc
  CHECK(tq::gemm_cache_size() == 3);
  // The f64 path and degenerate sizes never build primitives.
  std::vector<double> ad(17 * 31, 1.0), bd(23 * 31, 1.0), cd(17 * 23);
  tq::gemm(s, 1.0, ad.data(), bd.data(), 0.0, cd.data());
  tq::gemm(tq::gemm_shape(false, false, 4, 4, 0), 1.0f, nullptr, nullptr, 0.0f, c.data());
  CHECK(tq::gemm_cache_size() == 3);
  // The thread count is part of the key (oneDNN partitions work for it at creation).
  const int nt = tq::num_threads();
  tq::set_num_threads(nt == 1 ? 2 : 1);
  tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data());
  tq::set_num_threads(nt);
  CHECK(tq::gemm_cache_size() == 4);
  tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data());
  CHECK(tq::gemm_cache_size() == 4);
  tq::gemm_cache_clear();
  CHECK(tq::gemm_cache_size() == 0);
}

TEST_CASE("gemm from concurrent std::threads") {
  // Two threads hammer different shapes (and one shared one) while the cache fills.
  std::vector<std::string> errors(2);
  auto worker = [&errors](int t) {
    tq::Rng rng = tq::test::make_rng(200 + static_cast<uint64_t>(t));
    for (int it = 0; it < 20; ++it) {
      const int64_t M = 5 + (it % 4) * 11 + t, N = 9 + it % 3, K = 40 + (it % 2);
      const GemmShape s = tq::gemm_shape(it % 2 == 1, t == 1, M, N, K);
      const std::vector<float> a = randn<float>(rng, a_elems(s)), b = randn<float>(rng, b_elems(s));
      std::vector<float> got(static_cast<size_t>(c_elems(s))), want = got;
      tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, got.data());
      tq::gemm_ref(s, 1.0f, a.data(), b.data(), 0.0f, want.data());
      for (size_t i = 0; i < got.size(); ++i) {
        if (!(std::abs(got[i] - want[i]) <= 1e-4f * (1.0f + std::abs(want[i])))) {
          errors[static_cast<size_t>(t)] = "thread " + std::to_string(t) + " iteration " +
                                           std::to_string(it) + " element " + std::to_string(i);
          return;
        }
      }
    }
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  CHECK_MESSAGE(errors[0].empty(), errors[0]);
  CHECK_MESSAGE(errors[1].empty(), errors[1]);
}

TEST_CASE("gemm rejects bad arguments with tq::Error") {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  std::vector<double> ad(64, 1.0), bd(64, 1.0), cd(64, 0.0);
  std::vector<uint16_t> ah(64, 0), bh(64, 0);
  auto expect_error = [](auto&& call, const char* needle) {
    try {
      call();
      FAIL("no tq::Error for " << needle);
    } catch (const tq::Error& e) {
      const std::string msg = e.message();
      INFO(msg);
      CHECK(msg.rfind("[gemm]", 0) == 0);
      CHECK(msg.find(needle) != std::string::npos);
      CHECK(msg.find("M=4, N=5, K=6") != std::string::npos);  // names the shape
    }
  };
  GemmShape s = tq::gemm_shape(false, false, 4, 5, 6);
  s.lda = 5;  // < K
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "lda (5) < K (6)");
  expect_error([&] { tq::gemm(s, 1.0, ad.data(), bd.data(), 0.0, cd.data()); }, "lda");
  expect_error([&] { tq::gemm_bf16(s, 1.0f, ah.data(), bh.data(), 0.0f, c.data()); }, "lda");
  expect_error([&] { tq::gemm_ref(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "lda");
  s = tq::gemm_shape(true, false, 4, 5, 6);
  s.lda = 3;  // < M when transposed
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "lda (3) < M (4)");
  s = tq::gemm_shape(false, true, 4, 5, 6);
  s.ldb = 5;  // < K when transposed
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "ldb (5) < K (6)");
  s = tq::gemm_shape(false, false, 4, 5, 6);
  s.ldb = 4;  // < N
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "ldb (4) < N (5)");
  s = tq::gemm_shape(false, false, 4, 5, 6);
  s.ldc = 2;
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()); }, "ldc (2) < N (5)");
  s = tq::gemm_shape(false, false, 4, 5, 6);
  expect_error([&] { tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, static_cast<float*>(nullptr)); },
               "C is null");
  expect_error([&] { tq::gemm(s, 1.0f, nullptr, b.data(), 0.0f, c.data()); }, "A or B is null");
  s.M = -1;
  CHECK_THROWS_AS(tq::gemm(s, 1.0f, a.data(), b.data(), 0.0f, c.data()), tq::Error);
}
