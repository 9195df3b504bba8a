// train/schedule and train/adamw against closed forms (spec §6 and §12.8) and an independent f64
// re-derivation of PyTorch's AdamW update written out step by step in the test.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/var.h"
#include "tests/test_util.h"
#include "train/adamw.h"
#include "train/schedule.h"

using namespace tq;
using tq::autograd::Var;

TEST_CASE("wsd schedule matches the spec formula at its checkpoints") {
  // Spec §6 with T = 1000, warmup_ratio 0.61 → W = 610, N_d = 300, m = 0.1.
  auto s = train::LrSchedule::wsd(1000, 0.61, 300, 0.1);
  CHECK(s.warmup_steps() == 610);
  CHECK(s.factor(0) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(s.factor(609) == doctest::Approx(0.1 + 0.9 * 609.0 / 610.0).epsilon(1e-15));
  CHECK(s.factor(610) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(s.factor(760) == doctest::Approx(0.55).epsilon(1e-12));  // W + N_d/2: cos(π/2) = 0
  CHECK(s.factor(910) == doctest::Approx(0.1).epsilon(1e-15));   // W + N_d
  CHECK(s.factor(5000) == doctest::Approx(0.1).epsilon(1e-15));
  // W = ⌈0.61·T⌉ rounds up.
  CHECK(train::LrSchedule::wsd(101, 0.61, 10, 0.1).warmup_steps() == 62);
}

TEST_CASE("cosine and constant schedules") {
  auto c = train::LrSchedule::cosine(110, 10, 0.0);
  CHECK(c.factor(0) == 0.0);
  CHECK(c.factor(5) == doctest::Approx(0.5));
  CHECK(c.factor(10) == doctest::Approx(1.0));
  CHECK(c.factor(60) == doctest::Approx(0.5));
  CHECK(c.factor(110) == doctest::Approx(0.0));
  auto k = train::LrSchedule::constant();
  CHECK(k.factor(0) == 1.0);
  CHECK(k.factor(12345) == 1.0);
  CHECK_THROWS_WITH_AS(train::LrSchedule::wsd(100, 1.5, 10, 0.1),
                       doctest::Contains("warmup_ratio"), tq::Error);
  CHECK_THROWS_WITH_AS(train::parse_schedule_kind("linear"), doctest::Contains("linear"), tq::Error);
}

TEST_CASE("AdamW first step moves every weight by lr·sign(g) (bias correction)") {
  auto rng = test::make_rng(1);
  Var w = Var::parameter(Tensor::randn({4, 8}, rng, 1.0, DType::f64), "w");
  Tensor w0 = w.value().clone();
  Tensor g = Tensor::randn({4, 8}, rng, 1.0, DType::f64);
  w.impl()->grad = g.clone();
  train::AdamWOptions o;
  o.lr = 1e-2;
  o.eps = 1e-12;
  train::AdamW opt({{"layer.weight", w}}, o);
  opt.step();
  const double* a = w0.data<double>();
  const double* b = w.value().data<double>();
  const double* gd = g.data<double>();
  for (int i = 0; i < 32; ++i) CHECK(b[i] - a[i] == doctest::Approx(-1e-2 * (gd[i] > 0 ? 1 : -1)).epsilon(1e-9));
}

TEST_CASE("AdamW matches a step-by-step f64 re-derivation over several steps, with decay groups") {
  auto rng = test::make_rng(2);
  const double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  Var w = Var::parameter(Tensor::randn({3, 5}, rng, 1.0, DType::f64), "w");
  Var n = Var::parameter(Tensor::randn({5}, rng, 1.0, DType::f64), "n");
  std::vector<double> rw(w.value().data<double>(), w.value().data<double>() + 15);
  std::vector<double> rn(n.value().data<double>(), n.value().data<double>() + 5);
  std::vector<double> mw(15, 0), vw(15, 0), mn(5, 0), vn(5, 0);
  train::AdamW opt({{"model.layers.0.mlp.up_proj.weight", w}, {"model.norm.weight", n}},
                   [&] {
                     train::AdamWOptions o;
                     o.lr = lr, o.beta1 = b1, o.beta2 = b2, o.eps = eps, o.weight_decay = wd;
                     return o;
                   }());
  CHECK(opt.decays(0));
  CHECK_FALSE(opt.decays(1));
  auto ref = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                 const Tensor& g, int k, double decay) {
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = g.data<double>()[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= lr * decay * p[i];
      const double mh = m[i] / (1 - std::pow(b1, k)), vh = v[i] / (1 - std::pow(b2, k));
      p[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
  };
  for (int k = 1; k <= 5; ++k) {
    Tensor gw = Tensor::randn({3, 5}, rng, 1.0, DType::f64);
    Tensor gn = Tensor::randn({5}, rng, 1.0, DType::f64);
    w.impl()->grad = gw.clone();
    n.impl()->grad = gn.clone();
    opt.step();
    ref(rw, mw, vw, gw, k, wd);
    ref(rn, mn, vn, gn, k, 0.0);
  }
  for (int i = 0; i < 15; ++i) CHECK(w.value().data<double>()[i] == doctest::Approx(rw[i]).epsilon(1e-13));
  for (int i = 0; i < 5; ++i) CHECK(n.value().data<double>()[i] == doctest::Approx(rn[i]).epsilon(1e-13));
  CHECK(opt.steps()[0] == 5);
}

TEST_CASE("AdamW state round-trips and mismatches are reported together") {
  auto rng = test::make_rng(3);
  Var w = Var::parameter(Tensor::randn({2, 3}, rng), "w");
  w.impl()->grad = Tensor::randn({2, 3}, rng);
  train::AdamW a({{"a.weight", w}});
  a.step(1e-3);
  Var w2 = Var::parameter(w.value().clone(), "w");
  train::AdamW b({{"a.weight", w2}});
  b.load_state(a.state_tensors(), a.steps(), "optimizer.safetensors");
  CHECK(b.steps()[0] == 1);
  CHECK(allclose(b.state_tensors()[1].second, a.state_tensors()[1].second, 0, 0));
  std::vector<std::pair<std::string, Tensor>> bad = {{"a.weight.exp_avg", Tensor::zeros({3, 2})},
                                                     {"zzz", Tensor::zeros({1})}};
  const std::string msg = test::error_of([&] { b.load_state(bad, {1}, "opt.safetensors"); });
  CHECK(msg.find("opt.safetensors") != std::string::npos);
  CHECK(msg.find("a.weight.exp_avg_sq") != std::string::npos);
  CHECK(msg.find("zzz") != std::string::npos);
  CHECK(msg.find("shape") != std::string::npos);
}

TEST_CASE("clip_grad_norm scales to max_norm and returns the pre-clip norm") {
  Var a = Var::parameter(Tensor::zeros({2}), "a");
  Var b = Var::parameter(Tensor::zeros({1}), "b");
  a.impl()->grad = Tensor::from_vector<float>({3.0f, 0.0f}, {2});
  b.impl()->grad = Tensor::from_vector<float>({4.0f}, {1});
  std::vector<std::pair<std::string, Var>> ps = {{"a", a}, {"b", b}};
  CHECK(train::clip_grad_norm(ps, 10.0) == doctest::Approx(5.0));
  CHECK(a.grad().data<float>()[0] == 3.0f);  // under the limit: untouched
  CHECK(train::clip_grad_norm(ps, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad().data<float>()[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().data<float>()[0] == doctest::Approx(0.8).epsilon(1e-5));
}
