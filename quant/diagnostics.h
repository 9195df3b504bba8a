// Dead-zone diagnostics for ternary QAT (spec §11): how many latent weights sit in the dead zone,
// how many pile up at its edge, how often they cross it, and whether the ones that escape come
// back. Cheap enough to run every N training steps; the result is one JSON object per call, meant
// to go under "diagnostics" in the trainer's metrics line (fields in docs/diagnostics.md).
//
//   quant::DeadZoneMonitor mon;                        // options: histogram, boundary width, k
//   if (step % log.diagnostics_every == 0) line["diagnostics"] = mon.measure(model, step);
//   Json c = quant::DeadZoneMonitor::bias_cosine(layer, x);          // needs the layer's input x
//   Json s = mon.gradient_snr(model, [&] { loss_and_backward(next_micro_batch()); }, 32);  // K
//   passes
//
// State between measure() calls: one byte per quantized weight (2-bit code + 6-bit "left the dead
// zone this many measurements ago"), kept per layer name.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "quant/quant.h"

namespace tq::quant {

struct DeadZoneOptions {
  int64_t hist_bins =
      40;  // histogram of r = |w|/Δ over [0, hist_max); the last bin takes r ≥ its start
  double hist_max = 4.0;
  double boundary_width = 0.05;  // boundary mass: P(|r − 1| < width)
  int64_t reentry_window = 1;    // k: a weight that left the dead zone and is back within k
                               // measurements counts as a re-entry (1 ≤ k ≤ 62)
  int64_t gsnr_max_samples =
      65536;  // gradient_snr: weights tracked per layer (strided sample; 0 = all)
  void validate() const;
};

class DeadZoneMonitor {
 public:
  explicit DeadZoneMonitor(DeadZoneOptions opts = {});

  // Walks every QuantLinear of `model` (named_modules) and aggregates per layer type (the last name
  // component: q_proj, ..., down_proj) and over all layers. The first call for a layer has no flip
  // statistics (null). Methods without a quantizer (none) are measured with AbsMean's dead zone.
  Json measure(const nn::Module& model, int64_t step);

  // Spec §11.6 for one layer and its input x [T, in] (or [..., in]): b^dep_j = λ·(1/T)·Σ_t
  // Σ_{i∈D_j} sign(x_ti)·w_ji against c_j = λ·Σ_{i∈D_j} w_ji: {"cosine", "cosine_token_mean",
  // "dep_norm", "bias_norm", "tokens"}. λ is the layer's cfg.lambda (it cancels in the cosines).
  static Json bias_cosine(const QuantLinear& layer, const Tensor& x);

  // GSNR of dead vs active weights (spec §11.1): calls model.zero_grad() then
  // compute_grads_one_microbatch() K times at fixed weights, and per tracked weight
  // GSNR = mean(g)² / ((1/K)·Σ_k (g_k − mean)² + 1e-30). Reports mean and median over the dead and
  // the active weights, per layer type and overall. Leaves the gradients of the last pass in the
  // model. Costs K forward+backward passes: call it between optimizer steps, on request.
  Json gradient_snr(nn::Module& model, const std::function<void()>& compute_grads_one_microbatch,
                    int K) const;

  const DeadZoneOptions& options() const { return opts_; }
  // Drops the per-layer state (the next measure() starts afresh).
  void reset() { state_.clear(); }

 private:
  struct LayerState {
    Shape shape;
    std::vector<uint8_t> packed;  // per weight: bits 0-1 code + 1, bits 2-7 age (0 = not tracked)
    int64_t reentered_total = 0, settled_total = 0;
  };
  DeadZoneOptions opts_;
  std::map<std::string, LayerState> state_;
};

// The layer type of a module name: its last dotted component ("model.layers.3.mlp.up_proj" →
// "up_proj").
std::string layer_type_of(const std::string& module_name);

}  // namespace tq::quant
