// Tests QuantLinear / quant_linear (spec §2.2–§5.1, §12.2–§12.4) against closed forms computed here
// with plain loops from quantize_ternary's codes and α, for every method, quantizer and granularity;
// quantize_model on a tiny LLaMA; a few training steps with every method.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "nn/llama.h"
#include "quant/quant.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::quant;
using autograd::Var;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

struct Run {
  Tensor y, dx, dw;
};

Run run_layer(const Tensor& x, const Tensor& w, const Tensor& g, const QuantConfig& cfg) {
  Var xv = Var::parameter(x.clone()), wv = Var::parameter(w.clone());
  autograd::Tape tape;
  Run r;
  {
    autograd::RecordScope rec(tape);
    Var y = quant_linear(xv, wv, cfg);
    r.y = y.value();
    tape.backward(y, g);
  }
  r.dx = xv.grad();
  r.dw = wv.grad();
  return r;
}

double at(const Tensor& t, int64_t i) { return t.to(DType::f64).data<double>()[i]; }

// Closed forms (§5.1) with plain loops in double.
Run reference(const Tensor& x, const Tensor& w, const Tensor& g, const QuantConfig& cfg, int64_t rows,
              int64_t in, int64_t out) {
  const bool bias = cfg.method == "tequila" || cfg.method == "tequila_nomix";
  const TernaryView v =
      quantize_ternary(w, method_quantizer(cfg.method), cfg.granularity, cfg.group_size, bias ? cfg.lambda : 0);
  const Tensor A = dequantize(v).to(DType::f64);
  const Tensor X = x.to(DType::f64), W = w.to(DType::f64), Gd = g.to(DType::f64);
  const double* a = A.data<double>();
  const double* xp = X.data<double>();
  const double* wp = W.data<double>();
  const double* gp = Gd.data<double>();
  const uint8_t* dead = v.dead.data<uint8_t>();
  auto sgn = [](double z) { return z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0); };
  std::vector<double> y(static_cast<size_t>(rows * out)), dx(static_cast<size_t>(rows * in)),
      dw(static_cast<size_t>(out * in));
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < out; ++j) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) {
        s += xp[t * in + i] * a[j * in + i];
        if (dead[j * in + i]) {
          if (bias) s += cfg.lambda * wp[j * in + i];  // 1·(λ W∘dead)ᵀ
          if (cfg.method == "minima")
            s += sgn(xp[t * in + i]) * (wp[j * in + i] >= 0 ? cfg.minima_eps : -cfg.minima_eps);
        }
      }
      y[static_cast<size_t>(t * out + j)] = s;
    }
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t i = 0; i < in; ++i) {
      double s = 0;
      for (int64_t j = 0; j < out; ++j) s += gp[t * out + j] * a[j * in + i];
      dx[static_cast<size_t>(t * in + i)] = s;
    }
  for (int64_t j = 0; j < out; ++j) {
    double colsum = 0;
    for (int64_t t = 0; t < rows; ++t) colsum += gp[t * out + j];
    for (int64_t i = 0; i < in; ++i) {
      double ste = 0, sg = 0;
      for (int64_t t = 0; t < rows; ++t) {
        ste += gp[t * out + j] * xp[t * in + i];
        sg += gp[t * out + j] * sgn(xp[t * in + i]);
      }
      double d = ste;
      if (dead[j * in + i]) {
        if (cfg.method == "tequila") d = ste + cfg.lambda * colsum;
        if (cfg.method == "tequila_nomix") d = cfg.lambda * colsum;
        if (cfg.method == "minima") d = cfg.minima_grad == "paper" ? cfg.minima_eps * sg : ste + sg;
      }
      dw[static_cast<size_t>(j * in + i)] = d;
    }
  }
  return {Tensor::from_vector(y, {rows, out}), Tensor::from_vector(dx, {rows, in}),
          Tensor::from_vector(dw, {out, in})};
}

}  // namespace

TEST_CASE("quant_linear matches the closed forms for every method, quantizer and granularity (f64)") {
  const int64_t B = 2, T = 3, in = 16, out = 6, rows = B * T;
  Rng rng = make_rng(21);
  const Tensor x = Tensor::randn({B, T, in}, rng, 1.0, DType::f64);
  Tensor w = Tensor::randn({out, in}, rng, 0.5, DType::f64);
  for (int64_t i = 0; i < 4; ++i) w.data<double>()[5 * in + i] = 0;  // an all-zero group in row 5
  const Tensor g = Tensor::randn({B, T, out}, rng, 1.0, DType::f64);
  struct Case {
    const char* method;
    const char* grad;
  };
  const Case cases[] = {{"absmean", "paper"}, {"absmedian", "paper"}, {"twn", "paper"},
                        {"tequila", "paper"}, {"tequila_nomix", "paper"}, {"minima", "paper"},
                        {"minima", "code"}};
  for (const Case& c : cases)
    for (Granularity gr : {Granularity::group, Granularity::channel, Granularity::tensor}) {
      QuantConfig cfg;
      cfg.method = c.method;
      cfg.minima_grad = c.grad;
      cfg.granularity = gr;
      cfg.group_size = 4;
      cfg.lambda = 0.05;  // large, so the bias terms are visible
      cfg.minima_eps = 0.01;
      INFO(c.method << "/" << c.grad << "/" << granularity_name(gr));
      const Run r = run_layer(x, w, g, cfg);
      const Run ref = reference(x.view({rows, in}), w, g.view({rows, out}), cfg, rows, in, out);
      CHECK(r.y.shape() == Shape{B, T, out});
      CHECK(r.dx.shape() == Shape{B, T, in});
      TQ_CHECK_CLOSE(r.y.view({rows, out}), ref.y, 1e-12, 1e-12);
      TQ_CHECK_CLOSE(r.dx.view({rows, in}), ref.dx, 1e-12, 1e-12);
      TQ_CHECK_CLOSE(r.dw, ref.dw, 1e-12, 1e-12);
    }
}

TEST_CASE("tequila: dW − dYᵀX = λ·colsum(dY) on dead entries, 0 on active; dX = dY·(t∘α) (f32)") {
  const int64_t rows = 64, in = 256, out = 32;
  Rng rng = make_rng(22);
  const Tensor x = Tensor::randn({rows, in}, rng);
  const Tensor w = Tensor::randn({out, in}, rng, 0.02);
  const Tensor g = Tensor::randn({rows, out}, rng);
  QuantConfig cfg;  // tequila, group 128, λ 1e-3
  const Run r = run_layer(x, w, g, cfg);
  QuantConfig ste = cfg;
  ste.method = "absmean";
  const Run s = run_layer(x, w, g, ste);
  const TernaryView v = quantize_ternary(w, Quantizer::absmean, Granularity::group, 128, 1e-3);
  int64_t dead_seen = 0;
  for (int64_t j = 0; j < out; ++j) {
    double colsum = 0;
    for (int64_t t = 0; t < rows; ++t) colsum += at(g, t * out + j);
    for (int64_t i = 0; i < in; ++i) {
      const double diff = at(r.dw, j * in + i) - at(s.dw, j * in + i);
      if (v.dead.data<uint8_t>()[j * in + i]) {
        ++dead_seen;
        CHECK(std::abs(diff - 1e-3 * colsum) < 1e-6);
      } else {
        CHECK(diff == 0);
      }
    }
  }
  CHECK(dead_seen > 0);
  TQ_CHECK_CLOSE(r.dx, s.dx, 0, 0);  // same dY·(t∘α)
  // forward: the STE output plus c_j on every row
  for (int64_t t = 0; t < rows; t += 7)
    for (int64_t j = 0; j < out; ++j)
      CHECK(std::abs(at(r.y, t * out + j) - at(s.y, t * out + j) - at(v.bias, j)) < 1e-6);
  // and the f32 path agrees with the f64 closed form
  const Run ref = reference(x, w, g, cfg, rows, in, out);
  TQ_CHECK_CLOSE(r.y, ref.y, 1e-4, 2e-5);
  TQ_CHECK_CLOSE(r.dx, ref.dx, 1e-4, 2e-5);
  TQ_CHECK_CLOSE(r.dw, ref.dw, 1e-4, 2e-5);
}

TEST_CASE("method none is the plain Linear; no gradient reaches a constant input") {
  Rng rng = make_rng(23);
  const Tensor x = Tensor::randn({5, 8}, rng), w = Tensor::randn({3, 8}, rng), g = Tensor::randn({5, 3}, rng);
  QuantConfig cfg;
  cfg.method = "none";
  const Run r = run_layer(x, w, g, cfg);
  Var xv = Var::parameter(x.clone()), wv = Var::parameter(w.clone());
  autograd::Tape tape;
  {
    autograd::RecordScope rec(tape);
    Var y = autograd::linear(xv, wv);
    TQ_CHECK_CLOSE(r.y, y.value(), 0, 0);
    tape.backward(y, g);
  }
  TQ_CHECK_CLOSE(r.dw, wv.grad(), 0, 0);
  // constant x: only the weight gets a gradient
  QuantConfig tq_cfg;
  tq_cfg.group_size = 4;
  Var xc = Var::constant(x.clone()), w2 = Var::parameter(w.clone());
  {
    autograd::RecordScope rec(tape);
    Var y = quant_linear(xc, w2, tq_cfg);
    tape.backward(y, g);
  }
  CHECK(!xc.has_grad());
  CHECK(w2.has_grad());
}

TEST_CASE("QuantLinear: construction, from_linear shares storage, export, errors") {
  QuantConfig cfg;
  cfg.group_size = 4;
  nn::Linear lin(8, 3);
  Rng rng = make_rng(24);
  lin.init_parameters(rng, 0.5);
  auto q = QuantLinear::from_linear(lin, cfg);
  CHECK(q->weight().value().data<float>() == lin.weight().value().data<float>());
  CHECK(q->named_parameters().size() == 1);
  CHECK(q->named_parameters()[0].first == "weight");
  CHECK(q->config().method == "tequila");
  const TernaryView v = q->export_ternary();
  const TernaryView ref = quantize_ternary(lin.weight().value(), Quantizer::absmean, Granularity::group, 4, 1e-3);
  TQ_CHECK_CLOSE(v.alpha, ref.alpha, 0, 0);
  TQ_CHECK_CLOSE(v.bias, ref.bias, 0, 0);
  CHECK(v.alpha.shape() == Shape{3, 2});
  cfg.method = "absmean";
  CHECK(at(QuantLinear(8, 3, cfg).export_ternary().bias, 0) == 0);
  const Tensor x = Tensor::randn({2, 8}, rng);
  CHECK(q->forward(Var::constant(x)).shape() == Shape{2, 3});
  CHECK(error_of([&] { q->forward(Var::constant(Tensor::zeros({2, 7}))); }).find("in_features") !=
        std::string::npos);
  QuantConfig bad;  // group 128 does not divide 100
  const std::string e = error_of([&] { QuantLinear(100, 4, bad); });
  CHECK(e.find("in_features 100") != std::string::npos);
  CHECK(e.find("group_size 128") != std::string::npos);
  bad.method = "ternary";
  CHECK(error_of([&] { QuantLinear(128, 4, bad); }).find("quant.method") != std::string::npos);
  nn::Linear with_bias(8, 3, true);
  CHECK(!error_of([&] { QuantLinear::from_linear(with_bias, QuantConfig{}); }).empty());
}

namespace {

nn::LlamaConfig tiny_llama(int64_t hidden, int64_t inter, int64_t layers) {
  nn::LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_word_embeddings = false;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

Tensor ids_tensor(Rng& rng, int64_t B, int64_t T) {
  Tensor ids = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(50));
  return ids;
}

}  // namespace

TEST_CASE("quantize_model swaps exactly the 7·L projections and keeps names") {
  nn::LlamaForCausalLM m(tiny_llama(32, 48, 2));
  Rng rng = make_rng(25);
  m.init_weights(rng);
  const auto before = m.named_parameters();
  const Tensor ids = ids_tensor(rng, 1, 6);
  const Tensor logits_before = m.forward(ids).value();
  QuantConfig cfg;
  cfg.group_size = 16;
  CHECK(quantize_model(m, cfg) == 14);
  const auto after = m.named_parameters();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].first == before[i].first);
    CHECK(after[i].second.value().data<float>() == before[i].second.value().data<float>());
    const bool proj = after[i].first.find("proj") != std::string::npos;
    CHECK((after[i].second.impl() == before[i].second.impl()) == !proj);  // non-projections untouched
  }
  int64_t n_quant = 0;
  for (auto& [name, mod] : m.named_modules()) {
    if (dynamic_cast<QuantLinear*>(mod) != nullptr) {
      ++n_quant;
      CHECK(name.find("proj") != std::string::npos);
    }
  }
  CHECK(n_quant == 14);
  CHECK(dynamic_cast<QuantLinear*>(&m.submodule("lm_head")) == nullptr);
  CHECK(dynamic_cast<nn::Linear*>(&m.submodule("lm_head")) != nullptr);
  CHECK(quantize_model(m, cfg) == 0);  // already quantized
  const Tensor logits_after = m.forward(ids).value();
  CHECK(logits_after.shape() == logits_before.shape());
  // group 64 does not divide 48: nothing is swapped and the error names the layer
  nn::LlamaForCausalLM m2(tiny_llama(32, 48, 1));
  QuantConfig bad;
  bad.group_size = 64;
  CHECK(error_of([&] { quantize_model(m2, bad); }).find("q_proj") != std::string::npos);
  int64_t n2 = 0;
  for (auto& [name, mod] : m2.named_modules()) n2 += dynamic_cast<QuantLinear*>(mod) != nullptr ? 1 : 0;
  CHECK(n2 == 0);
  // a custom layer list
  nn::LlamaForCausalLM m3(tiny_llama(32, 48, 2));
  QuantConfig only_mlp;
  only_mlp.group_size = 16;
  only_mlp.layers = {"gate_proj", "up_proj", "down_proj"};
  CHECK(quantize_model(m3, only_mlp) == 6);
}

TEST_CASE("a tiny LLaMA with all projections quantized trains with every method") {
  for (const char* method : {"none", "absmean", "absmedian", "twn", "minima", "tequila", "tequila_nomix"}) {
    INFO(method);
    nn::LlamaForCausalLM m(tiny_llama(64, 128, 2));
    Rng rng = make_rng(26);
    m.init_weights(rng, 0.05);
    QuantConfig cfg;
    cfg.method = method;
    cfg.group_size = 32;
    CHECK(quantize_model(m, cfg) == 14);
    const Tensor ids = ids_tensor(rng, 2, 16), targets = ids_tensor(rng, 2, 16);
    // Adam, by hand
    auto params = m.parameters();
    std::vector<std::vector<float>> mo(params.size()), ve(params.size());
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999;
    double first = 0, last = 0;
    for (int step = 1; step <= 20; ++step) {
      m.zero_grad();
      autograd::Tape tape;
      double lv = 0;
      {
        autograd::RecordScope rec(tape);
        Var loss = m.loss(ids, targets);
        lv = loss.value().item();
        tape.backward(loss);
      }
      if (step == 1) first = lv;
      last = lv;
      for (size_t p = 0; p < params.size(); ++p) {
        if (!params[p].has_grad()) continue;
        Tensor v = params[p].value().clone();
        const float* gr = params[p].grad().data<float>();
        float* vp = v.data<float>();
        auto& mm = mo[p];
        auto& vv = ve[p];
        mm.resize(static_cast<size_t>(v.numel()), 0.f);
        vv.resize(static_cast<size_t>(v.numel()), 0.f);
        for (size_t i = 0; i < mm.size(); ++i) {
          mm[i] = static_cast<float>(b1 * mm[i] + (1 - b1) * gr[i]);
          vv[i] = static_cast<float>(b2 * vv[i] + (1 - b2) * gr[i] * gr[i]);
          const double mh = mm[i] / (1 - std::pow(b1, step)), vh = vv[i] / (1 - std::pow(b2, step));
          vp[i] -= static_cast<float>(lr * mh / (std::sqrt(vh) + 1e-8));
        }
        params[p].set_value(v);
      }
    }
    INFO("loss " << first << " -> " << last);
    CHECK(std::isfinite(last));
    CHECK(last < 0.8 * first);
  }
}

TEST_CASE("QuantLinear reuses its t∘α workspace only when no pending backward holds it") {
  QuantConfig cfg;
  cfg.group_size = 8;
  QuantLinear layer(16, 4, cfg);
  Rng rng = make_rng(27);
  layer.init_parameters(rng, 0.5);
  const Tensor x1 = Tensor::randn({3, 16}, rng), x2 = Tensor::randn({3, 16}, rng);
  const Tensor g1 = Tensor::randn({3, 4}, rng), g2 = Tensor::randn({3, 4}, rng);
  const Run r1 = run_layer(x1, layer.weight().value(), g1, cfg);
  const Run r2 = run_layer(x2, layer.weight().value(), g2, cfg);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the workspace
    Var a = Var::parameter(x1.clone()), b = Var::parameter(x2.clone());
    autograd::Tape tape;
    {
      autograd::RecordScope rec(tape);
      Var y1 = layer.forward(a);
      Var y2 = layer.forward(b);  // y1's backward still holds the first buffer
      TQ_CHECK_CLOSE(y1.value(), r1.y, 0, 0);
      TQ_CHECK_CLOSE(y2.value(), r2.y, 0, 0);
      tape.backward(autograd::add(autograd::sum(autograd::mul(y1, Var::constant(g1))),
                                  autograd::sum(autograd::mul(y2, Var::constant(g2)))));
    }
    TQ_CHECK_CLOSE(a.grad(), r1.dx, 1e-6, 1e-6);
    TQ_CHECK_CLOSE(b.grad(), r2.dx, 1e-6, 1e-6);
    TQ_CHECK_CLOSE(layer.weight().grad(), autograd::add(Var::constant(r1.dw), Var::constant(r2.dw)).value(),
                   1e-5, 1e-6);
    layer.zero_grad();
  }
}
