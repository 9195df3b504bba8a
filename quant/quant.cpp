// Ternary quantizers and QuantLinear (spec §2–§5). One fused pass per row computes α per group, the
// codes, the dequantized weight t∘α and the Tequila bias c_j = λ·Σ_dead w_ji; backward adds λ·s_j
// (s = column sum of dY) to dead entries of the single STE GEMM dYᵀ·X. No ones-matrix GEMMs.
#include "quant/quant.h"

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <set>
#include <utility>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "nn/hf_checkpoint.h"

namespace tq::quant {

using autograd::Var;

namespace {

enum class Method { none, ste, minima, tequila, tequila_nomix, lsq, seq };

Method parse_method(const std::string& m) {
  if (m == "none") return Method::none;
  if (m == "absmean" || m == "absmedian" || m == "twn") return Method::ste;
  if (m == "minima") return Method::minima;
  if (m == "tequila") return Method::tequila;
  if (m == "tequila_nomix") return Method::tequila_nomix;
  if (m == "lsq") return Method::lsq;
  if (m == "seq") return Method::seq;
  TQ_THROW("[QuantConfig] unknown quant.method '{}' — hint: none | absmean | absmedian | twn | "
           "minima | tequila | tequila_nomix | lsq | seq",
           m);
}

int64_t n_groups_of(Granularity g, int64_t in, int64_t group_size) {
  return g == Granularity::group ? in / group_size : 1;
}
int64_t group_len_of(Granularity g, int64_t in, int64_t group_size) {
  return g == Granularity::group ? group_size : in;
}

// α and Δ of the n values at w (spec §2.1, §5.2). `buf` is scratch for the median.
template <class T>
void group_stats(const T* w, int64_t n, Quantizer q, std::vector<T>& buf, T& alpha, T& delta) {
  switch (q) {
    case Quantizer::absmean: {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::abs(static_cast<double>(w[i]));
      alpha = static_cast<T>(s / static_cast<double>(n));
      delta = alpha / T(2);
      return;
    }
    case Quantizer::absmedian: {
      buf.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) buf[static_cast<size_t>(i)] = std::abs(w[i]);
      // The median; for an even count the mean of the two middle values (numpy's, not torch.median's).
      const auto hi = buf.begin() + n / 2;
      std::nth_element(buf.begin(), hi, buf.end());
      if (n % 2 == 1) {
        alpha = *hi;
      } else {
        const T lo = *std::max_element(buf.begin(), hi);
        alpha = static_cast<T>(0.5 * (static_cast<double>(lo) + static_cast<double>(*hi)));
      }
      delta = alpha / T(2);
      return;
    }
    case Quantizer::twn: {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::abs(static_cast<double>(w[i]));
      const T mean_abs = static_cast<T>(s / static_cast<double>(n));
      delta = T(0.75) * mean_abs;
      double sk = 0;
      int64_t cnt = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (w[i] >= delta || w[i] <= -delta) {
          sk += std::abs(static_cast<double>(w[i]));
          ++cnt;
        }
      }
      alpha = cnt > 0 ? static_cast<T>(sk / static_cast<double>(cnt)) : T(0);
      return;
    }
  }
}

// Outputs of the fused quantization pass; null pointers are skipped.
template <class T>
struct QuantOut {
  int8_t* codes = nullptr;   // [out, in]; with dead, for export (else deq alone)
  T* alpha = nullptr;        // [out, n_groups] ([1] for tensor granularity)
  T* deq = nullptr;          // [out, in] t∘α
  uint8_t* dead = nullptr;   // [out, in]
  T* bias = nullptr;         // [out] λ·Σ_dead w
  T* delta = nullptr;        // like alpha: Δ per group
};

// Codes (and t∘α, the dead mask) of one group with α = a, Δ = d; returns Σ of its dead weights.
// Branch-free so it vectorizes; α = 0 makes the whole group dead.
template <class T, bool kCodes, bool kDeq, bool kDead>
double code_group(const T* w, int64_t n, T a, T d, int8_t* codes, T* deq, uint8_t* dead) {
  double dead_sum = 0;
  if (a == T(0)) {
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (kCodes) codes[i] = 0;
      if constexpr (kDeq) deq[i] = T(0);
      if constexpr (kDead) dead[i] = 1;
      dead_sum += static_cast<double>(w[i]);
    }
    return dead_sum;
  }
  // Dead sums in T within blocks of 128, in double across blocks.
  for (int64_t b = 0; b < n; b += 128) {
    const int64_t e = std::min<int64_t>(n, b + 128);
    T part = T(0);
    for (int64_t i = b; i < e; ++i) {
      const T v = w[i];
      const int t = static_cast<int>(v >= d) - static_cast<int>(v <= -d);
      if constexpr (kCodes) codes[i] = static_cast<int8_t>(t);
      if constexpr (kDeq) deq[i] = static_cast<T>(t) * a;
      if constexpr (kDead) dead[i] = static_cast<uint8_t>(t == 0);
      part += t == 0 ? v : T(0);
    }
    dead_sum += static_cast<double>(part);
  }
  return dead_sum;
}

// Callers validate shapes (group divisibility) before: no throws in the parallel region.
template <class T>
void quantize_pass(const T* w, int64_t out, int64_t in, Quantizer q, Granularity gran,
                   int64_t group_size, double lambda, const QuantOut<T>& o) {
  const int64_t ng = n_groups_of(gran, in, group_size);
  const int64_t G = group_len_of(gran, in, group_size);
  T ta = T(0), td = T(0);
  if (gran == Granularity::tensor) {
    std::vector<T> buf;
    group_stats(w, out * in, q, buf, ta, td);
    if (o.alpha) o.alpha[0] = ta;
    if (o.delta) o.delta[0] = td;
  }
  parallel_for(out, 8, [&](int64_t b, int64_t e) {
    std::vector<T> buf;
    for (int64_t j = b; j < e; ++j) {
      const T* wr = w + j * in;
      double dead_sum = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const T* wg = wr + g * G;
        T a = ta, d = td;
        if (gran != Granularity::tensor) {
          group_stats(wg, G, q, buf, a, d);
          if (o.alpha) o.alpha[j * ng + g] = a;
          if (o.delta) o.delta[j * ng + g] = d;
        }
        const int64_t base = j * in + g * G;
        if (o.codes == nullptr)  // training: t∘α only (the dead mask is t∘α == 0)
          dead_sum += code_group<T, false, true, false>(wg, G, a, d, nullptr, o.deq + base, nullptr);
        else  // export
          dead_sum += code_group<T, true, false, true>(wg, G, a, d, o.codes + base, nullptr, o.dead + base);
      }
      if (o.bias) o.bias[j] = static_cast<T>(lambda * dead_sum);
    }
  });
}

void check_group(const char* who, Granularity g, int64_t in, int64_t group_size) {
  if (g != Granularity::group) return;
  TQ_CHECK(group_size > 0, "[{}] group_size must be positive, got {}", who, group_size);
  TQ_CHECK(in % group_size == 0,
           "[{}] in_features {} is not a multiple of group_size {} — hint: use granularity "
           "channel or a group_size dividing in_features",
           who, in, group_size);
}

}  // namespace

Granularity parse_granularity(const std::string& s) {
  if (s == "tensor") return Granularity::tensor;
  if (s == "channel") return Granularity::channel;
  if (s == "group") return Granularity::group;
  TQ_THROW("[QuantConfig] unknown quant.granularity '{}' — hint: tensor | channel | group", s);
}

const char* granularity_name(Granularity g) {
  switch (g) {
    case Granularity::tensor: return "tensor";
    case Granularity::channel: return "channel";
    case Granularity::group: return "group";
  }
  return "?";
}

Quantizer parse_quantizer(const std::string& s) {
  if (s == "absmean") return Quantizer::absmean;
  if (s == "absmedian") return Quantizer::absmedian;
  if (s == "twn") return Quantizer::twn;
  TQ_THROW("[quant] unknown quantizer '{}' — hint: absmean | absmedian | twn", s);
}

const char* quantizer_name(Quantizer q) {
  switch (q) {
    case Quantizer::absmean: return "absmean";
    case Quantizer::absmedian: return "absmedian";
    case Quantizer::twn: return "twn";
  }
  return "?";
}

Quantizer method_quantizer(const std::string& method) {
  if (method == "absmedian") return Quantizer::absmedian;
  if (method == "twn") return Quantizer::twn;
  return Quantizer::absmean;
}

void QuantConfig::validate() const {
  (void)parse_method(method);
  const int gi = static_cast<int>(granularity);
  TQ_CHECK(gi >= 0 && gi <= 2, "[QuantConfig] invalid quant.granularity value {}", gi);
  if (granularity == Granularity::group) {
    TQ_CHECK(group_size > 0, "[QuantConfig] quant.group_size must be positive, got {}", group_size);
  }
  TQ_CHECK(std::isfinite(lambda) && lambda >= 0, "[QuantConfig] quant.lambda must be finite and >= 0, got {}",
           lambda);
  TQ_CHECK(std::isfinite(minima_eps) && minima_eps > 0,
           "[QuantConfig] quant.minima_eps must be finite and > 0, got {}", minima_eps);
  TQ_CHECK(minima_grad == "paper" || minima_grad == "code",
           "[QuantConfig] unknown quant.minima_grad '{}' — hint: paper | code", minima_grad);
  for (const auto& l : layers) TQ_CHECK(!l.empty(), "[QuantConfig] quant.layers has an empty name");
  TQ_CHECK(scale_grad == "row" || scale_grad == "tensor",
           "[QuantConfig] unknown quant.scale_grad '{}' — hint: row | tensor", scale_grad);
  if (method_is_learnable(method)) {
    TQ_CHECK(granularity == Granularity::channel,
             "[QuantConfig] quant.method {} learns one scale per output channel but quant.granularity is "
             "{} — hint: set quant.granularity: channel",
             method, granularity_name(granularity));
  }
}

bool method_is_learnable(const std::string& method) { return method == "lsq" || method == "seq"; }

TernaryView quantize_ternary(const Tensor& w, Quantizer q, Granularity g, int64_t group_size,
                             double lambda) {
  TQ_CHECK(w.defined() && w.dim() == 2, "[quantize_ternary] weight must be [out, in], got {}",
           w.defined() ? shape_str(w.shape()) : std::string("undefined"));
  const int64_t out = w.size(0), in = w.size(1);
  TQ_CHECK(out > 0 && in > 0, "[quantize_ternary] empty weight {}", shape_str(w.shape()));
  check_group("quantize_ternary", g, in, group_size);
  TQ_CHECK(std::isfinite(lambda), "[quantize_ternary] lambda must be finite, got {}", lambda);
  const Tensor wc = w.contiguous();
  TernaryView v;
  v.granularity = g;
  v.group_size = group_len_of(g, in, group_size);
  v.codes = Tensor::empty({out, in}, DType::i8);
  v.dead = Tensor::empty({out, in}, DType::u8);
  v.alpha = g == Granularity::tensor ? Tensor::empty({1, 1}, w.dtype())
                                     : Tensor::empty({out, n_groups_of(g, in, group_size)}, w.dtype());
  v.bias = Tensor::empty({out}, w.dtype());
  v.delta = Tensor::empty(v.alpha.shape(), w.dtype());
  dispatch_float(w.dtype(), "quantize_ternary", [&](auto tag) {
    using T = decltype(tag);
    QuantOut<T> o;
    o.codes = v.codes.data<int8_t>();
    o.alpha = v.alpha.data<T>();
    o.dead = v.dead.data<uint8_t>();
    o.bias = v.bias.data<T>();
    o.delta = v.delta.data<T>();
    quantize_pass<T>(wc.data<T>(), out, in, q, g, group_size, lambda, o);
  });
  return v;
}

Tensor dequantize(const TernaryView& v) {
  TQ_CHECK(v.codes.defined() && v.codes.dim() == 2 && v.codes.dtype() == DType::i8,
           "[dequantize] codes must be i8 [out, in]");
  const int64_t out = v.codes.size(0), in = v.codes.size(1);
  const int64_t G = v.granularity == Granularity::group ? v.group_size : in;
  TQ_CHECK(G > 0 && in % G == 0, "[dequantize] in_features {} vs group_size {}", in, G);
  const int64_t ng = v.granularity == Granularity::group ? in / G : 1;
  const Shape want = v.granularity == Granularity::tensor ? Shape{1, 1} : Shape{out, ng};
  TQ_CHECK(v.alpha.defined() && v.alpha.shape() == want, "[dequantize] alpha must be {}, got {}",
           shape_str(want), v.alpha.defined() ? shape_str(v.alpha.shape()) : std::string("undefined"));
  Tensor y = Tensor::empty({out, in}, v.alpha.dtype());
  const Tensor cc = v.codes.contiguous(), ac = v.alpha.contiguous();
  dispatch_float(v.alpha.dtype(), "dequantize", [&](auto tag) {
    using T = decltype(tag);
    const int8_t* c = cc.data<int8_t>();
    const T* a = ac.data<T>();
    T* yp = y.data<T>();
    for (int64_t j = 0; j < out; ++j)
      for (int64_t i = 0; i < in; ++i) {
        const T al = v.granularity == Granularity::tensor ? a[0] : a[j * ng + i / G];
        yp[j * in + i] = static_cast<T>(c[j * in + i]) * al;
      }
  });
  return y;
}

Var quant_linear(const Var& x, const Var& weight, const QuantConfig& cfg) {
  return quant_linear(x, weight, cfg, nullptr);
}

Var quant_linear(const Var& x, const Var& weight, const QuantConfig& cfg, Tensor* workspace) {
  const Method method = parse_method(cfg.method);
  TQ_CHECK(weight.defined() && weight.dim() == 2, "[quant_linear] weight must be [out, in]");
  const int64_t out = weight.size(0), in = weight.size(1);
  TQ_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in,
           "[quant_linear] input {} does not end in in_features {}",
           x.defined() ? shape_str(x.shape()) : std::string("undefined"), in);
  TQ_CHECK(x.dtype() == weight.dtype(), "[quant_linear] dtype mismatch {} vs {}", dtype_name(x.dtype()),
           dtype_name(weight.dtype()));
  if (method == Method::none) return autograd::linear(x, weight);
  TQ_CHECK(method != Method::lsq && method != Method::seq,
           "[quant_linear] method {} needs its learnable scale — hint: call quant_linear(x, weight, scale, cfg) "
           "or use QuantLinear",
           cfg.method);
  check_group("quant_linear", cfg.granularity, in, cfg.group_size);
  const Quantizer q = method_quantizer(cfg.method);
  const int64_t rows = x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const Tensor xc = x.value().contiguous(), wc = weight.value().contiguous();
  const DType dt = x.dtype();
  const double lambda = cfg.lambda;
  const double eps = cfg.minima_eps;
  const bool minima_code = cfg.minima_grad == "code";
  const bool has_bias = method == Method::tequila || method == Method::tequila_nomix;

  // t∘α is saved for backward; it also carries the dead mask (t = 0 ⇔ t∘α = 0, as α > 0 whenever
  // some t ≠ 0), so no separate int8 codes are kept.
  Tensor deq;
  if (workspace != nullptr && workspace->defined() && workspace->shape() == Shape{out, in} &&
      workspace->dtype() == dt && workspace->storage().use_count() == 1) {
    deq = *workspace;  // no backward closure holds it any more
  } else {
    deq = Tensor::empty({out, in}, dt);
    if (workspace != nullptr) *workspace = deq;
  }
  Tensor bias = has_bias ? Tensor::empty({out}, dt) : Tensor();
  Tensor sx;  // sign(X), minima only
  Tensor y = Tensor::empty(out_shape, dt);
  dispatch_float(dt, "quant_linear", [&](auto tag) {
    using T = decltype(tag);
    QuantOut<T> o;
    o.deq = deq.data<T>();
    if (has_bias) o.bias = bias.data<T>();
    quantize_pass<T>(wc.data<T>(), out, in, q, cfg.granularity, cfg.group_size, lambda, o);
    T* yp = y.data<T>();
    gemm_contiguous<T>(false, true, rows, out, in, xc.data<T>(), deq.data<T>(), T(0), yp);  // Y = X·Aᵀ
    if (has_bias) {
      const T* c = bias.data<T>();
      parallel_for(rows, 16, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r)
          for (int64_t j = 0; j < out; ++j) yp[r * out + j] += c[j];
      });
    }
    if (method == Method::minima) {  // Y += sign(X)·Bᵀ, B = ±ε on dead entries (w ≥ 0 → +ε)
      sx = Tensor::empty({rows, in}, dt);
      Tensor bm = Tensor::empty({out, in}, dt);
      const T* xp = xc.data<T>();
      T* sp = sx.data<T>();
      parallel_for(rows * in, 4096, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sp[i] = xp[i] > T(0) ? T(1) : (xp[i] < T(0) ? T(-1) : T(0));
      });
      const T* wp = wc.data<T>();
      const T* ap = deq.data<T>();
      T* bp = bm.data<T>();
      const T te = static_cast<T>(eps);
      parallel_for(out * in, 4096, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) bp[i] = ap[i] != T(0) ? T(0) : (wp[i] >= T(0) ? te : -te);
      });
      gemm_contiguous<T>(false, true, rows, out, in, sp, bp, T(1), yp);
    }
  });

  return autograd::make_result(
      "quant_linear", std::move(y), {x, weight},
      [x, weight, xc, deq, sx, rows, in, out, method, lambda, eps, minima_code](const Tensor& g) {
        dispatch_float(g.dtype(), "quant_linear", [&](auto tag) {
          using T = decltype(tag);
          const T* gp = g.data<T>();
          if (x.requires_grad()) {
            Tensor gx = Tensor::empty(x.shape(), x.dtype());
            gemm_contiguous<T>(false, false, rows, in, out, gp, deq.data<T>(), T(0), gx.data<T>());  // dX = G·A
            autograd::accumulate_grad(x, gx);
          }
          if (!weight.requires_grad()) return;
          Tensor gw = Tensor::empty({out, in}, weight.dtype());
          T* gwp = gw.data<T>();
          const T* ap = deq.data<T>();  // dead ⇔ ap == 0
          gemm_contiguous<T>(true, false, out, in, rows, gp, xc.data<T>(), T(0), gwp);  // dW = Gᵀ·X
          if (method == Method::tequila || method == Method::tequila_nomix) {
            // s_j = Σ_t G_tj; dead entries get λ·s_j (added to, or in place of, the STE term).
            std::vector<double> s(static_cast<size_t>(out), 0.0);
            parallel_for(out, 64, [&](int64_t b, int64_t e) {
              for (int64_t r = 0; r < rows; ++r) {
                const T* gr = gp + r * out;
                for (int64_t j = b; j < e; ++j) s[static_cast<size_t>(j)] += static_cast<double>(gr[j]);
              }
            });
            const bool mix = method == Method::tequila;
            parallel_for(out, 8, [&](int64_t b, int64_t e) {
              for (int64_t j = b; j < e; ++j) {
                const T ls = static_cast<T>(lambda * s[static_cast<size_t>(j)]);
                T* wr = gwp + j * in;
                const T* ar = ap + j * in;
                if (mix) {
                  for (int64_t i = 0; i < in; ++i) wr[i] += ar[i] == T(0) ? ls : T(0);
                } else {
                  for (int64_t i = 0; i < in; ++i) wr[i] = ar[i] == T(0) ? ls : wr[i];
                }
              }
            });
          } else if (method == Method::minima) {
            // M = Gᵀ·sign(X); paper: dead ← ε·M (no STE term); code: dead += M.
            Tensor m = Tensor::empty({out, in}, weight.dtype());
            T* mp = m.data<T>();
            gemm_contiguous<T>(true, false, out, in, rows, gp, sx.data<T>(), T(0), mp);
            const T te = static_cast<T>(eps);
            parallel_for(out * in, 4096, [&](int64_t b, int64_t e) {
              for (int64_t i = b; i < e; ++i) {
                if (ap[i] != T(0)) continue;
                gwp[i] = minima_code ? gwp[i] + mp[i] : te * mp[i];
              }
            });
          }
          autograd::accumulate_grad(weight, gw);
        });
      });
}

QuantLinear::QuantLinear(int64_t in_features, int64_t out_features, const QuantConfig& cfg)
    : nn::Linear(in_features, out_features, /*bias=*/false), cfg_(cfg) {
  cfg_.validate();
  if (cfg_.method != "none") check_group("QuantLinear", cfg_.granularity, in_features, cfg_.group_size);
  if (method_is_learnable(cfg_.method)) {
    weight_scale_ = register_parameter(kScaleParamName,
                                       autograd::Var::parameter(Tensor::zeros({out_features}), kScaleParamName));
  }
}

void QuantLinear::init_weight_scale() {
  if (weight_scale_.defined()) weight_scale_.set_value(learnable_scale_init(weight().value()));
}

void QuantLinear::init_parameters(Rng& rng, double stddev) {
  nn::Linear::init_parameters(rng, stddev);
  init_weight_scale();
}

std::shared_ptr<QuantLinear> QuantLinear::from_linear(const nn::Linear& linear, const QuantConfig& cfg) {
  TQ_CHECK(!linear.bias().defined(),
           "[QuantLinear] cannot adopt a Linear with a bias ({}x{}) — hint: LLaMA projections have none",
           linear.out_features(), linear.in_features());
  auto q = std::make_shared<QuantLinear>(linear.in_features(), linear.out_features(), cfg);
  q->weight().impl()->value = linear.weight().value();  // share the storage, no copy
  q->init_weight_scale();
  return q;
}

Var QuantLinear::forward(const Var& x) const {
  TQ_CHECK(x.dim() >= 1 && x.size(-1) == in_features(),
           "[QuantLinear] input {} does not end in in_features {}", shape_str(x.shape()), in_features());
  if (weight_scale_.defined()) return quant_linear(x, weight(), weight_scale_, cfg_, &deq_workspace_);
  return quant_linear(x, weight(), cfg_, &deq_workspace_);
}

TernaryView QuantLinear::export_ternary() const {
  if (weight_scale_.defined()) return quantize_learnable(weight().value(), weight_scale_.value(), cfg_.method);
  const bool has_bias = cfg_.method == "tequila" || cfg_.method == "tequila_nomix";
  return quantize_ternary(weight().value(), method_quantizer(cfg_.method), cfg_.granularity,
                          cfg_.group_size, has_bias ? cfg_.lambda : 0.0);
}

int64_t quantize_model(nn::Module& model, const QuantConfig& cfg) {
  cfg.validate();
  const std::set<std::string> wanted(cfg.layers.begin(), cfg.layers.end());
  struct Swap {
    std::string parent, child;
    std::shared_ptr<QuantLinear> q;
  };
  std::vector<Swap> swaps;
  for (auto& [name, m] : model.named_modules()) {
    if (name.empty()) continue;
    const auto* lin = dynamic_cast<const nn::Linear*>(m);
    if (lin == nullptr || dynamic_cast<const QuantLinear*>(m) != nullptr) continue;
    const size_t dot = name.rfind('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    if (wanted.count(last) == 0) continue;
    try {
      swaps.push_back({dot == std::string::npos ? std::string() : name.substr(0, dot), last,
                       QuantLinear::from_linear(*lin, cfg)});
    } catch (const Error& e) {
      TQ_THROW("[quantize_model] cannot quantize '{}': {}", name, e.what());
    }
  }
  for (auto& s : swaps) {
    nn::Module& parent = s.parent.empty() ? model : model.submodule(s.parent);
    parent.replace_module(s.child, s.q);
  }
  return static_cast<int64_t>(swaps.size());
}

std::unique_ptr<nn::LlamaForCausalLM> load_quantized_llama(const std::string& dir, const QuantConfig& cfg) {
  namespace fs = std::filesystem;
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  TQ_CHECK(fs::exists(cfg_path), "[load_quantized_llama] {} does not exist — hint: point at the checkpoint directory",
           cfg_path);
  const nn::LlamaConfig mc = nn::LlamaConfig::from_json(read_json_file(cfg_path), cfg_path);
  nn::HfWeights w = nn::read_hf_weights(dir);
  auto ends_with = [](const std::string& n, const std::string& suf) {
    return n.size() >= suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
  };
  for (auto it = w.tensors.begin(); it != w.tensors.end();) {  // as nn::load_llama
    const bool drop = ends_with(it->first, ".rotary_emb.inv_freq") ||
                      (mc.tie_word_embeddings && it->first == "lm_head.weight");
    it = drop ? w.tensors.erase(it) : std::next(it);
  }
  auto model = std::make_unique<nn::LlamaForCausalLM>(mc);
  quantize_model(*model, cfg);
  const std::string source = w.files.size() == 1 ? w.files.front() : (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string suffix = std::string(".") + kScaleParamName;
  int64_t scales = 0, present = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    if (!ends_with(name, suffix)) continue;
    ++scales;
    present += w.tensors.count(name) ? 1 : 0;
  }
  if (scales > 0 && present == 0) {
    // A plain HF model: every other tensor must match exactly; then α = max|w|.
    std::set<std::string> names;
    for (const auto& [name, p] : model->named_parameters()) {
      names.insert(name);
      if (!ends_with(name, suffix))
        TQ_CHECK(w.tensors.count(name), "[load_quantized_llama] {}: missing tensor '{}'", source, name);
    }
    for (const auto& [name, t] : w.tensors)
      TQ_CHECK(names.count(name), "[load_quantized_llama] {}: unexpected tensor '{}'", source, name);
    model->load_state_dict(w.tensors, /*strict=*/false, source);
    for (auto& [name, m] : model->named_modules())
      if (auto* q = dynamic_cast<QuantLinear*>(m)) q->init_weight_scale();
  } else {
    model->load_state_dict(w.tensors, /*strict=*/true, source);
  }
  return model;
}

}  // namespace tq::quant
