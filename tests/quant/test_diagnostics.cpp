// DeadZoneMonitor (spec §11, docs/diagnostics.md): every number on hand-made weights in closed form
// (dead fraction, boundary mass, histogram bins, flips across measure() calls after editing the
// weights, re-entry within k), the Gaussian dead fraction and boundary mass, GSNR on synthetic
// gradients with known mean and variance, the bias cosine against plain loops, and a cost note.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "nn/llama.h"
#include "quant/diagnostics.h"
#include "quant/quant.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::quant;
using autograd::Var;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

struct Holder : nn::Module {
  std::shared_ptr<QuantLinear> q, d;
  Holder(int64_t in, int64_t out, const QuantConfig& cfg) {
    q = register_module("q_proj", std::make_shared<QuantLinear>(in, out, cfg));
    d = register_module("down_proj", std::make_shared<QuantLinear>(in, out, cfg));
  }
};

void fill_weight(const QuantLinear& l, const Tensor& src) {
  Tensor t = l.weight().value();  // shares the parameter's storage
  t.copy_from(src);
}

void set_weight(const QuantLinear& l, const std::vector<float>& v) {
  Tensor t = l.weight().value();
  t.copy_from(Tensor::from_vector<float>(v, t.shape()));
}

QuantConfig channel_absmean() {
  QuantConfig c;
  c.method = "absmean";
  c.granularity = Granularity::channel;
  return c;
}

double num(const Json& j) {
  return j.get<double>();
}

}  // namespace

TEST_CASE(
    "DeadZoneMonitor: hand-made weights, every field in closed form across five measurements") {
  Holder h(8, 1, channel_absmean());
  // mean|w| = 2 → α = 2, Δ = 1 exactly; r = |w| = [3, 3, 1, 1, 0.5, 0, 4, 3.5]
  set_weight(*h.q, {3, -3, 1, -1, 0.5f, 0, 4, -3.5f});
  set_weight(*h.d, {1, 1, 1, 1, -1, -1, -1, -1});  // Δ = 0.5, r = 2 everywhere: all active
  DeadZoneOptions o;
  o.reentry_window = 2;
  DeadZoneMonitor mon(o);

  Json m1 = mon.measure(h, 10);
  CHECK(m1["step"] == 10);
  const Json& q1 = m1["q_proj"];
  CHECK(num(q1["dead_fraction"]) == 0.25);  // r = 0.5 and 0
  CHECK(num(q1["boundary_mass"]) == 0.25);  // r = 1 twice
  std::vector<int64_t> want(40, 0);
  for (int b : {30, 30, 10, 10, 5, 0, 39, 35})
    ++want[static_cast<size_t>(b)];  // r = 4 lands in the last bin
  CHECK(q1["hist"].get<std::vector<int64_t>>() == want);
  CHECK(q1["escape_rate"].is_null());  // nothing to compare with yet
  CHECK(q1["reentry_ratio"].is_null());
  CHECK(num(m1["d"
               "own_proj"]["dead_fraction"]) == 0.0);
  std::vector<int64_t> want_d(40, 0);
  want_d[20] = 8;
  CHECK(m1["down_proj"]["hist"].get<std::vector<int64_t>>() == want_d);
  CHECK(num(m1["dead_fraction"]) == 2.0 / 16);  // overall
  CHECK(m1["n_weights"] == 16);
  CHECK(m1["n_layers"] == 2);

  // Swap positions 0 and 4 (3 ↔ 0.5: mean|w| unchanged) and negate position 2.
  set_weight(*h.q, {0.5f, -3, -1, -1, 3, 0, 4, -3.5f});
  Json m2 = mon.measure(h, 20);
  const Json& q2 = m2["q_proj"];
  CHECK(num(q2["dead_fraction"]) == 0.25);
  CHECK(q2["escapes"] == 1);                                   // position 4: 0 → +1
  CHECK(q2["reentries"] == 1);                                 // position 0: +1 → 0
  CHECK(q2["sign_flips"] == 1);                                // position 2: +1 → −1
  CHECK(num(q2["escape_rate"]) == doctest::Approx(1.0 / 2));   // of the 2 previously dead
  CHECK(num(q2["reentry_rate"]) == doctest::Approx(1.0 / 6));  // of the 6 previously active
  CHECK(num(q2["sign_flip_rate"]) == doctest::Approx(1.0 / 6));
  CHECK(q2["reentry_ratio"].is_null());  // position 4 left, nothing resolved yet
  CHECK(m2["down_proj"]["escapes"] == 0);
  CHECK(num(m2["escape_rate"]) == doctest::Approx(1.0 / 2));  // overall: 2 previously dead
  CHECK(num(m2["reentry_rate"]) == doctest::Approx(1.0 / 14));

  // Swap back: position 4 returns to the dead zone one measurement after leaving (≤ k = 2): a
  // re-entry; position 0 escapes.
  set_weight(*h.q, {3, -3, -1, -1, 0.5f, 0, 4, -3.5f});
  Json m3 = mon.measure(h, 30);
  CHECK(num(m3["q_proj"]["reentry_ratio"]) == 1.0);
  CHECK(m3["q_proj"]["escapes"] == 1);
  Json m4 = mon.measure(h, 40);  // position 0 has been out 2 measurements: still tracked
  CHECK(m4["q_proj"]["reentry_ratio"].is_null());
  CHECK(num(m4["q_proj"]["reentry_ratio_total"]) == 1.0);
  CHECK(m4["q_proj"]["escapes"] == 0);
  CHECK(num(m4["q_proj"]["escape_rate"]) == 0.0);
  Json m5 = mon.measure(h, 50);  // 3 > k: settled outside
  CHECK(num(m5["q_proj"]["reentry_ratio"]) == 0.0);
  CHECK(num(m5["q_proj"]["reentry_ratio_total"]) == 0.5);
  CHECK(num(m5["reentry_ratio_total"]) == 0.5);

  mon.reset();
  CHECK(mon.measure(h, 60)["q_proj"]["escape_rate"].is_null());
}

TEST_CASE(
    "DeadZoneMonitor: Gaussian weights give dead fraction 0.31 and the Gaussian boundary mass") {
  QuantConfig cfg;  // tequila, group 128
  Holder h(1024, 256, cfg);
  Rng rng = make_rng(31);
  fill_weight(*h.q, Tensor::randn({256, 1024}, rng, 0.02));
  fill_weight(*h.d, Tensor::randn({256, 1024}, rng, 0.02));
  DeadZoneMonitor mon;
  const Json m = mon.measure(h, 0);
  // Δ = ½·E|w| = ½·√(2/π)·σ; P(|z| < Δ/σ) and P(0.95Δ < |z| < 1.05Δ)
  const double d = 0.5 * std::sqrt(2.0 / M_PI);
  const double p_dead = std::erf(d / std::sqrt(2.0));
  const double p_boundary =
      std::erf(1.05 * d / std::sqrt(2.0)) - std::erf(0.95 * d / std::sqrt(2.0));
  MESSAGE("dead " << num(m["dead_fraction"]) << " (expect " << p_dead << "), boundary "
                  << num(m["boundary_mass"]) << " (expect " << p_boundary << ")");
  CHECK(num(m["dead_fraction"]) == doctest::Approx(p_dead).epsilon(0.02));
  CHECK(std::abs(num(m["dead_fraction"]) - 0.31) < 0.01);
  CHECK(num(m["boundary_mass"]) == doctest::Approx(p_boundary).epsilon(0.05));
  int64_t total = 0;
  for (int64_t c : m["hist"].get<std::vector<int64_t>>()) total += c;
  CHECK(total == 2 * 256 * 1024);
  // The histogram of r below 1 holds exactly the dead weights (no ties at r = 1 with random data).
  const auto hist = m["hist"].get<std::vector<int64_t>>();
  int64_t below = 0;
  for (size_t b = 0; b < 10; ++b) below += hist[b];
  CHECK(below == static_cast<int64_t>(std::llround(num(m["dead_fraction"]) * 2 * 256 * 1024)));
}

TEST_CASE("DeadZoneMonitor: lsq/seq layers use their own dead zone (α/2, α/3)") {
  for (const char* method : {"lsq", "seq"}) {
    QuantConfig c;
    c.method = method;
    c.granularity = Granularity::channel;
    Holder h(6, 1, c);
    // α = max|w| = 3; lsq dead ⇔ |w| < 1.5 (ties 1.5 → 0 too), seq dead ⇔ |w| < 1 (v·1.5 < 0.5)
    set_weight(*h.q, {3, 1.2f, -0.9f, 0.3f, -2, 1.4f});
    set_weight(*h.d, {3, 3, 3, 3, 3, 3});
    h.q->init_weight_scale();
    h.d->init_weight_scale();
    DeadZoneMonitor mon;
    const Json m = mon.measure(h, 0);
    const bool lsq = std::string(method) == "lsq";
    CHECK(num(m["q_proj"]["dead_fraction"]) == doctest::Approx(lsq ? 4.0 / 6 : 2.0 / 6));
  }
}

TEST_CASE("gradient_snr: synthetic gradients with known mean and variance per weight") {
  Holder h(8, 2, channel_absmean());
  // row 0 of q_proj: mean|w| = 1, Δ = 0.5 → positions 0..3 dead (|w| = 0.1), 4..7 active (|w|
  // = 1.9)
  set_weight(*h.q, {0.1f, -0.1f, 0.1f, -0.1f, 1.9f, -1.9f, 1.9f, -1.9f, 0.1f, -0.1f, 0.1f, -0.1f,
                    1.9f, -1.9f, 1.9f, -1.9f});
  set_weight(*h.d, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  const std::vector<double> s = {1, -1, 1, -1, 1, -1};  // mean 0, (1/K)Σ s² = 1
  int k = 0;
  auto compute = [&]() {
    Tensor gq = Tensor::empty({2, 8}), gd = Tensor::empty({2, 8});
    for (int64_t i = 0; i < 16; ++i) {
      const bool dead = (i % 8) < 4;
      // dead: μ = 0.1, σ = 1 → GSNR 0.01; active: μ = −1, σ = 0.5 → 4
      gq.data<float>()[i] = static_cast<float>(dead ? 0.1 + 1.0 * s[static_cast<size_t>(k % 6)]
                                                    : -1.0 + 0.5 * s[static_cast<size_t>(k % 6)]);
      gd.data<float>()[i] =
          static_cast<float>(2.0 + 0.25 * s[static_cast<size_t>(k % 6)]);  // all active: 64
    }
    autograd::accumulate_grad(h.q->weight(), gq);
    autograd::accumulate_grad(h.d->weight(), gd);
    ++k;
  };
  DeadZoneMonitor mon;
  const Json g = mon.gradient_snr(h, compute, 6);
  CHECK(k == 6);
  CHECK(num(g["q_proj"]["dead_mean"]) == doctest::Approx(0.01).epsilon(1e-5));
  CHECK(num(g["q_proj"]["active_mean"]) == doctest::Approx(4.0).epsilon(1e-5));
  CHECK(num(g["q_proj"]["dead_median"]) == doctest::Approx(0.01).epsilon(1e-5));
  CHECK(g["q_proj"]["n_dead"] == 8);
  CHECK(num(g["down_proj"]["active_mean"]) == doctest::Approx(64.0).epsilon(1e-5));
  CHECK(g["down_proj"]["dead_mean"].is_null());
  CHECK(num(g["active_mean"]) == doctest::Approx((8 * 4.0 + 16 * 64.0) / 24).epsilon(1e-5));
  CHECK(g["K"] == 6);
  CHECK(error_of([&] { mon.gradient_snr(h, compute, 1); }).find("K") != std::string::npos);
  // sampling: at most gsnr_max_samples weights per layer
  DeadZoneOptions o;
  o.gsnr_max_samples = 3;
  const Json g3 = DeadZoneMonitor(o).gradient_snr(h, compute, 2);
  CHECK(g3["q_proj"]["n_dead"].get<int64_t>() + g3["q_proj"]["n_active"].get<int64_t>() == 3);
}

TEST_CASE("bias_cosine: λ·E_t Σ_dead sign(x)·w against c, vs plain loops") {
  QuantConfig cfg;
  cfg.method = "tequila";
  cfg.granularity = Granularity::channel;
  QuantLinear l(6, 3, cfg);
  Rng rng = make_rng(33);
  fill_weight(l, Tensor::randn({3, 6}, rng, 1.0));
  const Tensor x = Tensor::randn({5, 6}, rng, 1.0);
  const TernaryView v = l.export_ternary();
  std::vector<double> dep(3, 0), c(3, 0);
  const float* w = l.weight().value().data<float>();
  const float* xp = x.data<float>();
  double tok = 0;
  for (int64_t j = 0; j < 3; ++j)
    for (int64_t i = 0; i < 6; ++i)
      if (v.codes.data<int8_t>()[j * 6 + i] == 0) {
        c[static_cast<size_t>(j)] += 1e-3 * w[j * 6 + i];
        for (int64_t t = 0; t < 5; ++t)
          dep[static_cast<size_t>(j)] += 1e-3 * (xp[t * 6 + i] > 0 ? 1 : -1) * w[j * 6 + i] / 5;
      }
  for (int64_t t = 0; t < 5; ++t) {
    double dot = 0, nb = 0, nc = 0;
    for (int64_t j = 0; j < 3; ++j) {
      double b = 0;
      for (int64_t i = 0; i < 6; ++i)
        if (v.codes.data<int8_t>()[j * 6 + i] == 0)
          b += (xp[t * 6 + i] > 0 ? 1 : -1) * w[j * 6 + i];
      dot += b * c[static_cast<size_t>(j)];
      nb += b * b;
      nc += c[static_cast<size_t>(j)] * c[static_cast<size_t>(j)];
    }
    tok += dot / std::sqrt(nb * nc) / 5;
  }
  double dot = 0, nd = 0, nc = 0;
  for (size_t j = 0; j < 3; ++j) {
    dot += dep[j] * c[j];
    nd += dep[j] * dep[j];
    nc += c[j] * c[j];
  }
  const Json r = DeadZoneMonitor::bias_cosine(l, x);
  CHECK(num(r["cosine"]) == doctest::Approx(dot / std::sqrt(nd * nc)).epsilon(1e-5));
  CHECK(num(r["cosine_token_mean"]) == doctest::Approx(tok).epsilon(1e-5));
  CHECK(num(r["bias_norm"]) == doctest::Approx(std::sqrt(nc)).epsilon(1e-5));
  // x all positive: b^dep = c, cosine 1; all negative: −1
  CHECK(num(DeadZoneMonitor::bias_cosine(l, Tensor::full({4, 6}, 0.5))["cosine"]) ==
        doctest::Approx(1.0));
  CHECK(num(DeadZoneMonitor::bias_cosine(l, Tensor::full({4, 6}, -0.5))["cosine"]) ==
        doctest::Approx(-1.0));
  CHECK(error_of([&] {
          DeadZoneMonitor::bias_cosine(l, Tensor::zeros({4, 5}));
        }).find("in_features") != std::string::npos);
}

TEST_CASE("DeadZoneMonitor options are validated") {
  DeadZoneOptions o;
  o.reentry_window = 63;
  CHECK(error_of([&] { DeadZoneMonitor m(o); }).find("reentry_window") != std::string::npos);
  o = {};
  o.hist_bins = 0;
  CHECK(error_of([&] { DeadZoneMonitor m(o); }).find("hist_bins") != std::string::npos);
}

TEST_CASE("DeadZoneMonitor cost: measure() on a 1B-shaped layer vs one QAT step of it") {
  // LLaMA-3.2-1B up_proj: [8192, 2048]; one tequila forward+backward with T = 512 tokens.
  struct One : nn::Module {
    std::shared_ptr<QuantLinear> up;
    One() {
      up = register_module("up_proj", std::make_shared<QuantLinear>(2048, 8192, QuantConfig{}));
    }
  } h;
  Rng rng = make_rng(34);
  fill_weight(*h.up, Tensor::uniform({8192, 2048}, rng, -0.04, 0.04));
  DeadZoneMonitor mon;
  mon.measure(h, 0);  // allocates the per-weight state
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const Json m = mon.measure(h, 1);
  const double t_measure = std::chrono::duration<double>(clock::now() - t0).count();
  Var x = Var::parameter(Tensor::uniform({512, 2048}, rng, -1.0, 1.0));
  autograd::Tape tape;
  t0 = clock::now();
  {
    autograd::RecordScope rec(tape);
    Var y = h.up->forward(x);
    tape.backward(y, Tensor::ones({512, 8192}));
  }
  const double t_step = std::chrono::duration<double>(clock::now() - t0).count();
  MESSAGE("measure() of one [8192, 2048] layer: "
          << t_measure * 1e3 << " ms; one tequila fwd+bwd at T = 512: " << t_step * 1e3
          << " ms; ratio " << t_measure / t_step);
  CHECK(m["up_proj"]["escapes"] == 0);
  CHECK(m["up_proj"]["dead_fraction"].get<double>() ==
        doctest::Approx(0.25).epsilon(0.02));  // uniform: Δ = E|w|/2
}

TEST_CASE("DeadZoneMonitor on a tiny LLaMA while it trains: all seven layer types, flips appear") {
  nn::LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.tie_word_embeddings = true;
  nn::LlamaForCausalLM m(c);
  Rng rng = make_rng(35);
  m.init_weights(rng, 0.05);
  QuantConfig cfg;
  cfg.group_size = 32;
  REQUIRE(quantize_model(m, cfg) == 14);
  Tensor ids = Tensor::empty({2, 12}, DType::i32), targets = Tensor::empty({2, 12}, DType::i32);
  for (int64_t i = 0; i < 24; ++i) {
    ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(40));
    targets.data<int32_t>()[i] = static_cast<int32_t>(rng.below(40));
  }
  DeadZoneMonitor mon;
  Json last;
  int64_t flips = 0;
  for (int step = 0; step < 4; ++step) {
    last = mon.measure(m, step);
    if (step > 0) flips += last["escapes"].get<int64_t>() + last["reentries"].get<int64_t>();
    m.zero_grad();
    autograd::Tape tape;
    {
      autograd::RecordScope rec(tape);
      tape.backward(m.loss(ids, targets));
    }
    for (auto& [name, p] : m.named_parameters()) {  // plain SGD, large enough to move codes
      if (!p.has_grad()) continue;
      Tensor v = p.value().clone();
      const float* g = p.grad().data<float>();
      for (int64_t k = 0; k < v.numel(); ++k) v.data<float>()[k] -= 0.5f * g[k];
      p.set_value(v);
    }
  }
  for (const char* t :
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
    INFO(t);
    REQUIRE(last.contains(t));
    CHECK(last[t]["n_layers"] == 2);
    CHECK(last[t]["dead_fraction"].get<double>() > 0.2);
    CHECK(last[t]["dead_fraction"].get<double>() < 0.45);
    CHECK_FALSE(last[t]["escape_rate"].is_null());
  }
  CHECK(last["n_layers"] == 14);
  CHECK(flips > 0);
  MESSAGE("tiny LLaMA after 3 SGD steps: " << last["escapes"] << " escapes, " << last["reentries"]
                                           << " re-entries, reentry_ratio_total "
                                           << last["reentry_ratio_total"]);
}
