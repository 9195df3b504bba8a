// Rotary position embedding (RoPE) in the HF LLaMA "rotate-half" layout, as a fused op with a
// hand-written backward, plus a composed reference built from basic ops for the tests.
//
//   RopeConfig cfg;  cfg.head_dim = 64;
//   std::vector<double> inv = rope_inv_freq(cfg);  // [D/2], in double
//   Var q_rot = rope(q, inv, pos0);  // q [B, T, H, D]; token t sits at position pos0 + t
//
// out[d] = x[d]·cos_d − x[d+D/2]·sin_d and out[d+D/2] = x[d+D/2]·cos_d + x[d]·sin_d with
// angle_d = pos·inv_freq[d] (emb = cat(freqs, freqs) in HF). Angles, cos and sin are computed in
// double and then cast to the element type. The backward is the transposed rotation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/var.h"

namespace tq::autograd {

// HF `rope_theta` / `rope_scaling` fields. type "default" (no scaling) or "llama3"
// (transformers' _compute_llama3_parameters).
struct RopeConfig {
  double theta = 10000;
  int64_t head_dim = 0;
  std::string type = "default";
  double factor = 8;
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  int64_t original_max_position_embeddings = 8192;
};

// inv_freq [D/2]: 1 / theta^(2i/D), rescaled per band for "llama3". Unknown types are errors.
std::vector<double> rope_inv_freq(const RopeConfig& cfg);

// x [B, T, H, D] (any strides, f32/f64), inv_freq [D/2] -> [B, T, H, D] contiguous.
Var rope(const Var& x, const std::vector<double>& inv_freq, int64_t pos0);

// Same result from slice/neg/concat/mul/add with constant cos/sin Vars [1, T, 1, D]; a test reference.
Var rope_composed(const Var& x, const std::vector<double>& inv_freq, int64_t pos0);

}  // namespace tq::autograd
