// Learnable-scale ternary baselines (spec §5.2): LSQ and SEQ (ParetoQ's StretchedElasticQuant), one
// scale α per output channel. Declared in quant/quant.h; formulas and choices in docs/quant.md,
// "LSQ and SEQ". Forward: one pass per row writes Q(W, α) (the GEMM operand), then Y = X·Qᵀ.
// Backward: dX = G·Q; M = Gᵀ·X (one GEMM) gives dW = M on the STE window and 0 outside, and
// dα_j = g·Σ_i coef(w_ji/α_j)·M_ji in the same pass over M.
#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/tape.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "quant/quant.h"

namespace tq::quant {

using autograd::Var;

namespace {

enum class Kind { lsq, seq };

// SEQ for ternary (ParetoQ num_bits = 0): clip 1 − 1e-2, 1.5 levels per unit, no shift.
constexpr double kSeqClip = 0.99;
constexpr double kSeqLevels = 1.5;

Kind kind_of(const std::string& method) {
  TQ_CHECK(method_is_learnable(method),
           "[quant_linear] method '{}' has no learnable scale — hint: lsq | seq", method);
  return method == "lsq" ? Kind::lsq : Kind::seq;
}

// The integer code of v = w/α: lsq clamp(round(v), −1, 1); seq round(clamp(v, ±0.99)·1.5).
// std::nearbyint rounds half to even (torch.round's convention) under the default rounding mode.
template <class T>
inline int code_of(Kind k, T v) {
  if (k == Kind::lsq) {
    const T r = std::nearbyint(v);
    return r >= T(1) ? 1 : (r <= T(-1) ? -1 : 0);
  }
  const T c = std::min(std::max(v, static_cast<T>(-kSeqClip)), static_cast<T>(kSeqClip));
  return static_cast<int>(std::nearbyint(c * static_cast<T>(kSeqLevels)));
}

// The ternary scale of a code: lsq α, seq α/1.5 (levels ±2α/3), written as torch does: (t/1.5)·α.
template <class T>
inline T level_unit(Kind k) {
  return k == Kind::lsq ? T(1) : T(1) / static_cast<T>(kSeqLevels);
}

template <class T>
inline T floored(T a) {
  return a > static_cast<T>(kScaleFloor) ? a : static_cast<T>(kScaleFloor);
}

void check_scale(const char* who, const Tensor& scale, int64_t out, DType dt) {
  TQ_CHECK(scale.defined(),
           "[{}] the learnable scale is undefined — hint: QuantLinear registers `{}` for lsq/seq",
           who, kScaleParamName);
  const bool ok_shape = (scale.dim() == 1 && scale.size(0) == out) ||
                        (scale.dim() == 2 && scale.size(0) == out && scale.size(1) == 1);
  TQ_CHECK(ok_shape, "[{}] scale must be [{}] (one α per output channel), got {}", who, out,
           shape_str(scale.shape()));
  TQ_CHECK(scale.dtype() == dt, "[{}] scale dtype {} differs from the weight's {}", who,
           dtype_name(scale.dtype()), dtype_name(dt));
}

}  // namespace

Tensor learnable_scale_init(const Tensor& w) {
  TQ_CHECK(w.defined() && w.dim() == 2 && w.size(0) > 0 && w.size(1) > 0,
           "[learnable_scale_init] weight must be a non-empty [out, in], got {}",
           w.defined() ? shape_str(w.shape()) : std::string("undefined"));
  const int64_t out = w.size(0), in = w.size(1);
  const Tensor wc = w.contiguous();
  Tensor s = Tensor::empty({out}, w.dtype());
  dispatch_float(w.dtype(), "learnable_scale_init", [&](auto tag) {
    using T = decltype(tag);
    const T* wp = wc.data<T>();
    T* sp = s.data<T>();
    parallel_for(out, 16, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        T m = T(0);
        for (int64_t i = 0; i < in; ++i) m = std::max(m, std::abs(wp[j * in + i]));
        sp[j] = m;
      }
    });
  });
  return s;
}

TernaryView quantize_learnable(const Tensor& w, const Tensor& scale, const std::string& method) {
  const Kind k = kind_of(method);
  TQ_CHECK(w.defined() && w.dim() == 2 && w.size(0) > 0 && w.size(1) > 0,
           "[quantize_learnable] weight must be a non-empty [out, in], got {}",
           w.defined() ? shape_str(w.shape()) : std::string("undefined"));
  const int64_t out = w.size(0), in = w.size(1);
  check_scale("quantize_learnable", scale, out, w.dtype());
  const Tensor wc = w.contiguous(), sc = scale.contiguous();
  TernaryView v;
  v.granularity = Granularity::channel;
  v.group_size = in;
  v.codes = Tensor::empty({out, in}, DType::i8);
  v.dead = Tensor::empty({out, in}, DType::u8);
  v.alpha = Tensor::empty({out, 1}, w.dtype());
  v.bias = Tensor::zeros({out}, w.dtype());
  v.delta = Tensor::empty({out, 1}, w.dtype());
  dispatch_float(w.dtype(), "quantize_learnable", [&](auto tag) {
    using T = decltype(tag);
    const T* wp = wc.data<T>();
    const T* sp = sc.data<T>();
    int8_t* cp = v.codes.data<int8_t>();
    uint8_t* dp = v.dead.data<uint8_t>();
    T* ap = v.alpha.data<T>();
    T* dlp = v.delta.data<T>();
    parallel_for(out, 8, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const T a = floored(sp[j]);
        ap[j] = level_unit<T>(k) * a;
        dlp[j] = k == Kind::lsq ? a / T(2) : a / T(3);
        for (int64_t i = 0; i < in; ++i) {
          const int t = code_of<T>(k, wp[j * in + i] / a);
          cp[j * in + i] = static_cast<int8_t>(t);
          dp[j * in + i] = static_cast<uint8_t>(t == 0);
        }
      }
    });
  });
  return v;
}

Var quant_linear(const Var& x, const Var& weight, const Var& scale, const QuantConfig& cfg,
                 Tensor* workspace) {
  if (!method_is_learnable(cfg.method)) return quant_linear(x, weight, cfg, workspace);
  cfg.validate();
  const Kind kind = kind_of(cfg.method);
  TQ_CHECK(weight.defined() && weight.dim() == 2, "[quant_linear] weight must be [out, in]");
  const int64_t out = weight.size(0), in = weight.size(1);
  TQ_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in,
           "[quant_linear] input {} does not end in in_features {}",
           x.defined() ? shape_str(x.shape()) : std::string("undefined"), in);
  TQ_CHECK(x.dtype() == weight.dtype(), "[quant_linear] dtype mismatch {} vs {}",
           dtype_name(x.dtype()), dtype_name(weight.dtype()));
  check_scale("quant_linear", scale.defined() ? scale.value() : Tensor(), out, weight.dtype());
  const int64_t rows = x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const DType dt = x.dtype();
  const Tensor xc = x.value().contiguous(), wc = weight.value().contiguous(),
               sc = scale.value().contiguous();
  // LSQ's g = 1/√(N·Q_p) with Q_p = 1.
  const double gscale =
      1.0 / std::sqrt(static_cast<double>(cfg.scale_grad == "tensor" ? out * in : in));

  Tensor deq;  // Q(W, α) [out, in]; see quant.cpp for the workspace reuse rule
  if (workspace != nullptr && workspace->defined() && workspace->shape() == Shape{out, in} &&
      workspace->dtype() == dt && workspace->storage().use_count() == 1) {
    deq = *workspace;
  } else {
    deq = Tensor::empty({out, in}, dt);
    if (workspace != nullptr) *workspace = deq;
  }
  Tensor y = Tensor::empty(out_shape, dt);
  dispatch_float(dt, "quant_linear", [&](auto tag) {
    using T = decltype(tag);
    const T* wp = wc.data<T>();
    const T* sp = sc.data<T>();
    T* qp = deq.data<T>();
    const T unit = level_unit<T>(kind);
    parallel_for(out, 8, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const T a = floored(sp[j]);
        for (int64_t i = 0; i < in; ++i)
          qp[j * in + i] = static_cast<T>(code_of<T>(kind, wp[j * in + i] / a)) * unit * a;
      }
    });
    gemm_contiguous<T>(false, true, rows, out, in, xc.data<T>(), qp, T(0),
                       y.data<T>());  // Y = X·Qᵀ
  });

  return autograd::make_result(
      "quant_linear", std::move(y), {x, weight, scale},
      [x, weight, scale, xc, wc, sc, deq, rows, in, out, kind, gscale](const Tensor& g) {
        dispatch_float(g.dtype(), "quant_linear", [&](auto tag) {
          using T = decltype(tag);
          const T* gp = g.data<T>();
          if (x.requires_grad()) {
            Tensor gx = Tensor::empty(x.shape(), x.dtype());
            gemm_contiguous<T>(false, false, rows, in, out, gp, deq.data<T>(), T(0),
                               gx.data<T>());  // dX = G·Q
            autograd::accumulate_grad(x, gx);
          }
          if (!weight.requires_grad() && !scale.requires_grad()) return;
          Tensor gw = Tensor::empty({out, in}, weight.dtype());
          T* mp = gw.data<T>();
          gemm_contiguous<T>(true, false, out, in, rows, gp, xc.data<T>(), T(0), mp);  // M = Gᵀ·X
          std::vector<double> ga(static_cast<size_t>(out), 0.0);
          const T* wp = wc.data<T>();
          const T* sp = sc.data<T>();
          const T hi = kind == Kind::lsq ? T(1) : static_cast<T>(kSeqClip);
          parallel_for(out, 8, [&](int64_t b, int64_t e) {
            for (int64_t j = b; j < e; ++j) {
              const T a = floored(sp[j]);
              double acc = 0;
              for (int64_t i = 0; i < in; ++i) {
                const T v = wp[j * in + i] / a;
                T& m = mp[j * in + i];
                // Outside the window: coefficient Q_n = −1 / Q_p = +1 and no weight gradient;
                // inside: round-term − v (the STE through round) and dW = M.
                if (v < -hi) {
                  acc -= static_cast<double>(m);
                  m = T(0);
                } else if (v > hi) {
                  acc += static_cast<double>(m);
                  m = T(0);
                } else {
                  const T lvl = kind == Kind::lsq ? std::nearbyint(v)
                                                  : std::nearbyint(v * static_cast<T>(kSeqLevels)) /
                                                        static_cast<T>(kSeqLevels);
                  acc += static_cast<double>(lvl - v) * static_cast<double>(m);
                }
              }
              ga[static_cast<size_t>(j)] = gscale * acc;
            }
          });
          if (weight.requires_grad()) autograd::accumulate_grad(weight, gw);
          if (scale.requires_grad()) {
            Tensor gs = Tensor::empty(scale.shape(), scale.dtype());
            T* gsp = gs.data<T>();
            for (int64_t j = 0; j < out; ++j) gsp[j] = static_cast<T>(ga[static_cast<size_t>(j)]);
            autograd::accumulate_grad(scale, gs);
          }
        });
      });
}

}  // namespace tq::quant
