// embedding, softmax, log_softmax and pick; forward and backward side by side.
#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

namespace {

// Rows of the last dimension: [rows, cols].
void rows_cols(const Shape& s, int64_t& rows, int64_t& cols) {
  cols = s.empty() ? 1 : s.back();
  rows = cols == 0 ? 0 : shape_numel(s) / cols;
}

Tensor ids_i32(const Tensor& ids, const char* op) {
  TQ_CHECK(ids.defined() && ids.dtype() == DType::i32, "[{}] ids must be an i32 tensor, got {}", op, ids.str());
  return ids.contiguous();
}

}  // namespace

Var embedding(const Var& weight, const Tensor& ids) {
  TQ_CHECK(weight.dim() == 2, "[embedding] weight must be [V, C], got {}", shape_str(weight.shape()));
  const Tensor idc = ids_i32(ids, "embedding");
  const int64_t V = weight.size(0), C = weight.size(1), n = idc.numel();
  const int32_t* ip = idc.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    TQ_CHECK(ip[i] >= 0 && ip[i] < V, "[embedding] token id {} at position {} is outside the vocabulary [0, {})",
             ip[i], i, V);
  }
  Shape out_shape = idc.shape();
  out_shape.push_back(C);
  Tensor y = Tensor::empty(out_shape, weight.dtype());
  const Tensor wc = weight.value().contiguous();
  dispatch_float(weight.dtype(), "embedding", [&](auto tag) {
    using T = decltype(tag);
    const T* w = wc.data<T>();
    T* o = y.data<T>();
    for (int64_t i = 0; i < n; ++i) std::copy(w + ip[i] * C, w + (ip[i] + 1) * C, o + i * C);
  });
  return make_result("embedding", std::move(y), {weight}, [weight, idc, n, C](const Tensor& g) {
    Tensor gw = Tensor::zeros(weight.shape(), weight.dtype());
    dispatch_float(g.dtype(), "embedding", [&](auto tag) {
      using T = decltype(tag);
      const T* gp = g.data<T>();
      T* o = gw.data<T>();
      const int32_t* idp = idc.data<int32_t>();
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < C; ++c) o[idp[i] * C + c] += gp[i * C + c];
    });
    accumulate_grad(weight, gw);
  });
}

namespace {

// y = softmax or log_softmax of each row (max-subtracted, sums in double).
Tensor softmax_rows(const Tensor& x, bool log_space) {
  int64_t rows, cols;
  rows_cols(x.shape(), rows, cols);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* yp = y.data<T>();
    parallel_for(rows, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const T* xr = xp + r * cols;
        T* yr = yp + r * cols;
        T mx = xr[0];
        for (int64_t c = 1; c < cols; ++c) mx = std::max(mx, xr[c]);
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += std::exp(static_cast<double>(xr[c] - mx));
        const double lse = static_cast<double>(mx) + std::log(s);
        for (int64_t c = 0; c < cols; ++c) {
          const double l = static_cast<double>(xr[c]) - lse;
          yr[c] = static_cast<T>(log_space ? l : std::exp(l));
        }
      }
    });
  });
  return y;
}

}  // namespace

Var softmax(const Var& x) {
  TQ_CHECK(x.dim() >= 1 && x.size(-1) > 0, "[softmax] empty last dimension in {}", shape_str(x.shape()));
  Tensor y = softmax_rows(x.value(), false);
  const Tensor yv = y;
  return make_result("softmax", std::move(y), {x}, [x, yv](const Tensor& g) {
    // dx = y ∘ (g − Σ g∘y)
    int64_t rows, cols;
    rows_cols(yv.shape(), rows, cols);
    Tensor gx = Tensor::empty(yv.shape(), yv.dtype());
    dispatch_float(yv.dtype(), "softmax", [&](auto tag) {
      using T = decltype(tag);
      const T* yp = yv.data<T>();
      const T* gp = g.data<T>();
      T* o = gx.data<T>();
      for (int64_t r = 0; r < rows; ++r) {
        double dot = 0;
        for (int64_t c = 0; c < cols; ++c) dot += static_cast<double>(gp[r * cols + c]) * yp[r * cols + c];
        for (int64_t c = 0; c < cols; ++c)
          o[r * cols + c] = static_cast<T>(yp[r * cols + c] * (gp[r * cols + c] - dot));
      }
    });
    accumulate_grad(x, gx);
  });
}

Var log_softmax(const Var& x) {
  TQ_CHECK(x.dim() >= 1 && x.size(-1) > 0, "[log_softmax] empty last dimension in {}", shape_str(x.shape()));
  Tensor y = softmax_rows(x.value(), true);
  const Tensor yv = y;
  return make_result("log_softmax", std::move(y), {x}, [x, yv](const Tensor& g) {
    // dx = g − exp(y) Σ g
    int64_t rows, cols;
    rows_cols(yv.shape(), rows, cols);
    Tensor gx = Tensor::empty(yv.shape(), yv.dtype());
    dispatch_float(yv.dtype(), "log_softmax", [&](auto tag) {
      using T = decltype(tag);
      const T* yp = yv.data<T>();
      const T* gp = g.data<T>();
      T* o = gx.data<T>();
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += gp[r * cols + c];
        for (int64_t c = 0; c < cols; ++c)
          o[r * cols + c] = static_cast<T>(gp[r * cols + c] - std::exp(static_cast<double>(yp[r * cols + c])) * s);
      }
    });
    accumulate_grad(x, gx);
  });
}

Var pick(const Var& x, const Tensor& index, int64_t skip) {
  const Tensor idc = ids_i32(index, "pick");
  int64_t rows, cols;
  rows_cols(x.shape(), rows, cols);
  const Shape lead(x.shape().begin(), x.shape().end() - 1);
  TQ_CHECK(idc.shape() == lead, "[pick] index {} must have the shape of x {} without its last dimension",
           shape_str(idc.shape()), shape_str(x.shape()));
  const int32_t* ip = idc.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    TQ_CHECK(ip[r] == skip || (ip[r] >= 0 && ip[r] < cols),
             "[pick] index {} at row {} is outside [0, {}) and is not the skip value {}", ip[r], r, cols, skip);
  }
  const Tensor xc = x.value().contiguous();
  Tensor y = Tensor::zeros(lead, x.dtype());
  dispatch_float(x.dtype(), "pick", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data<T>();
    T* o = y.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      if (ip[r] != skip) o[r] = xp[r * cols + ip[r]];
  });
  return make_result("pick", std::move(y), {x}, [x, idc, rows, cols, skip](const Tensor& g) {
    Tensor gx = Tensor::zeros(x.shape(), x.dtype());
    dispatch_float(g.dtype(), "pick", [&](auto tag) {
      using T = decltype(tag);
      const T* gp = g.data<T>();
      T* o = gx.data<T>();
      const int32_t* idp = idc.data<int32_t>();
      for (int64_t r = 0; r < rows; ++r)
        if (idp[r] != skip) o[r * cols + idp[r]] = gp[r];
    });
    accumulate_grad(x, gx);
  });
}

}  // namespace tq::autograd
