// matmul and linear on the one GEMM entry point (core/gemm.h); forward and backward side by side.
#include "autograd/ops.h"
#include "core/dispatch.h"
#include "core/gemm.h"

namespace tq::autograd {

namespace {

// Column sums of g viewed as [rows, cols].
Tensor col_sum(const Tensor& g, int64_t cols) {
  const int64_t rows = g.numel() / cols;
  Tensor out = Tensor::zeros({cols}, g.dtype());
  dispatch_float(g.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    const T* gp = g.data<T>();
    T* o = out.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) o[c] += gp[r * cols + c];
  });
  return out;
}

}  // namespace

Var matmul(const Var& a, const Var& b) {
  TQ_CHECK(a.dim() >= 2 && b.dim() >= 2, "[matmul] need rank >= 2, got {} and {}", shape_str(a.shape()),
           shape_str(b.shape()));
  TQ_CHECK(a.dtype() == b.dtype(), "[matmul] dtype mismatch {} vs {}", a.value().str(), b.value().str());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  TQ_CHECK(b.size(-2) == K, "[matmul] inner dimensions differ: {} · {}", shape_str(a.shape()),
           shape_str(b.shape()));
  const bool shared_b = b.dim() == 2;
  const Shape batch(a.shape().begin(), a.shape().end() - 2);
  if (!shared_b) {
    const Shape bbatch(b.shape().begin(), b.shape().end() - 2);
    TQ_CHECK(batch == bbatch, "[matmul] batch dimensions differ: {} · {} — hint: broadcast_to first",
             shape_str(a.shape()), shape_str(b.shape()));
  }
  const int64_t nb = shape_numel(batch);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  const Tensor ac = a.value().contiguous(), bc = b.value().contiguous();
  Tensor y = Tensor::empty(out_shape, a.dtype());
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    if (shared_b) {
      gemm_contiguous<T>(false, false, nb * M, N, K, ac.data<T>(), bc.data<T>(), T(0), y.data<T>());
      return;
    }
    for (int64_t i = 0; i < nb; ++i)
      gemm_contiguous<T>(false, false, M, N, K, ac.data<T>() + i * M * K, bc.data<T>() + i * K * N, T(0),
            y.data<T>() + i * M * N);
  });
  return make_result("matmul", std::move(y), {a, b}, [a, b, ac, bc, nb, M, N, K, shared_b](const Tensor& g) {
    Tensor ga = a.requires_grad() ? Tensor::empty(a.shape(), a.dtype()) : Tensor();
    Tensor gb = b.requires_grad() ? Tensor::empty(b.shape(), b.dtype()) : Tensor();
    dispatch_float(g.dtype(), "matmul", [&](auto tag) {
      using T = decltype(tag);
      const T* gp = g.data<T>();
      if (shared_b) {
        if (ga.defined()) gemm_contiguous<T>(false, true, nb * M, K, N, gp, bc.data<T>(), T(0), ga.data<T>());  // dA = G·Bᵀ
        if (gb.defined()) gemm_contiguous<T>(true, false, K, N, nb * M, ac.data<T>(), gp, T(0), gb.data<T>());  // dB = Aᵀ·G
        return;
      }
      for (int64_t i = 0; i < nb; ++i) {
        if (ga.defined())
          gemm_contiguous<T>(false, true, M, K, N, gp + i * M * N, bc.data<T>() + i * K * N, T(0), ga.data<T>() + i * M * K);
        if (gb.defined())
          gemm_contiguous<T>(true, false, K, N, M, ac.data<T>() + i * M * K, gp + i * M * N, T(0), gb.data<T>() + i * K * N);
      }
    });
    if (ga.defined()) accumulate_grad(a, ga);
    if (gb.defined()) accumulate_grad(b, gb);
  });
}

Var linear(const Var& x, const Var& weight, const Var& bias) {
  TQ_CHECK(weight.dim() == 2, "[linear] weight must be [out, in], got {}", shape_str(weight.shape()));
  const int64_t out = weight.size(0), in = weight.size(1);
  TQ_CHECK(x.dim() >= 1 && x.size(-1) == in, "[linear] input {} does not end in in_features {} of weight {}",
           shape_str(x.shape()), in, shape_str(weight.shape()));
  TQ_CHECK(x.dtype() == weight.dtype(), "[linear] dtype mismatch {} vs {}", x.value().str(), weight.value().str());
  if (bias.defined()) {
    TQ_CHECK(bias.shape() == Shape{out}, "[linear] bias {} must be [{}]", shape_str(bias.shape()), out);
  }
  const int64_t rows = x.numel() / std::max<int64_t>(in, 1);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  const Tensor xc = x.value().contiguous(), wc = weight.value().contiguous();
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "linear", [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    gemm_contiguous<T>(false, true, rows, out, in, xc.data<T>(), wc.data<T>(), T(0), yp);  // Y = X·Wᵀ
    if (bias.defined()) {
      const Tensor bc = bias.value().contiguous();
      const T* bp = bc.data<T>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < out; ++j) yp[r * out + j] += bp[j];
    }
  });
  std::vector<Var> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return make_result("linear", std::move(y), inputs, [x, weight, bias, xc, wc, rows, in, out](const Tensor& g) {
    dispatch_float(g.dtype(), "linear", [&](auto tag) {
      using T = decltype(tag);
      if (x.requires_grad()) {
        Tensor gx = Tensor::empty(x.shape(), x.dtype());
        gemm_contiguous<T>(false, false, rows, in, out, g.data<T>(), wc.data<T>(), T(0), gx.data<T>());  // dX = G·W
        accumulate_grad(x, gx);
      }
      if (weight.requires_grad()) {
        Tensor gw = Tensor::empty(weight.shape(), weight.dtype());
        gemm_contiguous<T>(true, false, out, in, rows, g.data<T>(), xc.data<T>(), T(0), gw.data<T>());  // dW = Gᵀ·X
        accumulate_grad(weight, gw);
      }
    });
    if (bias.defined() && bias.requires_grad()) accumulate_grad(bias, col_sum(g, out));
  });
}

}  // namespace tq::autograd
