// Reductions: sum and mean over all elements or one dimension; forward and backward side by side.
#include "autograd/ops.h"
#include "core/dispatch.h"

namespace tq::autograd {

namespace {

int64_t norm_dim(int64_t d, int64_t nd, const char* op, const Shape& shape) {
  const int64_t k = d < 0 ? d + nd : d;
  TQ_CHECK(k >= 0 && k < nd, "[{}] dimension {} out of range for shape {}", op, d, shape_str(shape));
  return k;
}

// x viewed as [outer, n, inner]; returns [outer, inner] sums scaled by `s` (accumulated in double).
Tensor reduce_dim(const Tensor& x, int64_t k, double s) {
  const Shape& sh = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < k; ++i) outer *= sh[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(k) + 1; i < sh.size(); ++i) inner *= sh[i];
  const int64_t n = sh[static_cast<size_t>(k)];
  Shape out_shape = sh;
  out_shape.erase(out_shape.begin() + k);
  Tensor out = Tensor::empty(out_shape, x.dtype());
  const Tensor xc = x.contiguous();
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* op = out.data<T>();
    std::vector<double> acc(static_cast<size_t>(inner));
    for (int64_t o = 0; o < outer; ++o) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n; ++j) {
        const T* row = xp + (o * n + j) * inner;
        for (int64_t i = 0; i < inner; ++i) acc[static_cast<size_t>(i)] += row[i];
      }
      for (int64_t i = 0; i < inner; ++i) op[o * inner + i] = static_cast<T>(acc[static_cast<size_t>(i)] * s);
    }
  });
  return out;
}

// g [outer, inner] (dim k removed) -> [outer, n, inner] scaled by s.
Tensor expand_dim(const Tensor& g, const Shape& in_shape, int64_t k, double s) {
  Shape kept = in_shape;
  kept[static_cast<size_t>(k)] = 1;
  const Tensor gk = g.contiguous().view(kept);
  Tensor out = gk.expand(in_shape).contiguous();
  if (out.storage() == gk.storage()) out = out.clone();
  if (s != 1.0) {
    dispatch_float(out.dtype(), "sum", [&](auto tag) {
      using T = decltype(tag);
      T* p = out.data<T>();
      for (int64_t i = 0; i < out.numel(); ++i) p[i] = static_cast<T>(p[i] * s);
    });
  }
  return out;
}

Var reduce_all(const Var& x, double s, const char* op) {
  const Tensor flat = x.value().reshape({x.numel()});
  Tensor y = reduce_dim(flat, 0, s);  // shape []
  const Shape xs = x.shape();
  return make_result(op, std::move(y), {x}, [x, xs, s](const Tensor& g) {
    accumulate_grad(x, expand_dim(g, {shape_numel(xs)}, 0, s).view(xs));
  });
}

Var reduce_one(const Var& x, int64_t dim, bool keepdim, double s_per_n, const char* op) {
  const int64_t k = norm_dim(dim, x.dim(), op, x.shape());
  const int64_t n = x.shape()[static_cast<size_t>(k)];
  const double s = s_per_n > 0 ? 1.0 / static_cast<double>(n) : 1.0;
  Tensor y = reduce_dim(x.value(), k, s);
  if (keepdim) y = y.unsqueeze(k);
  const Shape xs = x.shape();
  return make_result(op, std::move(y), {x}, [x, xs, k, s](const Tensor& g) {
    Shape dropped = xs;
    dropped.erase(dropped.begin() + k);
    accumulate_grad(x, expand_dim(g.contiguous().view(dropped), xs, k, s));
  });
}

}  // namespace

Var sum(const Var& x) { return reduce_all(x, 1.0, "sum"); }
Var mean(const Var& x) {
  TQ_CHECK(x.numel() > 0, "[mean] empty tensor {}", x.value().str());
  return reduce_all(x, 1.0 / static_cast<double>(x.numel()), "mean");
}
Var sum(const Var& x, int64_t dim, bool keepdim) { return reduce_one(x, dim, keepdim, 0, "sum"); }
Var mean(const Var& x, int64_t dim, bool keepdim) { return reduce_one(x, dim, keepdim, 1, "mean"); }

}  // namespace tq::autograd
