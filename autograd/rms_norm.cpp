#include "autograd/rms_norm.h"

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

Var rms_norm(const Var& x, const Var& weight, double eps) {
  TQ_CHECK(x.dim() >= 1, "[rms_norm] input must have a last dimension, got {}", shape_str(x.shape()));
  const int64_t C = x.size(-1);
  TQ_CHECK(weight.shape() == Shape{C}, "[rms_norm] weight {} must be [{}] for input {}",
           shape_str(weight.shape()), C, shape_str(x.shape()));
  TQ_CHECK(x.dtype() == weight.dtype(), "[rms_norm] dtype mismatch {} vs {}", x.value().str(), weight.value().str());
  TQ_CHECK(eps >= 0, "[rms_norm] eps must be >= 0, got {}", eps);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  const Tensor xc = x.value().contiguous(), wc = weight.value().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  Tensor rstd = Tensor::empty({rows}, DType::f64);  // [rows] saved for backward
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    const T* wp = wc.data<T>();
    T* yp = y.data<T>();
    double* rp = rstd.data<double>();
    parallel_for(rows, 8, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const T* xr = xp + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
        const double rs = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
        rp[r] = rs;
        const T rst = static_cast<T>(rs);
        for (int64_t c = 0; c < C; ++c) yp[r * C + c] = xr[c] * rst * wp[c];
      }
    });
  });
  return make_result("rms_norm", std::move(y), {x, weight}, [x, weight, xc, wc, rstd, rows, C](const Tensor& g) {
    Tensor gx = x.requires_grad() ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
    std::vector<double> gw(weight.requires_grad() ? static_cast<size_t>(C) : 0, 0.0);
    dispatch_float(g.dtype(), "rms_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* xp = xc.data<T>();
      const T* wp = wc.data<T>();
      const T* gp = g.data<T>();
      const double* rp = rstd.data<double>();
      if (gx.defined()) {
        T* o = gx.data<T>();
        parallel_for(rows, 8, [&](int64_t lo, int64_t hi) {
          for (int64_t r = lo; r < hi; ++r) {
            const double rs = rp[r];
            double dot = 0;  // Σ g∘w∘x̂
            for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(gp[r * C + c]) * wp[c] * xp[r * C + c] * rs;
            const double m = dot / static_cast<double>(C);
            for (int64_t c = 0; c < C; ++c) {
              const double xh = static_cast<double>(xp[r * C + c]) * rs;
              o[r * C + c] = static_cast<T>(rs * (static_cast<double>(gp[r * C + c]) * wp[c] - xh * m));
            }
          }
        });
      }
      if (!gw.empty()) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < C; ++c)
            gw[static_cast<size_t>(c)] += static_cast<double>(gp[r * C + c]) * xp[r * C + c] * rp[r];
      }
    });
    if (gx.defined()) accumulate_grad(x, gx);
    if (!gw.empty()) {
      Tensor gwt = Tensor::empty({C}, weight.dtype());
      for (int64_t c = 0; c < C; ++c) gwt.set({c}, gw[static_cast<size_t>(c)]);
      accumulate_grad(weight, gwt);
    }
  });
}

Var rms_norm_composed(const Var& x, const Var& weight, double eps) {
  const Var ms = mean(square(x), -1, /*keepdim=*/true);
  return mul(mul(x, rsqrt(add_scalar(ms, eps))), weight);
}

}  // namespace tq::autograd
