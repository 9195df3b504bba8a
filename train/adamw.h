// AdamW with fp32 (or f64) moments, decoupled weight decay and bias correction (PyTorch's
// torch.optim.AdamW), plus global-norm gradient clipping.
//
//   AdamWOptions o;  o.lr = 1e-3;  o.weight_decay = 0.1;
//   AdamW opt(model.named_parameters(), o);            // build after quantize_model
//   double norm = clip_grad_norm(opt.params(), 1.0);   // before the step; returns the pre-clip norm
//   opt.step(lr);                                      // uses each Var's grad(); skips Vars without one
//
// Update per element (step k ≥ 1):  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
//   w ← w − lr·wd·w  (decoupled, only for decayed parameters);
//   w ← w − lr · (m / (1 − β1^k)) / (sqrt(v / (1 − β2^k)) + eps)
// Default decay groups: names ending in "norm.weight" or ".weight_scale", or containing
// "embed_tokens", are not decayed (RMSNorm weights, lsq/seq quantizer scales, embeddings); everything
// else is; `no_decay` overrides with substrings.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/var.h"

namespace tq::train {

struct AdamWOptions {
  double lr = 1e-3;  // default step size when step() is called without one
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // Substrings of parameter names that get no weight decay; empty → the default rule above.
  std::vector<std::string> no_decay;
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, autograd::Var>> params, AdamWOptions opts = {});

  // One update with step size lr (the schedule's value). Parameters without a gradient are left
  // untouched and their step count does not advance (PyTorch skips params whose grad is None).
  void step(double lr);
  void step() { step(opts_.lr); }

  const std::vector<std::pair<std::string, autograd::Var>>& params() const { return params_; }
  const AdamWOptions& options() const { return opts_; }
  bool decays(size_t i) const { return decay_[i]; }

  // Optimizer state for checkpoints: "<name>.exp_avg", "<name>.exp_avg_sq" tensors (shared, not
  // copied) and the per-parameter step counts. load_state checks names and shapes first and throws
  // one error listing every mismatch, naming `source`.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  const std::vector<int64_t>& steps() const { return steps_; }
  void load_state(const std::vector<std::pair<std::string, Tensor>>& tensors,
                  const std::vector<int64_t>& steps, const std::string& source);

 private:
  std::vector<std::pair<std::string, autograd::Var>> params_;
  AdamWOptions opts_;
  std::vector<bool> decay_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // same shape and dtype as each parameter
  std::vector<int64_t> steps_;
};

// The global L2 norm over every defined gradient (accumulated in f64). When max_norm > 0 and the norm
// exceeds it, every gradient is scaled by max_norm / (norm + 1e-6) (PyTorch's clip_grad_norm_).
// Returns the norm before clipping; a non-finite norm is returned as is and nothing is scaled.
double clip_grad_norm(const std::vector<std::pair<std::string, autograd::Var>>& params,
                      double max_norm);

}  // namespace tq::train
