// Elementwise ops with numpy broadcasting; forward and backward side by side.
#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

namespace {

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    TQ_CHECK(da == db || da == 1 || db == 1, "[{}] shapes {} and {} cannot be broadcast together", op,
             shape_str(a), shape_str(b));
    out[i] = std::max(da, db);
  }
  return out;
}

// Sums g (of shape `from`) down to `to` (a shape that broadcasts to `from`).
Tensor sum_to(const Tensor& g, const Shape& to) {
  if (g.shape() == to) return g;
  Tensor out = Tensor::zeros(to, g.dtype());
  // Strides of `out` seen from g's shape: 0 along broadcast dimensions.
  const Shape& from = g.shape();
  const size_t lead = from.size() - to.size();
  const Shape ost = contiguous_strides(to);
  Shape st(from.size(), 0);
  for (size_t i = 0; i < to.size(); ++i) st[lead + i] = to[i] == 1 ? 0 : ost[i];
  const Tensor gc = g.contiguous();
  dispatch_float(g.dtype(), "sum_to", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data<T>();
    T* op = out.data<T>();
    const int64_t n = gc.numel();
    const size_t nd = from.size();
    std::vector<int64_t> idx(nd, 0);
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
      op[off] += gp[i];
      for (size_t d = nd; d-- > 0;) {
        if (++idx[d] < from[d]) {
          off += st[d];
          break;
        }
        off -= st[d] * (from[d] - 1);
        idx[d] = 0;
      }
    }
  });
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast shape.
template <class F>
Tensor binary_map(const Tensor& a, const Tensor& b, const char* op, F f) {
  TQ_CHECK(a.dtype() == b.dtype(), "[{}] dtype mismatch: {} vs {}", op, a.str(), b.str());
  const Shape shape = broadcast_shape(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  const int64_t n = out.numel();
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* o = out.data<T>();
    if (a.shape() == shape && b.shape() == shape) {
      const Tensor ac = a.contiguous(), bc = b.contiguous();
      const T* ap = ac.data<T>();
      const T* bp = bc.data<T>();
      parallel_for(n, 1 << 15, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = f(ap[i], bp[i]);
      });
      return;
    }
    const Tensor ae = a.expand(shape).contiguous(), be = b.expand(shape).contiguous();
    const T* ap = ae.data<T>();
    const T* bp = be.data<T>();
    parallel_for(n, 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = f(ap[i], bp[i]);
    });
  });
  return out;
}

template <class F>
Tensor unary_map(const Tensor& x, const char* op, F f) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const Tensor xc = x.contiguous();
  const int64_t n = out.numel();
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* o = out.data<T>();
    parallel_for(n, 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = f(xp[i]);
    });
  });
  return out;
}

}  // namespace

Var add(const Var& a, const Var& b) {
  Tensor y = binary_map(a.value(), b.value(), "add", [](auto x, auto z) { return x + z; });
  const Shape as = a.shape(), bs = b.shape();
  return make_result("add", std::move(y), {a, b}, [a, b, as, bs](const Tensor& g) {
    if (a.requires_grad()) accumulate_grad(a, sum_to(g, as));
    if (b.requires_grad()) accumulate_grad(b, sum_to(g, bs));
  });
}

Var sub(const Var& a, const Var& b) {
  Tensor y = binary_map(a.value(), b.value(), "sub", [](auto x, auto z) { return x - z; });
  const Shape as = a.shape(), bs = b.shape();
  return make_result("sub", std::move(y), {a, b}, [a, b, as, bs](const Tensor& g) {
    if (a.requires_grad()) accumulate_grad(a, sum_to(g, as));
    if (b.requires_grad()) {
      accumulate_grad(b, sum_to(unary_map(g, "sub", [](auto v) { return -v; }), bs));
    }
  });
}

Var mul(const Var& a, const Var& b) {
  Tensor y = binary_map(a.value(), b.value(), "mul", [](auto x, auto z) { return x * z; });
  return make_result("mul", std::move(y), {a, b}, [a, b](const Tensor& g) {
    const auto m = [](auto x, auto z) { return x * z; };
    if (a.requires_grad()) accumulate_grad(a, sum_to(binary_map(g, b.value(), "mul", m), a.shape()));
    if (b.requires_grad()) accumulate_grad(b, sum_to(binary_map(g, a.value(), "mul", m), b.shape()));
  });
}

Var div(const Var& a, const Var& b) {
  Tensor y = binary_map(a.value(), b.value(), "div", [](auto x, auto z) { return x / z; });
  return make_result("div", std::move(y), {a, b}, [a, b](const Tensor& g) {
    if (a.requires_grad()) {
      accumulate_grad(a, sum_to(binary_map(g, b.value(), "div", [](auto x, auto z) { return x / z; }),
                                a.shape()));
    }
    if (b.requires_grad()) {
      // d(a/b)/db = -a/b^2
      const Tensor ab = binary_map(a.value(), b.value(), "div", [](auto x, auto z) { return -x / (z * z); });
      accumulate_grad(b, sum_to(binary_map(g, ab, "div", [](auto x, auto z) { return x * z; }), b.shape()));
    }
  });
}

Var scale(const Var& x, double s) {
  Tensor y = unary_map(x.value(), "scale", [s](auto v) { return static_cast<decltype(v)>(s) * v; });
  return make_result("scale", std::move(y), {x}, [x, s](const Tensor& g) {
    accumulate_grad(x, unary_map(g, "scale", [s](auto v) { return static_cast<decltype(v)>(s) * v; }));
  });
}

Var add_scalar(const Var& x, double s) {
  Tensor y = unary_map(x.value(), "add_scalar", [s](auto v) { return v + static_cast<decltype(v)>(s); });
  return make_result("add_scalar", std::move(y), {x}, [x](const Tensor& g) { accumulate_grad(x, g); });
}

Var neg(const Var& x) { return scale(x, -1.0); }

// Unary ops whose derivative is written in terms of the input x and the output y.
#define TQ_UNARY_OP(NAME, FWD, DERIV)                                                        \
  Var NAME(const Var& x) {                                                                   \
    Tensor y = unary_map(x.value(), #NAME, [](auto v) { using std::exp, std::log, std::sqrt; return FWD; }); \
    const Tensor yv = y;                                                                     \
    return make_result(#NAME, std::move(y), {x}, [x, yv](const Tensor& g) {                  \
      const Tensor d = binary_map(x.value(), yv, #NAME,                                      \
                                  [](auto v, auto o) { using std::exp, std::sqrt; (void)o; (void)v; return DERIV; }); \
      accumulate_grad(x, binary_map(g, d, #NAME, [](auto p, auto q) { return p * q; }));    \
    });                                                                                      \
  }

TQ_UNARY_OP(exp, exp(v), o)
TQ_UNARY_OP(log, log(v), 1 / v)
TQ_UNARY_OP(sqrt, sqrt(v), 1 / (2 * o))
TQ_UNARY_OP(rsqrt, 1 / sqrt(v), -o * o * o / 2)
TQ_UNARY_OP(square, v * v, 2 * v)
// silu(v) = v·σ(v); d/dv = σ(v)·(1 + v·(1 − σ(v)))
TQ_UNARY_OP(silu, v / (1 + exp(-v)),
            (1 / (1 + exp(-v))) * (1 + v * (1 - 1 / (1 + exp(-v)))))
#undef TQ_UNARY_OP

Var broadcast_to(const Var& x, const Shape& shape) {
  Tensor y = x.value().expand(shape).contiguous();
  if (y.storage() == x.value().storage()) y = y.clone();
  const Shape xs = x.shape();
  return make_result("broadcast_to", std::move(y), {x},
                     [x, xs](const Tensor& g) { accumulate_grad(x, sum_to(g, xs)); });
}

}  // namespace tq::autograd
