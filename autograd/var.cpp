#include "autograd/var.h"

namespace tq::autograd {

Var::Var(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  TQ_CHECK(value.defined(), "[Var] cannot wrap an undefined tensor{}", name.empty() ? "" : " (" + name + ")");
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

Var Var::parameter(Tensor value, std::string name) {
  TQ_CHECK(dtype_is_float(value.dtype()), "[Var::parameter] {} has non-float dtype {}", name,
           dtype_name(value.dtype()));
  return Var(std::move(value), true, std::move(name));
}

const Tensor& Var::value() const {
  TQ_CHECK(impl_ != nullptr, "[Var] undefined Var");
  return impl_->value;
}

void Var::set_value(const Tensor& value) {
  TQ_CHECK(impl_ != nullptr, "[Var::set_value] undefined Var");
  TQ_CHECK(value.shape() == impl_->value.shape() && value.dtype() == impl_->value.dtype(),
           "[Var::set_value] {}: new value {} does not match {}", impl_->name, value.str(),
           impl_->value.str());
  impl_->value = value;
}

const Tensor& Var::grad() const {
  TQ_CHECK(impl_ != nullptr, "[Var] undefined Var");
  return impl_->grad;
}

void Var::zero_grad() {
  if (impl_) impl_->grad = Tensor();
}

const std::string& Var::name() const {
  static const std::string empty;
  return impl_ ? impl_->name : empty;
}

void Var::set_name(std::string name) {
  TQ_CHECK(impl_ != nullptr, "[Var::set_name] undefined Var");
  impl_->name = std::move(name);
}

}  // namespace tq::autograd
