// Chunked cross-entropy: the fused op against its composed reference (random shapes, chunk sizes
// below V and not dividing it, f32 and f64), against the PyTorch fixtures
// tests/reference/data/cross_entropy*.safetensors, finite differences, and its error cases.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autograd/cross_entropy.h"
#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

struct CeRun {
  Tensor loss;
  Tensor grad;
};

// chunk <= 0 selects the composed reference. `seed` is the upstream gradient of the scalar loss.
CeRun run_ce(const Tensor& logits, const Tensor& targets, int64_t chunk, double seed,
             int64_t ignore_index = -100) {
  Var x = Var::parameter(logits);
  Tape tape;
  CeRun r;
  {
    RecordScope rec(tape);
    Var loss = chunk > 0 ? cross_entropy(x, targets, ignore_index, chunk)
                         : cross_entropy_composed(x, targets, ignore_index);
    r.loss = loss.value();
    tape.backward(loss, Tensor::full({}, seed, logits.dtype()));
  }
  r.grad = x.grad();
  return r;
}

Tensor random_targets(Rng& rng, int64_t N, int64_t V, const std::vector<int64_t>& ignored,
                      int64_t ignore_index = -100) {
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (auto& x : t) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  for (int64_t i : ignored) t[static_cast<size_t>(i)] = static_cast<int32_t>(ignore_index);
  return Tensor::from_vector(t, {N});
}

}  // namespace

TEST_CASE("cross_entropy: fused matches composed (values and gradients, f32 and f64)") {
  Rng rng = test::make_rng(301);
  struct Case {
    int64_t N, V, chunk;
    std::vector<int64_t> ignored;
  };
  const std::vector<Case> cases = {{7, 37, 5, {2}},       {5, 100, 7, {}},      {4, 64, 64, {0, 3}},
                                   {3, 50, 4096, {}},     {6, 1000, 128, {4}},  {1, 1, 1, {}},
                                   {9, 333, 1, {1, 2, 8}}, {17, 129, 32, {5}}};
  for (const Case& c : cases) {
    CAPTURE(c.N);
    CAPTURE(c.V);
    CAPTURE(c.chunk);
    // std 3 makes the softmax far from uniform; a transposed view tests non-contiguous logits.
    const Tensor x = Tensor::randn({c.V, c.N}, rng, 3.0, DType::f64).transpose(0, 1);
    const Tensor t = random_targets(rng, c.N, c.V, c.ignored);
    // f64: 1e-11.
    const CeRun a = run_ce(x, t, c.chunk, 0.7), b = run_ce(x, t, 0, 0.7);
    CHECK(a.loss.shape() == Shape{});
    TQ_CHECK_CLOSE(a.loss, b.loss, 1e-11, 1e-11);
    TQ_CHECK_CLOSE(a.grad, b.grad, 1e-11, 1e-12);
    // f32: 1e-5.
    const Tensor x32 = x.to(DType::f32);
    const CeRun a32 = run_ce(x32, t, c.chunk, 0.7), b32 = run_ce(x32, t, 0, 0.7);
    CHECK(a32.loss.dtype() == DType::f32);
    TQ_CHECK_CLOSE(a32.loss, b32.loss, 1e-5, 1e-5);
    TQ_CHECK_CLOSE(a32.grad, b32.grad, 1e-5, 1e-6);
    // The chunk size changes only rounding.
    TQ_CHECK_CLOSE(run_ce(x, t, 3, 0.7).loss, a.loss, 1e-12, 1e-12);
  }
}

TEST_CASE("cross_entropy: every row ignored gives loss 0 and a zero gradient") {
  Rng rng = test::make_rng(302);
  const Tensor x = Tensor::randn({3, 10}, rng, 1.0, DType::f64);
  const Tensor t = random_targets(rng, 3, 10, {0, 1, 2});
  const CeRun r = run_ce(x, t, 4, 1.0);
  CHECK(r.loss.item() == 0.0);
  CHECK(max_abs_diff(r.grad, Tensor::zeros({3, 10}, DType::f64)) == 0.0);
  // A custom ignore_index.
  const Tensor t2 = random_targets(rng, 3, 10, {1}, 7);
  const CeRun a = run_ce(x, t2, 4, 1.0, 7), b = run_ce(x, t2, 0, 1.0, 7);
  TQ_CHECK_CLOSE(a.loss, b.loss, 1e-12, 1e-12);
  TQ_CHECK_CLOSE(a.grad, b.grad, 1e-12, 1e-12);
}

TEST_CASE("cross_entropy: PyTorch fixtures (f32 and f64 paths)") {
  // Tolerances: f32 path rtol 1e-5, atol 1e-6 (loss and gradients are O(1) and O(1/N));
  // f64 path 1e-10 (references are float64 computed from the same f32 inputs).
  for (const char* name : {"cross_entropy", "cross_entropy_v1000"}) {
    const std::string name_s = name;
    CAPTURE(name_s);
    const SafetensorsFile f = SafetensorsFile::open(
        test::source_path(std::string("tests/reference/data/") + name + ".safetensors"));
    const int64_t ignore_index = std::stoll(f.metadata().at("ignore_index"));
    const Tensor targets = f.get("targets");
    for (DType dt : {DType::f32, DType::f64}) {
      for (int64_t chunk : {int64_t{4096}, int64_t{7}, int64_t{128}}) {
        const std::string dt_s = dtype_name(dt);
      CAPTURE(dt_s);
        CAPTURE(chunk);
        const double rtol = dt == DType::f32 ? 1e-5 : 1e-10, atol = dt == DType::f32 ? 1e-6 : 1e-10;
        const CeRun r = run_ce(f.get("logits").to(dt).clone(), targets, chunk, 1.0, ignore_index);
        INFO(name_s << " " << dt_s << " chunk " << chunk << ": |dloss| "
                     << max_abs_diff(r.loss, f.get("loss")) << ", max|dgrad| "
                     << max_abs_diff(r.grad, f.get("grad_logits")));
        TQ_CHECK_CLOSE(r.loss, f.get("loss"), rtol, atol);
        TQ_CHECK_CLOSE(r.grad, f.get("grad_logits"), rtol, atol);
      }
    }
  }
}

TEST_CASE("cross_entropy: finite-difference gradient check (f64)") {
  Rng rng = test::make_rng(303);
  const Tensor x = Tensor::randn({5, 11}, rng, 2.0, DType::f64);
  const Tensor t = random_targets(rng, 5, 11, {3});
  const GradCheckResult r = check_gradients(
      [&](const std::vector<Var>& v) { return cross_entropy(v[0], t, -100, 4); }, {x});
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("cross_entropy: errors") {
  const Var x = Var::constant(Tensor::zeros({4, 10}));
  const Tensor bad = Tensor::from_vector(std::vector<int32_t>{1, 2, -100, 10}, {4});
  const std::string m = test::error_of([&] { cross_entropy(x, bad); });
  CHECK(m.rfind("[cross_entropy]", 0) == 0);
  CHECK(m.find("row 3") != std::string::npos);
  CHECK(m.find("10") != std::string::npos);
  const Tensor neg = Tensor::from_vector(std::vector<int32_t>{1, -1, 0, 0}, {4});
  CHECK(test::error_of([&] { cross_entropy(x, neg); }).find("row 1") != std::string::npos);
  const Tensor ok = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4}, {4});
  CHECK_THROWS_AS(cross_entropy(x, ok, -100, 0), Error);                        // chunk
  CHECK_THROWS_AS(cross_entropy(x, ok.to(DType::f32)), Error);                  // dtype
  CHECK_THROWS_AS(cross_entropy(x, ok.slice(0, 0, 3)), Error);                  // N
  CHECK_THROWS_AS(cross_entropy(Var::constant(Tensor::zeros({4, 2, 5})), ok), Error);  // rank
  CHECK_THROWS_AS(cross_entropy_composed(x, bad), Error);
}
