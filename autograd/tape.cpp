#include "autograd/tape.h"

#include "core/dispatch.h"

namespace tq::autograd {

namespace {
thread_local Tape* t_tape = nullptr;
thread_local bool t_no_grad = false;

void add_into(Tensor& dst, const Tensor& src) {
  const int64_t n = dst.numel();
  dispatch_float(dst.dtype(), "accumulate_grad", [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  });
}
}  // namespace

RecordScope::RecordScope(Tape& tape) : prev_(t_tape) { t_tape = &tape; }
RecordScope::~RecordScope() { t_tape = prev_; }

NoGradGuard::NoGradGuard() : prev_(t_no_grad) { t_no_grad = true; }
NoGradGuard::~NoGradGuard() { t_no_grad = prev_; }

bool is_recording() { return t_tape != nullptr && !t_no_grad; }

void accumulate_grad(const Var& v, const Tensor& g) {
  if (!v.requires_grad()) return;
  VarImpl* impl = v.impl();
  TQ_CHECK(g.shape() == impl->value.shape() && g.dtype() == impl->value.dtype(),
           "[accumulate_grad] gradient {} does not match value {} of '{}'", g.str(),
           impl->value.str(), impl->name);
  if (!impl->grad.defined()) {
    impl->grad = g.contiguous();
    return;
  }
  const Tensor src = g.contiguous();
  // In place only into a buffer nobody else can see (a gradient may be shared by several inputs).
  if (impl->grad.storage().use_count() != 1) impl->grad = impl->grad.clone();
  add_into(impl->grad, src);
}

Var make_result(const char* op, Tensor value, std::vector<Var> inputs, BackwardFn backward) {
  bool needs = false;
  for (const Var& in : inputs) needs = needs || in.requires_grad();
  Var out(std::move(value), false);
  if (!needs || !is_recording()) return out;
  out.impl()->requires_grad = true;
  out.impl()->is_leaf = false;
  t_tape->record(Node{op, std::move(inputs), out, std::move(backward)});
  return out;
}

void Tape::backward(const Var& root, const Tensor& seed) {
  TQ_CHECK(root.defined(), "[backward] root is undefined");
  TQ_CHECK(root.requires_grad(),
           "[backward] root does not require a gradient — hint: was the forward run inside a "
           "RecordScope, with parameters created by Var::parameter?");
  Tensor s = seed;
  if (!s.defined()) {
    TQ_CHECK(root.numel() == 1, "[backward] root has shape {}; pass a seed gradient for a non-scalar root",
             shape_str(root.shape()));
    s = Tensor::ones(root.shape(), root.dtype());
  }
  TQ_CHECK(s.shape() == root.shape(), "[backward] seed {} does not match root {}", shape_str(s.shape()),
           shape_str(root.shape()));
  {
    NoGradGuard no_grad;  // backward closures never record
    if (root.is_leaf()) {
      accumulate_grad(root, s.to(root.dtype()));
      nodes_.clear();
      return;
    }
    root.impl()->grad = s.to(root.dtype()).contiguous();
    for (size_t i = nodes_.size(); i-- > 0;) {
      Node& node = nodes_[i];
      Tensor g = std::move(node.output.impl()->grad);
      node.output.impl()->grad = Tensor();
      if (g.defined()) node.backward(g);
      node = Node{};  // frees saved tensors now; see Note [Tape lifetime]
    }
  }
  nodes_.clear();
}

}  // namespace tq::autograd
