// The basic op vocabulary, each with its forward and backward side by side in one .cpp:
//   elementwise (ops_elementwise.cpp): add sub mul div (numpy broadcasting), scale, add_scalar, neg,
//     exp, log, sqrt, rsqrt, square, silu, broadcast_to
//   reductions (ops_reduce.cpp): sum, mean (all elements, or one dimension with keepdim)
//   shape (ops_shape.cpp): reshape, transpose, slice, concat
//   linear algebra (ops_linalg.cpp): matmul (batched), linear (x·Wᵀ + b)
//   nn (ops_nn.cpp): embedding, softmax, log_softmax (last dimension), pick (gather on last dim)
// All ops accept f32 or f64 values (f64 for the gradient checks) and any strides; results are
// contiguous unless stated (reshape/transpose/slice return views when they can).
// Fused ops with hand-written backward live in their own files: rms_norm.h, rope.h, attention.h,
// swiglu.h, cross_entropy.h.
#pragma once

#include <vector>

#include "autograd/tape.h"
#include "autograd/var.h"

namespace tq::autograd {

// ---- elementwise (broadcasting like numpy/PyTorch) ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var scale(const Var& x, double s);       // s * x
Var add_scalar(const Var& x, double s);  // x + s
Var neg(const Var& x);
Var exp(const Var& x);
Var log(const Var& x);
Var sqrt(const Var& x);
Var rsqrt(const Var& x);
Var square(const Var& x);
Var silu(const Var& x);  // x * sigmoid(x), torch.nn.functional.silu
Var broadcast_to(const Var& x, const Shape& shape);  // materialised copy; backward sums

// ---- reductions ----
Var sum(const Var& x);                                   // all elements -> shape []
Var sum(const Var& x, int64_t dim, bool keepdim);
Var mean(const Var& x);
Var mean(const Var& x, int64_t dim, bool keepdim);

// ---- shape ----
Var reshape(const Var& x, const Shape& shape);  // one -1 allowed
Var transpose(const Var& x, int64_t d0, int64_t d1);
Var slice(const Var& x, int64_t dim, int64_t start, int64_t end);
Var concat(const std::vector<Var>& xs, int64_t dim);

// ---- linear algebra ----
// a [..., M, K] · b [..., K, N] -> [..., M, N]; b may be 2-D [K, N] (shared across the batch),
// otherwise batch dimensions must be equal.
Var matmul(const Var& a, const Var& b);
// x [..., in] · weight[out, in]ᵀ (+ bias [out]) -> [..., out]; torch.nn.functional.linear.
Var linear(const Var& x, const Var& weight, const Var& bias = Var());

// ---- nn ----
// weight [V, C], ids i32 [...] -> [..., C]; ids outside [0, V) are an error.
Var embedding(const Var& weight, const Tensor& ids);
Var softmax(const Var& x);      // over the last dimension
Var log_softmax(const Var& x);  // over the last dimension
// x [..., V], index i32 [...] -> [...]: x[..., index]; entries equal to `skip` give 0 (no gradient).
Var pick(const Var& x, const Tensor& index, int64_t skip = -100);

}  // namespace tq::autograd
