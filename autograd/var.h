// Var: a value in the autograd graph, a cheap handle over a shared VarImpl. Leaves are created by the
// user (parameters with requires_grad, or constants); non-leaves are produced by recorded ops.
// Parameters accumulate into grad() across backward passes until zero_grad(); intermediate gradients
// live only while the tape is walked (see Note [Tape lifetime] in autograd/tape.h).
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"

namespace tq::autograd {

struct VarImpl {
  Tensor value;
  Tensor grad;  // same shape and dtype as value once defined
  bool requires_grad = false;
  bool is_leaf = true;
  std::string name;
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false, std::string name = {});
  // A trainable leaf.
  static Var parameter(Tensor value, std::string name = {});
  // A leaf that never receives a gradient.
  static Var constant(Tensor value) { return Var(std::move(value), false); }

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const;
  // Replace the value in place (optimizer updates); shape and dtype must not change.
  void set_value(const Tensor& value);
  const Tensor& grad() const;  // undefined until a backward pass reaches this Var
  bool has_grad() const { return impl_ && impl_->grad.defined(); }
  void zero_grad();  // drops the gradient
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  bool is_leaf() const { return !impl_ || impl_->is_leaf; }
  const std::string& name() const;
  void set_name(std::string name);

  const Shape& shape() const { return value().shape(); }
  int64_t size(int64_t d) const { return value().size(d); }
  int64_t dim() const { return value().dim(); }
  int64_t numel() const { return value().numel(); }
  DType dtype() const { return value().dtype(); }

  VarImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<VarImpl>& impl_ptr() const { return impl_; }
  explicit Var(std::shared_ptr<VarImpl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<VarImpl> impl_;
};

}  // namespace tq::autograd
