// RoPE: the fused op against its composed reference (random shapes, f32 and f64), against the
// PyTorch fixtures tests/reference/data/rope_*.safetensors, and its error cases.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "autograd/rope.h"
#include "autograd/tape.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

struct RopeRun {
  Tensor y;
  Tensor grad_x;
};

RopeRun run_rope(bool fused, const Tensor& x, const std::vector<double>& inv, int64_t pos0,
                 const Tensor& grad_y) {
  Var xv = Var::parameter(x);
  Tape tape;
  RopeRun r;
  {
    RecordScope rec(tape);
    Var y = fused ? rope(xv, inv, pos0) : rope_composed(xv, inv, pos0);
    r.y = y.value();
    tape.backward(y, grad_y);
  }
  r.grad_x = xv.grad();
  return r;
}

}  // namespace

TEST_CASE("rope: fused matches composed (values and gradients, f32 and f64)") {
  Rng rng = test::make_rng(101);
  struct Case {
    int64_t B, T, H, D, pos0;
    const char* type;
  };
  const Case cases[] = {{2, 13, 3, 16, 0, "default"}, {1, 1, 2, 8, 5, "default"},
                        {3, 5, 1, 8, 37, "llama3"},   {2, 13, 2, 16, 1000, "llama3"},
                        {1, 7, 4, 32, 3, "default"}};
  for (const Case& c : cases) {
    CAPTURE(c.T);
    CAPTURE(c.D);
    CAPTURE(c.pos0);
    RopeConfig cfg;
    cfg.head_dim = c.D;
    cfg.type = c.type;
    cfg.theta = 500000;
    cfg.original_max_position_embeddings = 64;  // puts the bands within a 16-dim head
    const std::vector<double> inv = rope_inv_freq(cfg);
    // A non-contiguous input: [B, H, T, D] storage viewed as [B, T, H, D].
    const Tensor x64 = Tensor::randn({c.B, c.H, c.T, c.D}, rng, 1.0, DType::f64).transpose(1, 2);
    const Tensor g64 = Tensor::randn({c.B, c.T, c.H, c.D}, rng, 1.0, DType::f64);
    // f64: both paths are exact up to rounding, 1e-12.
    {
      const RopeRun a = run_rope(true, x64, inv, c.pos0, g64);
      const RopeRun b = run_rope(false, x64, inv, c.pos0, g64);
      TQ_CHECK_CLOSE(a.y, b.y, 1e-12, 1e-12);
      TQ_CHECK_CLOSE(a.grad_x, b.grad_x, 1e-12, 1e-12);
    }
    // f32: float rounding, 1e-5.
    {
      const Tensor x32 = x64.to(DType::f32), g32 = g64.to(DType::f32);
      const RopeRun a = run_rope(true, x32, inv, c.pos0, g32);
      const RopeRun b = run_rope(false, x32, inv, c.pos0, g32);
      CHECK(a.y.dtype() == DType::f32);
      CHECK(a.grad_x.dtype() == DType::f32);
      TQ_CHECK_CLOSE(a.y, b.y, 1e-5, 1e-5);
      TQ_CHECK_CLOSE(a.grad_x, b.grad_x, 1e-5, 1e-5);
    }
  }
}

TEST_CASE("rope: rope_inv_freq default and llama3 bands") {
  RopeConfig cfg;
  cfg.head_dim = 8;
  cfg.theta = 10000;
  const std::vector<double> inv = rope_inv_freq(cfg);
  REQUIRE(inv.size() == 4);
  CHECK(inv[0] == 1.0);
  CHECK(inv[2] == doctest::Approx(1.0 / 100.0).epsilon(1e-15));
  // llama3 with a long original context leaves high frequencies alone and divides low ones by factor.
  cfg.type = "llama3";
  cfg.original_max_position_embeddings = 4;  // low_freq_wavelen 4, high_freq_wavelen 1
  const std::vector<double> inv3 = rope_inv_freq(cfg);
  CHECK(inv3[0] == 1.0 / 8);  // wavelen 2π > 4: low-frequency band, divided by factor
  CHECK(inv3[3] == doctest::Approx(inv[3] / 8).epsilon(1e-15));
  cfg.original_max_position_embeddings = 100;  // low_freq_wavelen 100, high_freq_wavelen 25
  const std::vector<double> inv4 = rope_inv_freq(cfg);
  CHECK(inv4[0] == 1.0);  // wavelen 2π < 25: high-frequency band, unchanged
  // wavelen 2π·10 ≈ 62.8 lies between the band edges: smoothed.
  const double smooth = (100 / (2 * 3.14159265358979323846 * 10) - 1) / 3;
  CHECK(inv4[1] == doctest::Approx((1 - smooth) * inv[1] / 8 + smooth * inv[1]).epsilon(1e-14));
}

TEST_CASE("rope: PyTorch fixtures (f32 and f64 paths)") {
  // Tolerances: f32 path rtol 1e-5, atol 1e-5 (float rounding of O(1) values);
  // f64 path 1e-10 (references are float64 computed from the same f32 inputs).
  for (const char* name : {"rope_default", "rope_default_pos37", "rope_llama3", "rope_llama3_pos0"}) {
    const std::string name_s = name;
    CAPTURE(name_s);
    const SafetensorsFile f =
        SafetensorsFile::open(test::source_path(std::string("tests/reference/data/") + name + ".safetensors"));
    const auto& meta = f.metadata();
    RopeConfig cfg;
    cfg.theta = std::stod(meta.at("theta"));
    cfg.head_dim = std::stoll(meta.at("head_dim"));
    cfg.type = meta.at("rope_type");
    if (cfg.type == "llama3") {
      cfg.factor = std::stod(meta.at("factor"));
      cfg.low_freq_factor = std::stod(meta.at("low_freq_factor"));
      cfg.high_freq_factor = std::stod(meta.at("high_freq_factor"));
      cfg.original_max_position_embeddings = std::stoll(meta.at("original_max_position_embeddings"));
    }
    const int64_t pos0 = std::stoll(meta.at("pos0"));
    const std::vector<double> inv = rope_inv_freq(cfg);
    const Tensor inv_t = Tensor::from_vector(inv, {static_cast<int64_t>(inv.size())});
    TQ_CHECK_CLOSE(inv_t, f.get("inv_freq"), 1e-14, 0.0);

    const Tensor y_ref = f.get("y"), gx_ref = f.get("grad_x");
    for (DType dt : {DType::f32, DType::f64}) {
      const std::string dt_s = dtype_name(dt);
      CAPTURE(dt_s);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-10;
      const RopeRun r =
          run_rope(true, f.get("x").to(dt).clone(), inv, pos0, f.get("grad_y").to(dt).clone());
      const DiffReport dy = compare(r.y, y_ref, tol, tol), dg = compare(r.grad_x, gx_ref, tol, tol);
      INFO(name_s << " " << dt_s << ": max|dy| " << dy.max_abs << ", max|dgrad_x| "
                   << dg.max_abs);
      TQ_CHECK_CLOSE(r.y, y_ref, tol, tol);
      TQ_CHECK_CLOSE(r.grad_x, gx_ref, tol, tol);
    }
  }
}

TEST_CASE("rope: errors") {
  RopeConfig cfg;
  cfg.head_dim = 8;
  cfg.type = "yarn";
  const std::string m = test::error_of([&] { rope_inv_freq(cfg); });
  CHECK(m.rfind("[rope_inv_freq]", 0) == 0);
  CHECK(m.find("yarn") != std::string::npos);
  cfg.type = "default";
  cfg.head_dim = 7;
  CHECK_THROWS_AS(rope_inv_freq(cfg), Error);

  const std::vector<double> inv(4, 1.0);
  const Var x3 = Var::constant(Tensor::zeros({2, 3, 8}));
  CHECK(test::error_of([&] { rope(x3, inv, 0); }).rfind("[rope]", 0) == 0);
  const Var x_bad_d = Var::constant(Tensor::zeros({1, 2, 3, 6}));
  CHECK(test::error_of([&] { rope(x_bad_d, inv, 0); }).find("[1, 2, 3, 6]") != std::string::npos);
  const Var x_i32 = Var::constant(Tensor::zeros({1, 2, 3, 8}, DType::i32));
  CHECK_THROWS_AS(rope(x_i32, inv, 0), Error);
}

TEST_CASE("rope: finite-difference gradient check (f64)") {
  Rng rng = test::make_rng(102);
  RopeConfig cfg;
  cfg.head_dim = 8;
  cfg.type = "llama3";
  cfg.original_max_position_embeddings = 16;
  const std::vector<double> inv = rope_inv_freq(cfg);
  const Tensor x = Tensor::randn({2, 3, 2, 8}, rng, 1.0, DType::f64);
  const GradCheckResult r =
      check_gradients([&](const std::vector<Var>& v) { return rope(v[0], inv, 11); }, {x});
  CHECK_MESSAGE(r.ok, r.report);
}
