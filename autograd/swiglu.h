// Fused SwiGLU gate of the LLaMA MLP: y = silu(gate) ∘ up, silu(z) = z·σ(z).
// Backward: d_up = g∘silu(gate), d_gate = g∘up∘σ(gate)·(1 + gate·(1 − σ(gate))).
#pragma once

#include "autograd/var.h"

namespace tq::autograd {

Var swiglu(const Var& gate /*[..., F]*/, const Var& up /*[..., F]*/);
Var swiglu_composed(const Var& gate /*[..., F]*/, const Var& up /*[..., F]*/);

}  // namespace tq::autograd
