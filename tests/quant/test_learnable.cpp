// LSQ and SEQ (learnable per-channel scale; spec §5.2, docs/quant.md "LSQ and SEQ"): closed forms
// on hand-made rows (codes, ties, clipping, every gradient), float64 finite differences in α and x,
// the gradient-scale option, the α floor, export, initialisation, quantize_model, the
// state_dict / HF-checkpoint round trip of `weight_scale`, and a tiny LLaMA that trains.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "nn/hf_checkpoint.h"
#include "nn/llama.h"
#include "quant/quant.h"
#include "tests/test_util.h"
#include "train/adamw.h"

using namespace tq;
using namespace tq::quant;
using autograd::Var;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

QuantConfig learn_cfg(const char* method) {
  QuantConfig c;
  c.method = method;
  c.granularity = Granularity::channel;
  return c;
}

struct Grads {
  Tensor y, dx, dw, ds;
};

Grads run(const Tensor& x, const Tensor& w, const Tensor& s, const Tensor& g,
          const QuantConfig& cfg) {
  Var xv = Var::parameter(x.clone()), wv = Var::parameter(w.clone()),
      sv = Var::parameter(s.clone());
  autograd::Tape tape;
  Grads r;
  {
    autograd::RecordScope rec(tape);
    Var y = quant_linear(xv, wv, sv, cfg);
    r.y = y.value();
    tape.backward(y, g);
  }
  r.dx = xv.grad();
  r.dw = wv.grad();
  r.ds = sv.grad();
  return r;
}

Tensor f64(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector<double>(v, s);
}

// Expected per-weight quantities of one hand-made row, written out by hand from the formulas.
struct Hand {
  double w;
  int code;     // the integer code
  double coef;  // ∂q/∂α / (the STE weight of M): lsq round(v) − v inside, ±1 outside
  bool window;  // the weight gets the STE gradient
};

// Checks Y, dX, dW, dα of a single-row layer against the hand table (x, g given).
void check_hand(const char* method, double alpha, const std::vector<Hand>& row, double level_unit) {
  const int64_t in = static_cast<int64_t>(row.size()), T = 3;
  std::vector<double> wv, xv, gv = {0.7, -1.3, 0.4};
  for (const auto& h : row) wv.push_back(h.w);
  Rng rng = make_rng(11);
  const Tensor x = Tensor::randn({T, in}, rng, 1.0, DType::f64);
  const Tensor w = f64(wv, {1, in}), s = f64({alpha}, {1}), g = f64(gv, {T, 1});
  const Grads r = run(x, w, s, g, learn_cfg(method));
  const double* xp = x.data<double>();
  double dalpha = 0;
  for (int64_t i = 0; i < in; ++i) {
    INFO(method << " weight " << row[static_cast<size_t>(i)].w);
    const Hand& h = row[static_cast<size_t>(i)];
    double m = 0;  // M_i = Σ_t g_t x_ti
    for (int64_t t = 0; t < T; ++t) m += gv[static_cast<size_t>(t)] * xp[t * in + i];
    CHECK(r.dw.data<double>()[i] == doctest::Approx(h.window ? m : 0.0).epsilon(1e-12));
    for (int64_t t = 0; t < T; ++t)
      CHECK(
          r.dx.data<double>()[t * in + i] ==
          doctest::Approx(gv[static_cast<size_t>(t)] * h.code * level_unit * alpha).epsilon(1e-12));
    dalpha += h.coef * m;
  }
  for (int64_t t = 0; t < T; ++t) {
    double y = 0;
    for (int64_t i = 0; i < in; ++i)
      y += xp[t * in + i] * row[static_cast<size_t>(i)].code * level_unit * alpha;
    CHECK(r.y.data<double>()[t] == doctest::Approx(y).epsilon(1e-12));
  }
  CHECK(r.ds.data<double>()[0] ==
        doctest::Approx(dalpha / std::sqrt(static_cast<double>(in))).epsilon(1e-12));
  // export: codes and the ternary scale
  const TernaryView v = quantize_learnable(w, s, method);
  for (int64_t i = 0; i < in; ++i) {
    CHECK(v.codes.data<int8_t>()[i] == row[static_cast<size_t>(i)].code);
    CHECK(v.dead.data<uint8_t>()[i] == (row[static_cast<size_t>(i)].code == 0 ? 1 : 0));
  }
  CHECK(v.alpha.data<double>()[0] == doctest::Approx(level_unit * alpha).epsilon(1e-15));
  CHECK(v.granularity == Granularity::channel);
}

nn::LlamaConfig tiny(int64_t hidden, int64_t inter, int64_t layers) {
  nn::LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

Tensor random_ids(Rng& rng, int64_t B, int64_t T, int64_t V) {
  Tensor ids = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i)
    ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  return ids;
}

}  // namespace

TEST_CASE("lsq: codes with half-to-even ties, clipping, and every gradient in closed form (f64)") {
  // α = 2: v = w/2. Ties v = ±0.5 round to 0 (half to even, as torch.round); v = 1.5 → 2 → clamp 1
  // but v > 1 is outside the window (coef +1, no weight gradient); v = ±1 is inside (coef 0).
  const std::vector<Hand> row = {
      {1.0, 0, 0.0 - 0.5, true},     // v = 0.5 → 0
      {-1.0, 0, 0.0 + 0.5, true},    // v = −0.5 → −0
      {1.02, 1, 1.0 - 0.51, true},   // v = 0.51 → 1
      {0.6, 0, -0.3, true},          // v = 0.3
      {2.0, 1, 0.0, true},           // v = 1 (inclusive window)
      {-2.0, -1, 0.0, true},         // v = −1
      {3.0, 1, 1.0, false},          // v = 1.5: clipped
      {-5.0, -1, -1.0, false},       // v = −2.5: clipped
      {-1.4, -1, -1.0 + 0.7, true},  // v = −0.7 → −1
      {0.0, 0, 0.0, true},
  };
  check_hand("lsq", 2.0, row, 1.0);
}

TEST_CASE("seq: levels ±2α/3, clip at ±0.99, ParetoQ's gradients in closed form (f64)") {
  // α = 1.5: v = w/1.5, code = round(clamp(v, ±0.99)·1.5), level = code/1.5·α.
  // Inside |v| ≤ 0.99: coef = code/1.5 − v; outside: coef ±1 (ParetoQ's Q_p), no weight gradient.
  const double a = 1.5;
  auto in_row = [&](double v, int code) { return Hand{v * a, code, code / 1.5 - v, true}; };
  const std::vector<Hand> row = {
      in_row(0.3, 0),    // 0.45 → 0
      in_row(-0.3, 0),   // −0.45 → 0
      in_row(0.4, 1),    // 0.6 → 1
      in_row(-0.5, -1),  // −0.75 → −1
      in_row(0.98, 1),   // 1.47 → 1
      in_row(0.0, 0),
      Hand{0.995 * a, 1, 1.0, false},   // clamp 0.99·1.5 = 1.485 → 1; coef Q_p = +1
      Hand{-2.0 * a, -1, -1.0, false},  // clipped below
  };
  check_hand("seq", a, row, 1.0 / 1.5);
}

TEST_CASE("lsq/seq: dα matches float64 finite differences of the forward plus the STE term") {
  // The forward is piecewise linear in α with slope Σ level·M (M = Gᵀ·X). Away from rounding and
  // clipping boundaries the central difference is exact, and the analytic dα/g must equal it minus
  // the straight-through term Σ_window v·M (plus, for SEQ, (1 − 2/3)·sign(v)·M outside the window,
  // where ParetoQ uses Q_p = 1 instead of the level 2/3).
  const int64_t T = 5, in = 24, out = 3;
  for (const char* method : {"lsq", "seq"}) {
    INFO(method);
    Rng rng = make_rng(12);
    const Tensor x = Tensor::randn({T, in}, rng, 1.0, DType::f64);
    const Tensor g = Tensor::randn({T, out}, rng, 1.0, DType::f64);
    Tensor w = Tensor::randn({out, in}, rng, 1.0, DType::f64);
    const bool lsq = std::string(method) == "lsq";
    const Tensor s = f64({1.1, 2.3, 0.8}, {out});
    // Move every v = w/α away from the kinks (lsq: ±0.5, ±1, ±1.5; seq: ±1/3, ±0.99).
    for (int64_t j = 0; j < out; ++j)
      for (int64_t i = 0; i < in; ++i) {
        double& wv = w.data<double>()[j * in + i];
        const double a = s.data<double>()[j];
        for (int rep = 0; rep < 4; ++rep) {
          const double v = std::abs(wv / a);
          const std::vector<double> kinks =
              lsq ? std::vector<double>{0.5, 1.0, 1.5} : std::vector<double>{1.0 / 3, 0.99};
          for (double k : kinks)
            if (std::abs(v - k) < 0.02) wv += (wv >= 0 ? 0.05 : -0.05) * a;
        }
      }
    const QuantConfig cfg = learn_cfg(method);
    const Grads r = run(x, w, s, g, cfg);
    auto objective = [&](const Tensor& sc) {
      const Var y = quant_linear(Var::constant(x), Var::constant(w), Var::constant(sc), cfg);
      double acc = 0;
      for (int64_t k = 0; k < T * out; ++k)
        acc += y.value().data<double>()[k] * g.data<double>()[k];
      return acc;
    };
    const double h = 1e-6;
    const double unit = lsq ? 1.0 : 2.0 / 3.0, hi = lsq ? 1.0 : 0.99;
    int checked_window = 0, checked_clip = 0;
    for (int64_t j = 0; j < out; ++j) {
      Tensor sp = s.clone(), sm = s.clone();
      sp.data<double>()[j] += h;
      sm.data<double>()[j] -= h;
      const double fd = (objective(sp) - objective(sm)) / (2 * h);
      double ste = 0;
      for (int64_t i = 0; i < in; ++i) {
        double m = 0;
        for (int64_t t = 0; t < T; ++t)
          m += g.data<double>()[t * out + j] * x.data<double>()[t * in + i];
        const double v = w.data<double>()[j * in + i] / s.data<double>()[j];
        if (std::abs(v) <= hi) {
          ste += v * m;
          ++checked_window;
        } else {
          ste -= (1.0 - unit) * (v > 0 ? 1.0 : -1.0) * m;
          ++checked_clip;
        }
      }
      const double analytic = r.ds.data<double>()[j] * std::sqrt(static_cast<double>(in));
      CHECK(analytic == doctest::Approx(fd - ste).epsilon(1e-7));
    }
    CHECK(checked_window > 20);
    CHECK(checked_clip > 0);
    // dX: Y is linear in X, so the full finite-difference Jacobian applies.
    autograd::GradCheckOptions o;
    o.wrt = {true, false, false};
    const auto gc = autograd::check_gradients(
        [&](const std::vector<Var>& v) { return quant_linear(v[0], v[1], v[2], cfg); }, {x, w, s},
        o);
    CHECK_MESSAGE(gc.ok, gc.report);
  }
}

TEST_CASE("lsq/seq: scale_grad tensor divides dα by √out more; α is floored at 1e-5") {
  Rng rng = make_rng(13);
  const int64_t T = 4, in = 16, out = 9;
  const Tensor x = Tensor::randn({T, in}, rng, 1.0, DType::f64),
               g = Tensor::randn({T, out}, rng, 1.0, DType::f64);
  const Tensor w = Tensor::randn({out, in}, rng, 1.0, DType::f64);
  const Tensor s = learnable_scale_init(w);
  for (const char* method : {"lsq", "seq"}) {
    QuantConfig row = learn_cfg(method), ten = learn_cfg(method);
    ten.scale_grad = "tensor";
    const Grads a = run(x, w, s, g, row), b = run(x, w, s, g, ten);
    for (int64_t j = 0; j < out; ++j)
      CHECK(b.ds.data<double>()[j] == doctest::Approx(a.ds.data<double>()[j] / 3.0).epsilon(1e-12));
    // α ≤ 0 acts as 1e-5: every non-zero weight here is far outside, so codes are sign(w)
    const Tensor zero = Tensor::zeros({out}, DType::f64);
    const TernaryView v = quantize_learnable(w, zero, method);
    for (int64_t k = 0; k < out * in; ++k) {
      const double wk = w.data<double>()[k];
      CHECK(v.codes.data<int8_t>()[k] == (wk > 0 ? 1 : (wk < 0 ? -1 : 0)));
    }
    CHECK(v.alpha.data<double>()[0] ==
          doctest::Approx(1e-5 * (std::string(method) == "lsq" ? 1.0 : 2.0 / 3.0)));
    const Grads z = run(x, w, zero, g, row);
    for (int64_t k = 0; k < out * in; ++k) CHECK(z.dw.data<double>()[k] == 0.0);  // all clipped
  }
}

TEST_CASE(
    "QuantLinear lsq/seq: weight_scale parameter, init from max|w|, export = forward, errors") {
  Rng rng = make_rng(14);
  nn::Linear lin(32, 6);
  lin.init_parameters(rng, 0.5);
  for (const char* method : {"lsq", "seq"}) {
    INFO(method);
    const auto q = QuantLinear::from_linear(lin, learn_cfg(method));
    const auto params = q->named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].first == "weight");
    CHECK(params[1].first == "weight_scale");
    CHECK(params[1].second.shape() == Shape{6});
    const float* wp = lin.weight().value().data<float>();
    for (int64_t j = 0; j < 6; ++j) {
      float m = 0;
      for (int64_t i = 0; i < 32; ++i) m = std::max(m, std::abs(wp[j * 32 + i]));
      CHECK(q->weight_scale().value().data<float>()[j] == m);
    }
    // Feeding the identity gives Y = Qᵀ: the forward's Q must equal dequantize(export) exactly.
    Tensor eye = Tensor::zeros({32, 32});
    for (int64_t i = 0; i < 32; ++i) eye.data<float>()[i * 32 + i] = 1.f;
    const Tensor y = q->forward(Var::constant(eye)).value();
    const Tensor deq = dequantize(q->export_ternary());
    int64_t mism = 0, nonzero = 0;
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t i = 0; i < 32; ++i) {
        mism += y.data<float>()[i * 6 + j] != deq.data<float>()[j * 32 + i] ? 1 : 0;
        nonzero += deq.data<float>()[j * 32 + i] != 0.f ? 1 : 0;
      }
    CHECK(mism == 0);
    CHECK(nonzero > 0);
  }
  // errors
  QuantConfig bad = learn_cfg("lsq");
  bad.granularity = Granularity::group;
  CHECK(error_of([&] { bad.validate(); }).find("quant.granularity: channel") != std::string::npos);
  QuantConfig bad2 = learn_cfg("seq");
  bad2.scale_grad = "rows";
  CHECK(error_of([&] { bad2.validate(); }).find("quant.scale_grad") != std::string::npos);
  const Var xv = Var::constant(Tensor::zeros({2, 32})), wv = Var::constant(Tensor::zeros({6, 32}));
  CHECK(error_of([&] { quant_linear(xv, wv, learn_cfg("lsq")); }).find("learnable scale") !=
        std::string::npos);
  CHECK(error_of([&] {
          quant_linear(xv, wv, Var::constant(Tensor::zeros({5})), learn_cfg("lsq"));
        }).find("scale must be [6]") != std::string::npos);
  // quantize_model rejects group granularity before swapping anything
  nn::LlamaForCausalLM m(tiny(32, 64, 1));
  CHECK(error_of([&] { quantize_model(m, bad); }).find("granularity") != std::string::npos);
  CHECK(dynamic_cast<const QuantLinear*>(&m.submodule("model.layers.0.self_attn.q_proj")) ==
        nullptr);
}

TEST_CASE("lsq/seq: weight_scale round-trips through state_dict and an HF checkpoint directory") {
  Rng rng = make_rng(15);
  nn::LlamaForCausalLM m(tiny(32, 64, 2));
  m.init_weights(rng, 0.1);
  const QuantConfig cfg = learn_cfg("seq");
  REQUIRE(quantize_model(m, cfg) == 14);
  int64_t n_scale = 0;
  for (auto& [name, p] : m.named_parameters()) {
    if (name.size() > 13 && name.compare(name.size() - 13, 13, ".weight_scale") == 0) {
      ++n_scale;
      Tensor v = p.value().clone();
      for (int64_t j = 0; j < v.numel(); ++j)
        v.data<float>()[j] *= 1.0f + 0.01f * static_cast<float>(j % 7);
      p.set_value(v);  // as training would move it
    }
  }
  CHECK(n_scale == 14);
  test::TempDir dir("learnable_ckpt");
  nn::save_llama(m, dir.path.string());
  // A plain (unquantized) loader rejects the extra tensors and names one of them.
  CHECK(error_of([&] { nn::load_llama(dir.path.string()); }).find("weight_scale") !=
        std::string::npos);
  // The quantized model of the same config loads them strictly.
  nn::LlamaForCausalLM m2(m.config());
  REQUIRE(quantize_model(m2, cfg) == 14);
  const nn::HfWeights w = nn::read_hf_weights(dir.path.string());
  m2.load_state_dict(w.tensors, /*strict=*/true, "model.safetensors");
  const auto a = m.named_parameters(), b = m2.named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(compare(a[i].second.value(), b[i].second.value(), 0, 0).ok());
  }
}

TEST_CASE("a tiny LLaMA with lsq or seq projections trains (AdamW, loss drops)") {
  for (const char* method : {"lsq", "seq"}) {
    INFO(method);
    nn::LlamaForCausalLM m(tiny(64, 128, 2));
    Rng rng = make_rng(16);
    m.init_weights(rng, 0.05);
    REQUIRE(quantize_model(m, learn_cfg(method)) == 14);
    const Tensor ids = random_ids(rng, 2, 16, 40), targets = random_ids(rng, 2, 16, 40);
    train::AdamW opt(m.named_parameters());
    double first = 0, last = 0;
    const Tensor s0 =
        m.submodule("model.layers.0.mlp.up_proj").named_parameters()[1].second.value().clone();
    for (int step = 1; step <= 20; ++step) {
      m.zero_grad();
      autograd::Tape tape;
      {
        autograd::RecordScope rec(tape);
        Var loss = m.loss(ids, targets);
        last = loss.value().item();
        tape.backward(loss);
      }
      if (step == 1) first = last;
      opt.step(1e-2);
    }
    INFO("loss " << first << " -> " << last);
    CHECK(std::isfinite(last));
    CHECK(last < 0.8 * first);
    const Tensor s1 =
        m.submodule("model.layers.0.mlp.up_proj").named_parameters()[1].second.value();
    CHECK_FALSE(compare(s0, s1, 0, 0).ok());  // α learned
  }
}

TEST_CASE(
    "load_quantized_llama: a plain HF model gets α = max|w|; a QAT checkpoint restores its α") {
  const std::string plain = test::source_path("tests/reference/data/tiny_llama");
  const auto ref = nn::load_llama(plain);
  const QuantConfig cfg = learn_cfg("lsq");
  const auto m = load_quantized_llama(plain, cfg);
  const auto a = ref->named_parameters(), b = m->named_parameters();
  REQUIRE(b.size() == a.size() + 7 * static_cast<size_t>(ref->config().num_hidden_layers));
  size_t ia = 0;
  for (const auto& [name, p] : b) {
    INFO(name);
    if (name.size() > 13 && name.compare(name.size() - 13, 13, ".weight_scale") == 0) {
      const std::string wname = name.substr(0, name.size() - 6);  // "...weight"
      CHECK(compare(p.value(),
                    learnable_scale_init(m->submodule(wname.substr(0, wname.size() - 7))
                                             .named_parameters()[0]
                                             .second.value()),
                    0, 0)
                .ok());
      continue;
    }
    REQUIRE(ia < a.size());
    CHECK(name == a[ia].first);
    CHECK(compare(p.value(), a[ia].second.value(), 0, 0).ok());
    ++ia;
  }
  // After QAT (scales moved), save_llama + load_quantized_llama restores them exactly.
  for (auto& [name, p] : m->named_parameters())
    if (name.find("weight_scale") != std::string::npos) {
      Tensor v = p.value().clone();
      v.data<float>()[0] *= 1.5f;
      p.set_value(v);
    }
  test::TempDir dir("load_quantized");
  nn::save_llama(*m, dir.path.string());
  const auto m2 = load_quantized_llama(dir.path.string(), cfg);
  const auto c = m->named_parameters(), d = m2->named_parameters();
  REQUIRE(c.size() == d.size());
  for (size_t i = 0; i < c.size(); ++i)
    CHECK(compare(c[i].second.value(), d[i].second.value(), 0, 0).ok());
  // Other methods load the plain model too (no scales); errors name the file.
  QuantConfig tq_cfg;
  tq_cfg.granularity = Granularity::channel;
  CHECK(load_quantized_llama(plain, tq_cfg)->named_parameters().size() == a.size());
  CHECK(error_of([&] {
          load_quantized_llama(dir.path.string() + "/nope", cfg);
        }).find("config.json") != std::string::npos);
  // a QAT checkpoint loaded with a non-learnable method: the scales are unexpected
  CHECK(error_of([&] { load_quantized_llama(dir.path.string(), tq_cfg); }).find("weight_scale") !=
        std::string::npos);
}
