// Fused RMSNorm (HF LlamaRMSNorm): y = x · rsqrt(mean(x², last dim) + eps) · w, statistics in double.
// Backward with r = rsqrt(ms + eps), x̂ = x·r:  dw = Σ_rows g∘x̂,  dx = r·(g∘w − x̂·mean(g∘w∘x̂)).
// rms_norm_composed builds the same function from basic ops; tests compare the two.
#pragma once

#include "autograd/var.h"

namespace tq::autograd {

Var rms_norm(const Var& x /*[..., C]*/, const Var& weight /*[C]*/, double eps);
Var rms_norm_composed(const Var& x /*[..., C]*/, const Var& weight /*[C]*/, double eps);

}  // namespace tq::autograd
