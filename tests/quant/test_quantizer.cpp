// Tests quant/quant.cpp quantizers (spec §2.1, §5.2, §12.1): exact codes on hand-made rows (ties at
// ±Δ, all-zero groups), the three granularities and quantizers, the Gaussian dead fraction,
// dequantize, config parsing and error cases.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "quant/quant.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::quant;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

// Two rows of 16 (the second is the negation of the first), in groups of 4:
//   A = [2, -1, .5, -.5]   B = [.25, 0, 0, -.25]   C = [0, 0, 0, 0]   D = [.5, -.125, .375, -.25]
Tensor hand_weight(DType dt = DType::f32) {
  std::vector<double> r = {2, -1, 0.5, -0.5, 0.25, 0, 0, -0.25, 0, 0, 0, 0, 0.5, -0.125, 0.375, -0.25};
  std::vector<double> v = r;
  for (double x : r) v.push_back(-x);
  return Tensor::from_vector(v, {2, 16}).to(dt);
}

std::vector<int> codes_of(const TernaryView& v) {
  std::vector<int> c;
  for (int64_t i = 0; i < v.codes.numel(); ++i) c.push_back(v.codes.data<int8_t>()[i]);
  return c;
}
std::vector<int> neg_concat(const std::vector<int>& r) {
  std::vector<int> c = r;
  for (int x : r) c.push_back(-x);
  return c;
}
std::vector<double> vals(const Tensor& t) {
  const Tensor d = t.to(DType::f64);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.numel());
}

}  // namespace

TEST_CASE("absmean group: exact codes, inclusive ties at ±Δ, zero group dead, bias") {
  for (DType dt : {DType::f32, DType::f64}) {
    const TernaryView v = quantize_ternary(hand_weight(dt), Quantizer::absmean, Granularity::group, 4, 0.5);
    const std::vector<int> row = {1, -1, 1, -1, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0, 1, -1};
    CHECK(codes_of(v) == neg_concat(row));
    CHECK(v.alpha.shape() == Shape{2, 4});
    CHECK(vals(v.alpha) == std::vector<double>{1, 0.125, 0, 0.3125, 1, 0.125, 0, 0.3125});
    CHECK(vals(v.bias) == std::vector<double>{-0.0625, 0.0625});
    for (int64_t i = 0; i < 32; ++i)
      CHECK(v.dead.data<uint8_t>()[i] == (v.codes.data<int8_t>()[i] == 0 ? 1 : 0));
    CHECK(v.group_size == 4);
    CHECK(v.granularity == Granularity::group);
    // dequantize = t∘α
    const std::vector<double> d = vals(dequantize(v));
    CHECK(d[0] == 1);
    CHECK(d[4] == 0.125);
    CHECK(d[7] == -0.125);
    CHECK(d[15] == -0.3125);
    CHECK(d[16] == -1);
  }
}

TEST_CASE("absmean channel and tensor granularity") {
  // mean|w| over a row = 5.75/16 = 0.359375, Δ = 0.1796875.
  const std::vector<int> row = {1, -1, 1, -1, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0, 1, -1};
  const TernaryView c = quantize_ternary(hand_weight(), Quantizer::absmean, Granularity::channel, 0, 1.0);
  CHECK(codes_of(c) == neg_concat(row));
  CHECK(c.alpha.shape() == Shape{2, 1});
  CHECK(vals(c.alpha) == std::vector<double>{0.359375, 0.359375});
  CHECK(vals(c.bias) == std::vector<double>{-0.125, 0.125});
  const TernaryView t = quantize_ternary(hand_weight(), Quantizer::absmean, Granularity::tensor, 0, 1.0);
  CHECK(codes_of(t) == neg_concat(row));
  CHECK(t.alpha.shape() == Shape{1, 1});
  CHECK(vals(t.alpha) == std::vector<double>{0.359375});
  CHECK(vals(dequantize(t))[2] == 0.359375);
}

TEST_CASE("absmedian: median (mean of the two middle values), ties inclusive, zero median dead") {
  const TernaryView v = quantize_ternary(hand_weight(), Quantizer::absmedian, Granularity::group, 4, 1.0);
  // A: median .75 → Δ .375; B: median .125 → Δ .0625; C dead; D: median .3125 → Δ .15625.
  const std::vector<int> row = {1, -1, 1, -1, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0, 1, -1};
  CHECK(codes_of(v) == neg_concat(row));
  CHECK(vals(v.alpha) == std::vector<double>{0.75, 0.125, 0, 0.3125, 0.75, 0.125, 0, 0.3125});
  CHECK(vals(v.bias) == std::vector<double>{-0.125, 0.125});
  // Odd length: channel over a row of 5, median of |w| = 3, Δ = 1.5 and 1.5 ≥ Δ (tie).
  const Tensor w = Tensor::from_vector(std::vector<float>{1, -5, 3, -4, 1.5f}, {1, 5});
  const TernaryView c = quantize_ternary(w, Quantizer::absmedian, Granularity::channel, 0, 0);
  CHECK(codes_of(c) == std::vector<int>{0, -1, 1, -1, 1});
  CHECK(vals(c.alpha) == std::vector<double>{3});
  // Median 0 with a non-zero entry: α = 0, so the whole group is dead (and feeds the bias).
  const Tensor z = Tensor::from_vector(std::vector<float>{0, 0, 0, 1}, {1, 4});
  const TernaryView zc = quantize_ternary(z, Quantizer::absmedian, Granularity::channel, 0, 0.5);
  CHECK(codes_of(zc) == std::vector<int>{0, 0, 0, 0});
  CHECK(vals(zc.bias) == std::vector<double>{0.5});
}

TEST_CASE("twn: Δ = 0.75·mean|w|, α = mean of kept |w|") {
  const TernaryView v = quantize_ternary(hand_weight(), Quantizer::twn, Granularity::group, 4, 1.0);
  // A: Δ .75 → keep 2, -1 (α 1.5); B: Δ .09375 → keep ±.25 (α .25); C dead; D: Δ .234375 → α .375.
  const std::vector<int> row = {1, -1, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 1, 0, 1, -1};
  CHECK(codes_of(v) == neg_concat(row));
  CHECK(vals(v.alpha) == std::vector<double>{1.5, 0.25, 0, 0.375, 1.5, 0.25, 0, 0.375});
  CHECK(vals(v.bias) == std::vector<double>{-0.125, 0.125});  // .5 - .5 - .125
  const TernaryView c = quantize_ternary(hand_weight(), Quantizer::twn, Granularity::channel, 0, 1.0);
  CHECK(c.alpha.shape() == Shape{2, 1});
  const TernaryView t = quantize_ternary(hand_weight(), Quantizer::twn, Granularity::tensor, 0, 1.0);
  CHECK(t.alpha.shape() == Shape{1, 1});
  CHECK(codes_of(c) == codes_of(t));
}

TEST_CASE("Gaussian weights: dead fraction 0.31 ± 0.01 at every granularity") {
  Rng rng = make_rng(11);
  const Tensor w = Tensor::randn({256, 1024}, rng, 0.02);
  for (Granularity g : {Granularity::group, Granularity::channel, Granularity::tensor}) {
    const TernaryView v = quantize_ternary(w, Quantizer::absmean, g, 128, 1e-3);
    int64_t dead = 0;
    for (int64_t i = 0; i < w.numel(); ++i) dead += v.dead.data<uint8_t>()[i];
    const double frac = static_cast<double>(dead) / static_cast<double>(w.numel());
    INFO(granularity_name(g) << " dead fraction " << frac);
    CHECK(std::abs(frac - 0.31) < 0.01);
  }
}

TEST_CASE("config parsing and error cases") {
  CHECK(parse_granularity("tensor") == Granularity::tensor);
  CHECK(parse_granularity("channel") == Granularity::channel);
  CHECK(parse_granularity("group") == Granularity::group);
  CHECK(error_of([] { parse_granularity("row"); }).find("granularity") != std::string::npos);
  CHECK(parse_quantizer("twn") == Quantizer::twn);
  CHECK(method_quantizer("tequila") == Quantizer::absmean);
  CHECK(method_quantizer("absmedian") == Quantizer::absmedian);
  QuantConfig cfg;
  CHECK_NOTHROW(cfg.validate());
  for (const char* m : {"none", "absmean", "absmedian", "twn", "minima", "tequila", "tequila_nomix"}) {
    cfg.method = m;
    CHECK_NOTHROW(cfg.validate());
  }
  cfg.method = "bitnet";
  CHECK(error_of([&] { cfg.validate(); }).find("quant.method") != std::string::npos);
  cfg = QuantConfig{};
  cfg.minima_grad = "both";
  CHECK(error_of([&] { cfg.validate(); }).find("minima_grad") != std::string::npos);
  cfg = QuantConfig{};
  cfg.group_size = 0;
  CHECK(error_of([&] { cfg.validate(); }).find("group_size") != std::string::npos);
  cfg = QuantConfig{};
  cfg.lambda = -1;
  CHECK(error_of([&] { cfg.validate(); }).find("lambda") != std::string::npos);
  const std::string e = error_of([] {
    quantize_ternary(Tensor::zeros({2, 100}), Quantizer::absmean, Granularity::group, 128, 0);
  });
  CHECK(e.find("in_features 100") != std::string::npos);
  CHECK(e.find("group_size 128") != std::string::npos);
  CHECK(!error_of([] { quantize_ternary(Tensor::zeros({4}), Quantizer::absmean, Granularity::channel, 0, 0); })
             .empty());
  CHECK(!error_of([] {
           quantize_ternary(Tensor::zeros({2, 4}, DType::i32), Quantizer::absmean, Granularity::channel, 0, 0);
         }).empty());
}
