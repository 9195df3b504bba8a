#include "autograd/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

namespace {

// Validates shapes and every target before any parallel loop; returns the non-ignored row count.
int64_t check_cross_entropy_args(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                 const char* op) {
  TQ_CHECK(logits.dim() == 2, "[{}] logits must be [N, V], got {}", op, shape_str(logits.shape()));
  TQ_CHECK(targets.dtype() == DType::i32 && targets.dim() == 1 && targets.size(0) == logits.size(0),
           "[{}] targets must be i32 [N] for logits {}, got {}", op, shape_str(logits.shape()),
           targets.str());
  const int64_t N = logits.size(0), V = logits.size(1);
  const Tensor tc = targets.contiguous();
  const int32_t* t = tc.data<int32_t>();
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (t[n] == ignore_index) continue;
    TQ_CHECK(t[n] >= 0 && t[n] < V,
             "[{}] target {} at row {} is outside [0, {}) and is not ignore_index ({}); logits {}",
             op, t[n], n, V, ignore_index, shape_str(logits.shape()));
    ++count;
  }
  return count;
}

// Row log-sum-exp by an online max/sum over chunks of `chunk` columns.
template <class T>
double row_lse(const T* x, int64_t V, int64_t chunk) noexcept {
  double m = -INFINITY, sum = 0;
  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const int64_t c1 = std::min(V, c0 + chunk);
    T cm = x[c0];
    for (int64_t j = c0 + 1; j < c1; ++j) cm = std::max(cm, x[j]);
    if (static_cast<double>(cm) > m) {
      sum *= std::exp(m - static_cast<double>(cm));  // exp(−inf) = 0 on the first chunk
      m = static_cast<double>(cm);
    }
    const T mt = static_cast<T>(m);
    double cs = 0;
    for (int64_t j = c0; j < c1; ++j) cs += static_cast<double>(std::exp(x[j] - mt));
    sum += cs;
  }
  return m + std::log(sum);
}

}  // namespace

Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index, int64_t chunk) {
  TQ_CHECK(chunk > 0, "[cross_entropy] chunk must be positive, got {}", chunk);
  const Tensor x = logits.value().contiguous();
  const int64_t count = check_cross_entropy_args(x, targets, ignore_index, "cross_entropy");
  const Tensor tgt = targets.contiguous();
  const int64_t N = x.size(0), V = x.size(1);
  Tensor lse = Tensor::zeros({N}, DType::f64);  // [N], 0 for ignored rows
  Tensor loss = Tensor::empty({}, x.dtype());
  dispatch_float(x.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const int32_t* tp = tgt.data<int32_t>();
    double* lp = lse.data<double>();
    std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
    parallel_for(N, 8, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        if (tp[n] == ignore_index) continue;
        lp[n] = row_lse<T>(xp + n * V, V, chunk);
        row_loss[static_cast<size_t>(n)] = lp[n] - static_cast<double>(xp[n * V + tp[n]]);
      }
    });
    double total = 0;  // summed serially so the result does not depend on the thread count
    for (double r : row_loss) total += r;
    loss.data<T>()[0] = static_cast<T>(count > 0 ? total / static_cast<double>(count) : 0.0);
  });
  return make_result(
      "cross_entropy", std::move(loss), {logits},
      [logits, x, tgt, lse, count, ignore_index, chunk, N, V](const Tensor& g) {
        Tensor dx = Tensor::empty(x.shape(), x.dtype());
        dispatch_float(x.dtype(), "cross_entropy_backward", [&](auto tag) {
          using T = decltype(tag);
          const double gs = g.contiguous().item();
          const T factor = static_cast<T>(count > 0 ? gs / static_cast<double>(count) : 0.0);
          const T* xp = x.data<T>();
          const int32_t* tp = tgt.data<int32_t>();
          const double* lp = lse.data<double>();
          T* dp = dx.data<T>();
          parallel_for(N, 8, [&](int64_t begin, int64_t end) {
            for (int64_t n = begin; n < end; ++n) {
              T* drow = dp + n * V;
              if (tp[n] == ignore_index) {
                std::fill(drow, drow + V, T(0));
                continue;
              }
              const T* xrow = xp + n * V;
              const T l = static_cast<T>(lp[n]);
              for (int64_t c0 = 0; c0 < V; c0 += chunk) {
                const int64_t c1 = std::min(V, c0 + chunk);
                for (int64_t j = c0; j < c1; ++j) drow[j] = factor * std::exp(xrow[j] - l);
              }
              drow[tp[n]] -= factor;
            }
          });
        });
        accumulate_grad(logits, dx);
      });
}

Var cross_entropy_composed(const Var& logits, const Tensor& targets, int64_t ignore_index) {
  const int64_t count =
      check_cross_entropy_args(logits.value(), targets, ignore_index, "cross_entropy_composed");
  const Var picked = pick(log_softmax(logits), targets, ignore_index);  // [N], 0 where ignored
  return scale(sum(picked), count > 0 ? -1.0 / static_cast<double>(count) : 0.0);
}

}  // namespace tq::autograd
