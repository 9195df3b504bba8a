// dtype dispatch for kernels templated on the element type: calls f(T{}) with T = float or double.
// Autograd ops run in f32 for training and in f64 for the finite-difference gradient checks.
#pragma once

#include "core/dtype.h"
#include "core/error.h"

namespace tq {

template <class F>
void dispatch_float(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default:
      TQ_THROW("[{}] unsupported dtype {} — hint: autograd ops take f32 (training) or f64 "
               "(gradient checks); convert with Tensor::to()", op, dtype_name(dtype));
  }
}

}  // namespace tq
