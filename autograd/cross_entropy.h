// Cross-entropy over a large vocabulary as a fused op (torch.nn.functional.cross_entropy with
// reduction="mean" and ignore_index), plus a composed reference built from basic ops for the tests.
//
//   Var loss = cross_entropy(logits, targets);  // logits [N, V], targets i32 [N] -> scalar []
//
// The forward walks each row's vocabulary in chunks of `chunk` columns with an online max/sum
// (rescaling the running sum when the max grows) and keeps only the row log-sum-exp [N]; the
// backward recomputes softmax chunk by chunk. No [N, V] probabilities are stored.
// Rows whose target equals ignore_index contribute neither loss nor gradient; the mean is over the
// remaining rows. When every row is ignored the loss is 0 with a zero gradient (PyTorch gives NaN).
#pragma once

#include <cstdint>

#include "autograd/var.h"

namespace tq::autograd {

// logits [N, V] (f32/f64, any strides), targets i32 [N] with values in [0, V) or ignore_index
// -> [] in the logits' dtype. Out-of-range targets are errors naming the row.
Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index = -100,
                  int64_t chunk = 4096);

// Same result from log_softmax, pick (with skip), sum and scale; a test reference.
Var cross_entropy_composed(const Var& logits, const Tensor& targets, int64_t ignore_index = -100);

}  // namespace tq::autograd
