// QuantLinear against PyTorch: tests/reference/data/quant_<method>_<granularity>.safetensors, written
// by tests/reference/gen_reference.py (see tests/reference/README.md, "Ternary QuantLinear"), hold
// x f32 [6, 256], the latent weight w f32 [8, 256] and grad_y f32 [6, 8], with y, grad_x and grad_w
// computed in float64 by an independent plain-PyTorch implementation of spec §2–§5, plus the codes
// (i8 [8, 256]), alpha (f64 [8, groups per row]) and, for tequila*, the bias c (f64 [8]).
//
// For every file: a QuantLinear(256, 8) with the method / granularity / minima_grad of the file's
// metadata gets w as its latent weight; y, grad_x, grad_w, the exported codes, alpha and bias must
// match. w lies on a 1/4096 grid, so every sum, mean, median and threshold of the quantizer is exact
// in f32: the codes must match exactly, including the planted ties |w| == Delta (inclusive
// thresholds). The script's sensitivity checks show that each plausible mistake (exclusive
// thresholds, lower median, no lambda*s_j, no mixed gradient, wrong minima gradient, sign(0) = +1,
// bias dropped, wrong granularity) moves y or grad_w by at least 36 tolerance units.
//
// Tolerances (f32 forward/backward against the f64 reference):
//   y:               rtol 1e-4, atol 1e-6
//   grad_x, grad_w:  rtol 1e-4, atol 1e-5
//   codes:           exact;   alpha: rtol 1e-6 (TWN divides by a non-power-of-two count);
//   bias:            rtol 1e-5, atol 1e-10
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#if __has_include("quant/quant.h")
#include "autograd/tape.h"
#include "autograd/var.h"
#include "core/safetensors.h"
#include "quant/quant.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

constexpr double kYRtol = 1e-4, kYAtol = 1e-6;
constexpr double kGradRtol = 1e-4, kGradAtol = 1e-5;
constexpr double kAlphaRtol = 1e-6;
constexpr double kBiasRtol = 1e-5, kBiasAtol = 1e-10;

const std::vector<std::string> kStems = {"absmean", "absmedian",     "twn",         "tequila",
                                         "tequila_nomix", "minima_paper", "minima_code"};
const std::vector<std::string> kGranularities = {"tensor", "channel", "group"};

// alpha [rows, cols] (rows 1 or `out`, cols = groups per row) spread to one value per weight [out, in].
Tensor alpha_per_weight(const Tensor& alpha, int64_t out, int64_t in) {
  const Tensor a = alpha.to(DType::f64).contiguous();
  REQUIRE(a.dim() == 2);
  const int64_t rows = a.size(0), cols = a.size(1);
  REQUIRE((rows == 1 || rows == out));
  REQUIRE(cols >= 1);
  REQUIRE(in % cols == 0);
  Tensor full = Tensor::zeros({out, in}, DType::f64);
  const double* src = a.data<double>();
  double* dst = full.data<double>();
  for (int64_t j = 0; j < out; ++j)
    for (int64_t i = 0; i < in; ++i) dst[j * in + i] = src[(rows == 1 ? 0 : j) * cols + i / (in / cols)];
  return full;
}

double check_close(const char* what, const Tensor& a, const Tensor& b, double rtol, double atol) {
  const DiffReport d = compare(a, b, rtol, atol);
  INFO(what << ": " << d.str());
  CHECK(d.ok());
  return d.max_abs;
}

}  // namespace

TEST_CASE("quant golden: QuantLinear forward, backward and export match PyTorch for every method") {
  int files = 0;
  for (const std::string& stem : kStems) {
    double worst_y = 0, worst_gx = 0, worst_gw = 0, worst_alpha = 0;
    for (const std::string& gran : kGranularities) {
      const std::string rel = "tests/reference/data/quant_" + stem + "_" + gran + ".safetensors";
      INFO(rel);
      const SafetensorsFile f = SafetensorsFile::open(test::source_path(rel));
      const auto& md = f.metadata();
      REQUIRE(md.at("op") == "quant_linear");
      REQUIRE(md.at("granularity") == gran);

      quant::QuantConfig cfg;
      cfg.method = md.at("method");
      cfg.granularity = quant::parse_granularity(gran);
      cfg.group_size = std::stoll(md.at("group_size"));
      cfg.lambda = std::stod(md.at("lambda"));
      cfg.minima_eps = std::stod(md.at("eps"));
      cfg.minima_grad = md.at("minima_grad");
      cfg.validate();

      const Tensor w = f.get("w"), x = f.get("x"), grad_y = f.get("grad_y");
      const int64_t out = w.size(0), in = w.size(1);
      quant::QuantLinear layer(in, out, cfg);
      Tensor latent = layer.weight().value();  // shares the parameter's storage
      latent.copy_from(w);

      Tape tape;
      Var xv = Var::parameter(x.clone(), "x");
      Var y;
      {
        RecordScope rec(tape);
        y = layer.forward(xv);
      }
      worst_y = std::max(worst_y, check_close("y", y.value(), f.get("y"), kYRtol, kYAtol));
      tape.backward(y, grad_y.clone());
      REQUIRE(xv.has_grad());
      REQUIRE(layer.weight().has_grad());
      worst_gx = std::max(worst_gx, check_close("grad_x", xv.grad(), f.get("grad_x"), kGradRtol, kGradAtol));
      worst_gw = std::max(worst_gw, check_close("grad_w", layer.weight().grad(), f.get("grad_w"), kGradRtol,
                                                kGradAtol));

      const quant::TernaryView v = layer.export_ternary();
      CHECK(v.granularity == cfg.granularity);
      check_close("codes", v.codes.to(DType::f64), f.get("codes").to(DType::f64), 0, 0);
      // dead == (codes == 0)
      const Tensor codes = v.codes.to(DType::f64).contiguous(), dead = v.dead.to(DType::f64).contiguous();
      REQUIRE(dead.numel() == codes.numel());
      int64_t dead_mismatch = 0, n_dead = 0;
      for (int64_t k = 0; k < codes.numel(); ++k) {
        const bool d = codes.data<double>()[k] == 0.0;
        n_dead += d ? 1 : 0;
        dead_mismatch += (d != (dead.data<double>()[k] != 0.0)) ? 1 : 0;
      }
      CHECK(dead_mismatch == 0);
      CHECK(n_dead == std::stoll(md.at("n_dead")));
      worst_alpha = std::max(worst_alpha, check_close("alpha (per weight)", alpha_per_weight(v.alpha, out, in),
                                                      alpha_per_weight(f.get("alpha"), out, in), kAlphaRtol, 0));
      if (f.contains("bias")) {
        check_close("bias", v.bias, f.get("bias"), kBiasRtol, kBiasAtol);
      } else if (v.bias.defined()) {
        check_close("bias (none for this method)", v.bias, Tensor::zeros({out}, DType::f64), 0, 0);
      }
      ++files;
    }
    MESSAGE("quant_" << stem << "_* vs torch f64: y max|diff| " << worst_y << ", grad_x " << worst_gx
                     << ", grad_w " << worst_gw << ", alpha " << worst_alpha);
  }
  CHECK(files == 21);
}

// LSQ / SEQ: tests/reference/data/quant_{lsq,seq}_channel.safetensors (gen_reference.py,
// "learnable-scale ternary baselines") hold x, w, grad_y as above plus the learnable scale α (F32 [8]),
// and y, grad_x, grad_w, grad_scale (F64 [8]), the exported codes and ternary scale alpha (F64 [8, 1];
// SEQ: α·2/3) and scale_init = max|w| per row (F64 [8]). The torch reference builds the forward from
// straight-through constructs (round_pass, grad_scale, clamp) and takes every gradient from autograd.
// v = w/α avoids the kinks by ≥ 0.01 except LSQ's planted exact ties v = ±0.5 (half to even → 0),
// v = 1.5 and v = ±1 (window inclusive). grad_scale: rtol 1e-4, atol 1e-5.
TEST_CASE("quant golden: lsq and seq (learnable per-channel scale) match PyTorch autograd") {
  for (const std::string method : {"lsq", "seq"}) {
    const std::string rel = "tests/reference/data/quant_" + method + "_channel.safetensors";
    INFO(rel);
    const SafetensorsFile f = SafetensorsFile::open(test::source_path(rel));
    const auto& md = f.metadata();
    REQUIRE(md.at("op") == "quant_linear_learnable");
    REQUIRE(md.at("method") == method);
    quant::QuantConfig cfg;
    cfg.method = method;
    cfg.granularity = quant::parse_granularity(md.at("granularity"));
    cfg.scale_grad = md.at("scale_grad");
    cfg.validate();

    const Tensor w = f.get("w"), x = f.get("x"), grad_y = f.get("grad_y");
    const int64_t out = w.size(0), in = w.size(1);
    quant::QuantLinear layer(in, out, cfg);
    Tensor latent = layer.weight().value();
    latent.copy_from(w);
    layer.init_weight_scale();
    check_close("scale_init (max|w| per row)", layer.weight_scale().value(), f.get("scale_init"), 0, 0);
    Tensor scale = layer.weight_scale().value();
    scale.copy_from(f.get("scale"));

    Tape tape;
    Var xv = Var::parameter(x.clone(), "x");
    Var y;
    {
      RecordScope rec(tape);
      y = layer.forward(xv);
    }
    const double ey = check_close("y", y.value(), f.get("y"), kYRtol, kYAtol);
    tape.backward(y, grad_y.clone());
    REQUIRE(layer.weight().has_grad());
    REQUIRE(layer.weight_scale().has_grad());
    const double egx = check_close("grad_x", xv.grad(), f.get("grad_x"), kGradRtol, kGradAtol);
    const double egw = check_close("grad_w", layer.weight().grad(), f.get("grad_w"), kGradRtol, kGradAtol);
    const double egs = check_close("grad_scale", layer.weight_scale().grad(), f.get("grad_scale"), kGradRtol, kGradAtol);

    const quant::TernaryView v = layer.export_ternary();
    CHECK(v.granularity == quant::Granularity::channel);
    check_close("codes", v.codes.to(DType::f64), f.get("codes").to(DType::f64), 0, 0);
    check_close("alpha (ternary scale)", v.alpha, f.get("alpha"), kAlphaRtol, 0);
    int64_t n_dead = 0;
    for (int64_t k = 0; k < v.dead.numel(); ++k) n_dead += v.dead.data<uint8_t>()[k];
    CHECK(n_dead == std::stoll(md.at("n_dead")));
    MESSAGE("quant_" << method << "_channel vs torch f64: y " << ey << ", grad_x " << egx << ", grad_w " << egw
                     << ", grad_scale " << egs);
  }
}

#else
TEST_CASE("quant golden: skipped (quant/quant.h not present)") { MESSAGE("quant/quant.h missing"); }
#endif
