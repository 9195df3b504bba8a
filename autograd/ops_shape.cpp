// Shape ops: reshape, transpose and slice return views of the input where possible; concat copies.
#include "autograd/ops.h"

namespace tq::autograd {

Var reshape(const Var& x, const Shape& shape) {
  Tensor y = x.value().reshape(shape);
  const Shape xs = x.shape();
  return make_result("reshape", std::move(y), {x},
                     [x, xs](const Tensor& g) { accumulate_grad(x, g.reshape(xs)); });
}

Var transpose(const Var& x, int64_t d0, int64_t d1) {
  Tensor y = x.value().transpose(d0, d1);
  return make_result("transpose", std::move(y), {x},
                     [x, d0, d1](const Tensor& g) { accumulate_grad(x, g.transpose(d0, d1)); });
}

Var slice(const Var& x, int64_t dim, int64_t start, int64_t end) {
  Tensor y = x.value().slice(dim, start, end);
  return make_result("slice", std::move(y), {x}, [x, dim, start, end](const Tensor& g) {
    Tensor gx = Tensor::zeros(x.shape(), x.dtype());
    gx.slice(dim, start, end).copy_from(g);
    accumulate_grad(x, gx);
  });
}

Var concat(const std::vector<Var>& xs, int64_t dim) {
  TQ_CHECK(!xs.empty(), "[concat] no inputs");
  const Shape& s0 = xs[0].shape();
  const int64_t nd = static_cast<int64_t>(s0.size());
  const int64_t k = dim < 0 ? dim + nd : dim;
  TQ_CHECK(k >= 0 && k < nd, "[concat] dimension {} out of range for shape {}", dim, shape_str(s0));
  Shape out_shape = s0;
  out_shape[static_cast<size_t>(k)] = 0;
  for (const Var& v : xs) {
    Shape a = v.shape(), b = s0;
    TQ_CHECK(a.size() == b.size() && v.dtype() == xs[0].dtype(), "[concat] input {} does not match {}",
             v.value().str(), xs[0].value().str());
    a[static_cast<size_t>(k)] = b[static_cast<size_t>(k)] = 0;
    TQ_CHECK(a == b, "[concat] shapes {} and {} differ outside dimension {}", shape_str(v.shape()),
             shape_str(s0), dim);
    out_shape[static_cast<size_t>(k)] += v.shape()[static_cast<size_t>(k)];
  }
  Tensor y = Tensor::empty(out_shape, xs[0].dtype());
  std::vector<int64_t> starts;
  int64_t at = 0;
  for (const Var& v : xs) {
    starts.push_back(at);
    const int64_t len = v.shape()[static_cast<size_t>(k)];
    y.slice(k, at, at + len).copy_from(v.value());
    at += len;
  }
  return make_result("concat", std::move(y), xs, [xs, starts, k](const Tensor& g) {
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!xs[i].requires_grad()) continue;
      const int64_t len = xs[i].shape()[static_cast<size_t>(k)];
      accumulate_grad(xs[i], g.slice(k, starts[i], starts[i] + len));
    }
  });
}

}  // namespace tq::autograd
