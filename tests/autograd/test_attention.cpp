// Causal GQA attention: the fused op against its composed reference (random shapes, f32 and f64),
// against the PyTorch fixtures tests/reference/data/attention_*.safetensors, finite differences,
// and its error cases.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autograd/attention.h"
#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

struct AttnRun {
  Tensor y;
  Tensor grad_q, grad_k, grad_v;
};

AttnRun run_attention(bool fused, const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                      const Tensor& grad_y) {
  Var qv = Var::parameter(q), kv = Var::parameter(k), vv = Var::parameter(v);
  Tape tape;
  AttnRun r;
  {
    RecordScope rec(tape);
    Var y = fused ? causal_attention(qv, kv, vv, scale) : causal_attention_composed(qv, kv, vv, scale);
    r.y = y.value();
    tape.backward(y, grad_y);
  }
  r.grad_q = qv.grad();
  r.grad_k = kv.grad();
  r.grad_v = vv.grad();
  return r;
}

void check_runs(const AttnRun& a, const AttnRun& b, double rtol, double atol) {
  TQ_CHECK_CLOSE(a.y, b.y, rtol, atol);
  TQ_CHECK_CLOSE(a.grad_q, b.grad_q, rtol, atol);
  TQ_CHECK_CLOSE(a.grad_k, b.grad_k, rtol, atol);
  TQ_CHECK_CLOSE(a.grad_v, b.grad_v, rtol, atol);
}

}  // namespace

TEST_CASE("attention: fused matches composed (values and gradients, f32 and f64)") {
  Rng rng = test::make_rng(201);
  struct Case {
    int64_t B, T, H, Hkv, D;
  };
  const Case cases[] = {{2, 13, 4, 2, 8}, {1, 1, 4, 2, 16}, {2, 7, 6, 2, 8},  {1, 13, 3, 3, 16},
                        {2, 1, 4, 4, 8},  {1, 33, 8, 2, 16}, {1, 5, 2, 1, 8}};
  for (const Case& c : cases) {
    CAPTURE(c.T);
    CAPTURE(c.H);
    CAPTURE(c.Hkv);
    CAPTURE(c.D);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
    const Tensor q = Tensor::randn({c.B, c.T, c.H, c.D}, rng, 1.0, DType::f64);
    // Non-contiguous k: [B, Hkv, T, D] storage viewed as [B, T, Hkv, D].
    const Tensor k = Tensor::randn({c.B, c.Hkv, c.T, c.D}, rng, 1.0, DType::f64).transpose(1, 2);
    const Tensor v = Tensor::randn({c.B, c.T, c.Hkv, c.D}, rng, 1.0, DType::f64);
    const Tensor g = Tensor::randn({c.B, c.T, c.H, c.D}, rng, 1.0, DType::f64);
    // f64: 1e-10 (different summation orders only).
    check_runs(run_attention(true, q, k, v, scale, g), run_attention(false, q, k, v, scale, g),
               1e-10, 1e-10);
    // f32: 1e-5 (float rounding through two matmuls and a softmax).
    const Tensor q32 = q.to(DType::f32), k32 = k.to(DType::f32), v32 = v.to(DType::f32),
                 g32 = g.to(DType::f32);
    const AttnRun a = run_attention(true, q32, k32, v32, scale, g32);
    CHECK(a.y.dtype() == DType::f32);
    check_runs(a, run_attention(false, q32, k32, v32, scale, g32), 1e-5, 1e-5);
  }
}

TEST_CASE("attention: PyTorch fixtures (f32 and f64 paths)") {
  // Tolerances: f32 path rtol 1e-4, atol 1e-5; f64 path 1e-10 (references are float64 computed
  // from the same f32 inputs).
  for (const char* name : {"attention_gqa", "attention_mha", "attention_mha_t1"}) {
    const std::string name_s = name;
    CAPTURE(name_s);
    const SafetensorsFile f = SafetensorsFile::open(
        test::source_path(std::string("tests/reference/data/") + name + ".safetensors"));
    const double scale = std::stod(f.metadata().at("scale"));
    for (DType dt : {DType::f32, DType::f64}) {
      const std::string dt_s = dtype_name(dt);
      CAPTURE(dt_s);
      const double rtol = dt == DType::f32 ? 1e-4 : 1e-10, atol = dt == DType::f32 ? 1e-5 : 1e-10;
      const AttnRun r = run_attention(true, f.get("q").to(dt).clone(), f.get("k").to(dt).clone(),
                                      f.get("v").to(dt).clone(), scale,
                                      f.get("grad_y").to(dt).clone());
      INFO(name_s << " " << dt_s << ": max|dy| " << max_abs_diff(r.y, f.get("y"))
                   << ", max|dgq| " << max_abs_diff(r.grad_q, f.get("grad_q")) << ", max|dgk| "
                   << max_abs_diff(r.grad_k, f.get("grad_k")) << ", max|dgv| "
                   << max_abs_diff(r.grad_v, f.get("grad_v")));
      TQ_CHECK_CLOSE(r.y, f.get("y"), rtol, atol);
      TQ_CHECK_CLOSE(r.grad_q, f.get("grad_q"), rtol, atol);
      TQ_CHECK_CLOSE(r.grad_k, f.get("grad_k"), rtol, atol);
      TQ_CHECK_CLOSE(r.grad_v, f.get("grad_v"), rtol, atol);
    }
  }
}

TEST_CASE("attention: finite-difference gradient check (f64)") {
  Rng rng = test::make_rng(202);
  const Tensor q = Tensor::randn({1, 5, 4, 4}, rng, 1.0, DType::f64);
  const Tensor k = Tensor::randn({1, 5, 2, 4}, rng, 1.0, DType::f64);
  const Tensor v = Tensor::randn({1, 5, 2, 4}, rng, 1.0, DType::f64);
  const GradCheckResult r = check_gradients(
      [](const std::vector<Var>& x) { return causal_attention(x[0], x[1], x[2], 0.5); }, {q, k, v});
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("attention: errors") {
  auto z = [](const Shape& s, DType dt = DType::f32) { return Var::constant(Tensor::zeros(s, dt)); };
  const std::string m = test::error_of([&] {
    causal_attention(z({1, 4, 3, 8}), z({1, 4, 2, 8}), z({1, 4, 2, 8}), 1.0);
  });
  CHECK(m.rfind("[causal_attention]", 0) == 0);
  CHECK(m.find("[1, 4, 3, 8]") != std::string::npos);
  CHECK_THROWS_AS(causal_attention(z({2, 4, 4, 8}), z({1, 4, 2, 8}), z({1, 4, 2, 8}), 1.0), Error);
  CHECK_THROWS_AS(causal_attention(z({1, 5, 4, 8}), z({1, 4, 2, 8}), z({1, 4, 2, 8}), 1.0), Error);
  CHECK_THROWS_AS(causal_attention(z({1, 4, 4, 8}), z({1, 4, 2, 16}), z({1, 4, 2, 16}), 1.0), Error);
  CHECK_THROWS_AS(causal_attention(z({1, 4, 4, 8}), z({1, 4, 2, 8}), z({1, 4, 1, 8}), 1.0), Error);
  CHECK_THROWS_AS(causal_attention(z({1, 4, 4, 8}), z({1, 4, 2, 8}, DType::f64), z({1, 4, 2, 8}), 1.0),
                  Error);
  CHECK_THROWS_AS(causal_attention(z({4, 4, 8}), z({4, 2, 8}), z({4, 2, 8}), 1.0), Error);
  CHECK_THROWS_AS(causal_attention_composed(z({1, 4, 3, 8}), z({1, 4, 2, 8}), z({1, 4, 2, 8}), 1.0),
                  Error);
}
