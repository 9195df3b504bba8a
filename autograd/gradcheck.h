// Finite-difference gradient checker in float64 (flashlight/ggml style). For fn: inputs -> output it
// builds the numerical Jacobian by central differences and the analytical one from one-hot backward
// passes, on a capped sample of output and input elements, and compares them entry by entry.
//
//   auto r = check_gradients([](const std::vector<Var>& v) { return mul(v[0], v[1]); },
//                            {a64, b64});
//   CHECK_MESSAGE(r.ok, r.report);
//
// Inputs must be f64 and placed away from kinks (|x| not near 0 for abs-like ops). Straight-through
// quantizers are piecewise constant: check them against their closed form instead.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/var.h"

namespace tq::autograd {

using GradFn = std::function<Var(const std::vector<Var>&)>;

struct GradCheckOptions {
  double eps = 1e-6;       // central-difference step
  double atol = 1e-6;      // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  int64_t max_outputs = 48;  // output elements checked (sampled when there are more)
  int64_t max_inputs = 48;   // elements checked per input (sampled when there are more)
  uint64_t seed = 7;       // sampling seed
  std::vector<bool> wrt;   // which inputs to differentiate (default: all)
};

struct GradCheckResult {
  bool ok = true;
  double max_abs_err = 0;
  int64_t entries = 0;  // Jacobian entries compared
  std::string report;   // first mismatches, or a summary
};

GradCheckResult check_gradients(const GradFn& fn, const std::vector<Tensor>& inputs,
                                const GradCheckOptions& opts = {});

}  // namespace tq::autograd
