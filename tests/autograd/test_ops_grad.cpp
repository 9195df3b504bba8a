// Every basic op and the fused RMSNorm/SwiGLU: float64 finite-difference Jacobians, and fused vs
// composed. Inputs are kept away from kinks (log/sqrt/rsqrt/div get positive inputs).
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/rms_norm.h"
#include "autograd/swiglu.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

Tensor rnd(const Shape& s, uint64_t salt, double stddev = 1.0) {
  Rng rng = test::make_rng(salt);
  return Tensor::randn(s, rng, stddev, DType::f64);
}
Tensor pos(const Shape& s, uint64_t salt) {
  Rng rng = test::make_rng(salt);
  return Tensor::uniform(s, rng, 0.5, 2.0, DType::f64);
}

void expect_grad(const GradFn& fn, const std::vector<Tensor>& xs, GradCheckOptions o = {}) {
  const GradCheckResult r = check_gradients(fn, xs, o);
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.entries > 0);
}

}  // namespace

TEST_CASE("gradcheck: elementwise ops with broadcasting") {
  const Tensor a = rnd({3, 4}, 1), b = rnd({3, 4}, 2), row = rnd({4}, 3), col = rnd({3, 1}, 4);
  expect_grad([](auto v) { return add(v[0], v[1]); }, {a, b});
  expect_grad([](auto v) { return add(v[0], v[1]); }, {a, row});
  expect_grad([](auto v) { return sub(v[0], v[1]); }, {a, col});
  expect_grad([](auto v) { return mul(v[0], v[1]); }, {a, row});
  expect_grad([](auto v) { return mul(v[0], v[1]); }, {col, row});  // both broadcast
  expect_grad([](auto v) { return div(v[0], v[1]); }, {a, pos({3, 4}, 5)});
  expect_grad([](auto v) { return div(v[0], v[1]); }, {a, pos({4}, 6)});
  expect_grad([](auto v) { return scale(v[0], -2.5); }, {a});
  expect_grad([](auto v) { return add_scalar(v[0], 3.0); }, {a});
  expect_grad([](auto v) { return neg(v[0]); }, {a});
  expect_grad([](auto v) { return exp(v[0]); }, {a});
  expect_grad([](auto v) { return log(v[0]); }, {pos({3, 4}, 7)});
  expect_grad([](auto v) { return sqrt(v[0]); }, {pos({3, 4}, 8)});
  expect_grad([](auto v) { return rsqrt(v[0]); }, {pos({3, 4}, 9)});
  expect_grad([](auto v) { return square(v[0]); }, {a});
  expect_grad([](auto v) { return silu(v[0]); }, {rnd({2, 5}, 10, 3.0)});
  expect_grad([](auto v) { return broadcast_to(v[0], {2, 3, 4}); }, {col});
}

TEST_CASE("gradcheck: reductions and shape ops") {
  const Tensor a = rnd({2, 3, 4}, 11);
  expect_grad([](auto v) { return sum(v[0]); }, {a});
  expect_grad([](auto v) { return mean(v[0]); }, {a});
  for (int64_t d : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      expect_grad([d, keep](auto v) { return sum(v[0], d, keep); }, {a});
      expect_grad([d, keep](auto v) { return mean(v[0], d, keep); }, {a});
    }
  }
  expect_grad([](auto v) { return reshape(v[0], {4, -1}); }, {a});
  expect_grad([](auto v) { return transpose(v[0], 0, 2); }, {a});
  expect_grad([](auto v) { return reshape(transpose(v[0], 1, 2), {-1}); }, {a});  // non-contiguous reshape
  expect_grad([](auto v) { return slice(v[0], 1, 1, 3); }, {a});
  expect_grad([](auto v) { return slice(v[0], -1, 0, 2); }, {a});
  expect_grad([](auto v) { return concat({v[0], v[1], v[0]}, 1); }, {a, rnd({2, 2, 4}, 12)});
  expect_grad([](auto v) { return concat({v[0], v[1]}, -1); }, {a, rnd({2, 3, 1}, 13)});
}

TEST_CASE("gradcheck: matmul and linear") {
  expect_grad([](auto v) { return matmul(v[0], v[1]); }, {rnd({3, 5}, 21), rnd({5, 4}, 22)});
  expect_grad([](auto v) { return matmul(v[0], v[1]); }, {rnd({2, 3, 5}, 23), rnd({2, 5, 4}, 24)});
  expect_grad([](auto v) { return matmul(v[0], v[1]); }, {rnd({2, 2, 3, 5}, 25), rnd({5, 2}, 26)});
  expect_grad([](auto v) { return linear(v[0], v[1]); }, {rnd({2, 3, 6}, 27), rnd({4, 6}, 28)});
  expect_grad([](auto v) { return linear(v[0], v[1], v[2]); }, {rnd({5, 6}, 29), rnd({4, 6}, 30), rnd({4}, 31)});
  // A transposed (non-contiguous) operand.
  expect_grad([](auto v) { return matmul(transpose(v[0], 0, 1), v[1]); }, {rnd({5, 3}, 32), rnd({5, 4}, 33)});
}

TEST_CASE("gradcheck: embedding, softmax, log_softmax, pick") {
  const Tensor ids = Tensor::from_vector<int32_t>({3, 1, 3, 0, 4, 3}, {2, 3});
  expect_grad([ids](auto v) { return embedding(v[0], ids); }, {rnd({5, 4}, 41)});
  expect_grad([](auto v) { return softmax(v[0]); }, {rnd({3, 7}, 42, 2.0)});
  expect_grad([](auto v) { return log_softmax(v[0]); }, {rnd({2, 3, 7}, 43, 2.0)});
  const Tensor idx = Tensor::from_vector<int32_t>({2, -100, 6}, {3});
  expect_grad([idx](auto v) { return pick(v[0], idx); }, {rnd({3, 7}, 44)});
}

TEST_CASE("gradcheck: fused rms_norm and swiglu") {
  expect_grad([](auto v) { return rms_norm(v[0], v[1], 1e-5); }, {rnd({3, 16}, 51, 2.0), pos({16}, 52)});
  expect_grad([](auto v) { return rms_norm(v[0], v[1], 1e-6); }, {rnd({2, 2, 8}, 53, 0.01), pos({8}, 54)});
  expect_grad([](auto v) { return swiglu(v[0], v[1]); }, {rnd({2, 3, 8}, 55, 2.0), rnd({2, 3, 8}, 56)});
}

namespace {
// Runs fn forward and backward (seed g) and returns {y, grads of every input}.
std::vector<Tensor> run_with_grads(const GradFn& fn, const std::vector<Tensor>& xs, const Tensor& g) {
  std::vector<Var> vs;
  for (const Tensor& x : xs) vs.push_back(Var::parameter(x.clone()));
  Tape tape;
  RecordScope rec(tape);
  const Var y = fn(vs);
  tape.backward(y, g);
  std::vector<Tensor> out{y.value()};
  for (const Var& v : vs) out.push_back(v.grad());
  return out;
}

void expect_same(const GradFn& fused, const GradFn& composed, const std::vector<Tensor>& xs, double rtol,
                 double atol, uint64_t salt) {
  Rng rng = test::make_rng(salt);
  const Tensor y = fused([&] {
    NoGradGuard ng;
    std::vector<Var> vs;
    for (const Tensor& x : xs) vs.emplace_back(x);
    return vs;
  }()).value();
  const Tensor g = Tensor::randn(y.shape(), rng, 1.0, y.dtype());
  const auto a = run_with_grads(fused, xs, g), b = run_with_grads(composed, xs, g);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << i << " (0 = output, then input gradients)");
    TQ_CHECK_CLOSE(a[i], b[i], rtol, atol);
  }
}
}  // namespace

TEST_CASE("fused vs composed: rms_norm and swiglu, f64 and f32") {
  for (DType dt : {DType::f64, DType::f32}) {
    const double tol = dt == DType::f64 ? 1e-12 : 2e-5;
    const Tensor x = rnd({2, 5, 24}, 61, 3.0).to(dt), w = pos({24}, 62).to(dt);
    expect_same([](auto v) { return rms_norm(v[0], v[1], 1e-5); },
                [](auto v) { return rms_norm_composed(v[0], v[1], 1e-5); }, {x, w}, tol, tol, 63);
    const Tensor gt = rnd({3, 40}, 64, 2.0).to(dt), up = rnd({3, 40}, 65).to(dt);
    expect_same([](auto v) { return swiglu(v[0], v[1]); }, [](auto v) { return swiglu_composed(v[0], v[1]); },
                {gt, up}, tol, tol, 66);
  }
}

TEST_CASE("tape: parameters accumulate, intermediates are freed, NoGradGuard stops recording") {
  Var w = Var::parameter(Tensor::from_vector<double>({1, 2, 3}, {3}), "w");
  Tape tape;
  {
    RecordScope rec(tape);
    Var h = mul(w, w);  // the same gradient tensor flows to both inputs of mul
    Var y = sum(h);
    CHECK(tape.size() == 2);
    tape.backward(y);
    CHECK(tape.size() == 0);
    CHECK_FALSE(h.has_grad());  // intermediate gradient released
    CHECK(w.grad().to_vector() == std::vector<double>{2, 4, 6});
    tape.backward(sum(w));  // a second pass accumulates
    CHECK(w.grad().to_vector() == std::vector<double>{3, 5, 7});
    {
      NoGradGuard ng;
      Var z = mul(w, w);
      CHECK_FALSE(z.requires_grad());
      CHECK(tape.size() == 0);
    }
  }
  // Outside a RecordScope ops are plain eager code.
  Var z = mul(w, w);
  CHECK_FALSE(z.requires_grad());
  w.zero_grad();
  CHECK_FALSE(w.has_grad());
}

TEST_CASE("tape: a shared upstream gradient is never modified through an alias") {
  // add's backward hands the same tensor to both inputs; accumulating into one must not change the other.
  Var a = Var::parameter(Tensor::from_vector<double>({1, 1}, {2}));
  Var b = Var::parameter(Tensor::from_vector<double>({1, 1}, {2}));
  Tape tape;
  RecordScope rec(tape);
  Var y = add(add(a, b), a);  // a receives two contributions
  tape.backward(y, Tensor::from_vector<double>({1, 2}, {2}));
  CHECK(a.grad().to_vector() == std::vector<double>{2, 4});
  CHECK(b.grad().to_vector() == std::vector<double>{1, 2});
}

TEST_CASE("ops: bad input gives a clear error") {
  Var a = Var::constant(Tensor::zeros({2, 3}, DType::f32));
  Var b = Var::constant(Tensor::zeros({4}, DType::f32));
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("[add] shapes [2, 3] and [4] cannot be broadcast"), tq::Error);
  CHECK_THROWS_WITH_AS(matmul(a, a), doctest::Contains("[matmul] inner dimensions differ"), tq::Error);
  CHECK_THROWS_WITH_AS(embedding(Var::constant(Tensor::zeros({5, 2})), Tensor::from_vector<int32_t>({7}, {1})),
                       doctest::Contains("token id 7"), tq::Error);
  CHECK_THROWS_WITH_AS(rms_norm(a, b, 1e-5), doctest::Contains("[rms_norm] weight [4] must be [3]"), tq::Error);
  CHECK_THROWS_AS(add(a, Var::constant(Tensor::zeros({2, 3}, DType::i32))), tq::Error);
}

TEST_CASE("gradcheck can fail: a deliberately wrong backward is caught") {
  // y = x², but the backward claims 2x + 0.01 — a small error the checker must see.
  const GradFn wrong = [](const std::vector<Var>& v) {
    const Var& x = v[0];
    Tensor y = square(Var::constant(x.value())).value();
    return make_result("wrong_square", y, {x}, [x](const Tensor& g) {
      Tensor gx = Tensor::empty(x.shape(), DType::f64);
      for (int64_t i = 0; i < gx.numel(); ++i)
        gx.data<double>()[i] = g.data<double>()[i] * (2 * x.value().data<double>()[i] + 0.01);
      accumulate_grad(x, gx);
    });
  };
  const GradCheckResult r = check_gradients(wrong, {rnd({4}, 71)});
  CHECK_FALSE(r.ok);
  CHECK(r.report.find("FAILED") != std::string::npos);
}
