// Ternary quantization-aware training (spec §2–§5): static ternary quantizers (AbsMean, AbsMedian,
// TWN) at tensor / channel / group granularity, and QuantLinear, a drop-in nn::Linear whose
// forward uses the ternary weights t∘α with one of the QAT methods
//   none | absmean | absmedian | twn | minima | tequila | tequila_nomix | lsq | seq.
// lsq and seq learn one scale α per output channel, the parameter `weight_scale` [out] next to
// `weight` (initialised to the row's max|w|; see docs/quant.md, "LSQ and SEQ").
//
//   QuantConfig cfg;                      // tequila, group 128, λ = 1e-3
//   quantize_model(model, cfg);           // swaps q/k/v/o/gate/up/down projections in place
//   ... train: parameters keep their HF names (`...q_proj.weight`, latent f32 [out, in]) ...
//   TernaryView v = ql.export_ternary();  // codes, α per (row, group), bias c for deployment
//
// See docs/quant.md for the formulas and the choices made where the spec leaves room.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/layers.h"
#include "nn/llama.h"

namespace tq::quant {

enum class Granularity { tensor, channel, group };
enum class Quantizer { absmean, absmedian, twn };

// Result of quantizing W [out, in]: codes t ∈ {-1, 0, 1} (i8 [out, in]); alpha [out, n_groups]
// (group: in / G groups; channel: 1; tensor: [1, 1]); dead u8 [out, in] (1 where t == 0);
// bias [out] = lambda · Σ_{dead i} W[j, i] (c_j). alpha and bias have W's dtype (f32 or f64).
// delta has alpha's shape: the threshold Δ of each group (|w| ≥ Δ is active; lsq α/2, seq α/3).
struct TernaryView {
  Tensor codes, alpha, dead, bias;
  Tensor delta;
  Granularity granularity = Granularity::group;
  int64_t group_size = 0;  // elements per group along `in` (channel: in; tensor: in as well)
};

// Quantizes w (f32 or f64 [out, in]). Group granularity needs in % group_size == 0.
TernaryView quantize_ternary(const Tensor& w /*[out, in]*/, Quantizer q, Granularity g,
                             int64_t group_size, double lambda);
// t∘α as a dense [out, in] tensor of alpha's dtype.
Tensor dequantize(const TernaryView& v);

struct QuantConfig {
  // none | absmean | absmedian | twn | minima | tequila | tequila_nomix | lsq | seq
  std::string method = "tequila";
  Granularity granularity = Granularity::group;
  int64_t group_size = 128;
  double lambda = 1e-3;  // tequila, tequila_nomix
  double minima_eps = 1e-3;
  std::string minima_grad = "paper";  // paper | code
  // lsq, seq: N of the α gradient scale g = 1/√(N·Q_p): "row" (N = in_features, the elements
  // sharing one α; default) or "tensor" (N = out·in, what ParetoQ's code uses for per-row α).
  std::string scale_grad = "row";
  std::vector<std::string> layers = {"q_proj", "k_proj",    "v_proj",   "o_proj",
                                     "gate_proj", "up_proj", "down_proj"};
  // Throws tq::Error naming the offending field. lsq/seq require granularity channel.
  void validate() const;
};

// True for the methods with a learnable per-channel scale (lsq, seq).
bool method_is_learnable(const std::string& method);
// Name of the learnable scale parameter of QuantLinear ("weight_scale", [out]).
inline constexpr const char* kScaleParamName = "weight_scale";
// α is floored at this value in the forward and backward (ParetoQ's eps); the gradient still
// reaches the stored α unchanged.
inline constexpr double kScaleFloor = 1e-5;
// The initial learnable scale: max|w| of every row of w [out, in] -> [out], w's dtype.
Tensor learnable_scale_init(const Tensor& w /*[out, in]*/);
// The deployment view of a learnable method: codes t ∈ {-1,0,1}, alpha [out, 1] the ternary scale
// (lsq: max(α, floor); seq: max(α, floor)·2/3), dead = (t == 0), bias zeros [out], delta [out, 1]
// the dead-zone edge (lsq α/2, seq α/3; exact ties round to 0); granularity channel. scale is [out] (or [out, 1]) of w's dtype.
TernaryView quantize_learnable(const Tensor& w /*[out, in]*/, const Tensor& scale /*[out]*/,
                               const std::string& method);

Granularity parse_granularity(const std::string& s);  // tensor | channel | group
const char* granularity_name(Granularity g);
Quantizer parse_quantizer(const std::string& s);  // absmean | absmedian | twn
const char* quantizer_name(Quantizer q);
// The quantizer a method uses: absmedian → AbsMedian, twn → TWN, every other method → AbsMean.
Quantizer method_quantizer(const std::string& method);

// Functional form of the QuantLinear forward (and its recorded backward): y = x·(t∘α)ᵀ + method
// terms. x [..., in], weight [out, in], both f32 or both f64. Exposed for tests and benchmarks.
autograd::Var quant_linear(const autograd::Var& x, const autograd::Var& weight,
                           const QuantConfig& cfg);
// The same, with a workspace for t∘α ([out, in]) reused from call to call when nothing else holds it
// any more (the previous backward ran): saves allocating and first-touching out·in floats per step.
autograd::Var quant_linear(const autograd::Var& x, const autograd::Var& weight, const QuantConfig& cfg,
                           Tensor* workspace);
// The learnable-scale methods (cfg.method lsq or seq): y = x·Q(W, α)ᵀ with α = scale [out], all three
// of x, weight and scale differentiable (formulas in docs/quant.md). Other methods ignore `scale`.
autograd::Var quant_linear(const autograd::Var& x, const autograd::Var& weight,
                           const autograd::Var& scale /*[out]*/, const QuantConfig& cfg,
                           Tensor* workspace = nullptr);

class QuantLinear : public nn::Linear {
 public:
  // A fresh layer with a zero latent weight (like nn::Linear); no bias. Validates cfg and, for
  // group granularity, in_features % group_size == 0. lsq/seq also register `weight_scale` [out]
  // (zeros until init_weight_scale(), init_parameters() or load_state_dict()).
  QuantLinear(int64_t in_features, int64_t out_features, const QuantConfig& cfg);
  // A QuantLinear whose latent weight shares the storage of `linear`'s weight (no copy). The
  // weight Var itself is a new one: build optimizers after quantize_model. `linear` must have no
  // bias.
  // For lsq/seq the scale is initialised from the shared weight (max|w| per row).
  static std::shared_ptr<QuantLinear> from_linear(const nn::Linear& linear, const QuantConfig& cfg);

  const char* type_name() const override { return "QuantLinear"; }
  autograd::Var forward(const autograd::Var& x /*[..., in]*/) const override;
  // Not safe to call concurrently on one layer (it reuses a t∘α workspace); see quant_linear.
  // The deployment view of the current latent weight: codes, α, dead mask and bias c (c = 0 for
  // methods without a bias: none/absmean/absmedian/twn/minima).
  TernaryView export_ternary() const;
  const QuantConfig& config() const { return cfg_; }
  // lsq/seq: the learnable α [out] (parameter `weight_scale`); undefined for the other methods.
  const autograd::Var& weight_scale() const { return weight_scale_; }
  // lsq/seq: α ← max|w| of each row of the current weight (no-op for the other methods).
  void init_weight_scale();
  // weight ~ N(0, stddev²), then (lsq/seq) α from it.
  void init_parameters(Rng& rng, double stddev) override;

 private:
  QuantConfig cfg_;
  autograd::Var weight_scale_;  // [out], lsq/seq only
  mutable Tensor deq_workspace_;  // t∘α buffer reused across steps
};

// Swaps every nn::Linear (not already a QuantLinear) whose last name component is in cfg.layers for
// a QuantLinear sharing its weight; returns the number swapped. Everything is validated before the
// first swap (lsq/seq: granularity must be channel, checked by cfg.validate()). With method "none" it still swaps (the QuantLinear then behaves as nn::Linear).
int64_t quantize_model(nn::Module& model, const QuantConfig& cfg);

// An HF checkpoint directory loaded into a LLaMA quantized with cfg: the model is built from
// dir/config.json, quantize_model(cfg) swaps its projections, then the weights load strictly (the
// tensors HF ignores are dropped as in nn::load_llama). For lsq/seq a checkpoint without any
// `*.weight_scale` (a plain HF model) starts from α = max|w| per row; one written by save_llama after
// QAT restores the saved α. Either all scales are present or none.
std::unique_ptr<nn::LlamaForCausalLM> load_quantized_llama(const std::string& dir, const QuantConfig& cfg);

}  // namespace tq::quant
