#include "autograd/swiglu.h"

#include <cmath>

#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

Var swiglu(const Var& gate, const Var& up) {
  TQ_CHECK(gate.shape() == up.shape() && gate.dtype() == up.dtype(), "[swiglu] gate {} and up {} must match",
           gate.value().str(), up.value().str());
  const Tensor gc = gate.value().contiguous(), uc = up.value().contiguous();
  const int64_t n = gc.numel();
  Tensor y = Tensor::empty(gate.shape(), gate.dtype());
  dispatch_float(gate.dtype(), "swiglu", [&](auto tag) {
    using T = decltype(tag);
    const T* a = gc.data<T>();
    const T* b = uc.data<T>();
    T* o = y.data<T>();
    parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = a[i] / (T(1) + std::exp(-a[i])) * b[i];
    });
  });
  return make_result("swiglu", std::move(y), {gate, up}, [gate, up, gc, uc, n](const Tensor& g) {
    Tensor dg = gate.requires_grad() ? Tensor::empty(gate.shape(), gate.dtype()) : Tensor();
    Tensor du = up.requires_grad() ? Tensor::empty(up.shape(), up.dtype()) : Tensor();
    dispatch_float(g.dtype(), "swiglu", [&](auto tag) {
      using T = decltype(tag);
      const T* a = gc.data<T>();
      const T* b = uc.data<T>();
      const T* gp = g.data<T>();
      T* dgp = dg.defined() ? dg.data<T>() : nullptr;
      T* dup = du.defined() ? du.data<T>() : nullptr;
      parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          const T s = T(1) / (T(1) + std::exp(-a[i]));
          if (dup) dup[i] = gp[i] * a[i] * s;
          if (dgp) dgp[i] = gp[i] * b[i] * s * (T(1) + a[i] * (T(1) - s));
        }
      });
    });
    if (dg.defined()) accumulate_grad(gate, dg);
    if (du.defined()) accumulate_grad(up, du);
  });
}

Var swiglu_composed(const Var& gate, const Var& up) { return mul(silu(gate), up); }

}  // namespace tq::autograd
