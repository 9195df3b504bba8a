// The tape: a Wengert list of recorded ops in execution order, each with its inputs, its output and
// a backward closure written beside the op's forward. Recording happens only inside a RecordScope
// (and not under NoGradGuard); everywhere else ops are plain eager code (evaluation mode).
//
//   autograd::Tape tape;
//   {
//     autograd::RecordScope rec(tape);
//     Var loss = model_forward(...);
//     tape.backward(loss);          // parameters' grad() now hold dLoss/dParam (accumulated)
//   }
//
// Note [Tape lifetime]
// ~~~~~~~~~~~~~~~~~~~~
// backward() walks the nodes in reverse. A node's output gradient is moved out of its VarImpl before
// its closure runs, and the closure (with everything it saved) is destroyed right after, so
// intermediate gradients and saved activations are freed as soon as they are consumed. Leaves with
// requires_grad accumulate into VarImpl::grad. The tape is empty after backward().
#pragma once

#include <functional>
#include <vector>

#include "autograd/var.h"

namespace tq::autograd {

// Receives the gradient of the op's output (contiguous, same shape/dtype as the output) and calls
// accumulate_grad() for each input that requires a gradient.
using BackwardFn = std::function<void(const Tensor& grad_out)>;

struct Node {
  const char* op = "";
  std::vector<Var> inputs;
  Var output;
  BackwardFn backward;
};

class Tape {
 public:
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  void record(Node node) { nodes_.push_back(std::move(node)); }
  size_t size() const { return nodes_.size(); }
  const std::vector<Node>& nodes() const { return nodes_; }
  void clear() { nodes_.clear(); }

  // Backpropagates from `root`. `seed` defaults to ones for a one-element root; otherwise it must
  // have the root's shape. Clears the tape.
  void backward(const Var& root, const Tensor& seed = Tensor());

 private:
  std::vector<Node> nodes_;
};

// Makes `tape` the current thread's recording tape for the scope's lifetime (scopes nest).
class RecordScope {
 public:
  explicit RecordScope(Tape& tape);
  ~RecordScope();
  RecordScope(const RecordScope&) = delete;
  RecordScope& operator=(const RecordScope&) = delete;

 private:
  Tape* prev_;
};

// Suspends recording on this thread for the guard's lifetime.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

bool is_recording();  // a RecordScope is active and no NoGradGuard

// Adds `g` into v's gradient (no-op when v does not require a gradient). `g` must have v's shape;
// it is taken without a copy when v has no gradient yet, and never modified in place afterwards
// unless this Var owns it exclusively.
void accumulate_grad(const Var& v, const Tensor& g);

// For op implementations: wraps `value` as the op's result and, when recording and any input
// requires a gradient, records `backward` on the current tape.
Var make_result(const char* op, Tensor value, std::vector<Var> inputs, BackwardFn backward);

}  // namespace tq::autograd
