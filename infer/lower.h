// lower(): a trained LLaMA (in memory, or a checkpoint directory) -> an inference Engine.
//
//   auto eng = infer::lower(model);                    // QuantLinear projections -> packed ternary
//   auto eng = infer::load_engine("runs/x/ckpt-500");  // dir: config.json (+ quantization_config)
//   auto eng = infer::load_engine("model.tqpk");       // a packed file (infer/packed_model.h)
//
// Projections that are quant::QuantLinear (method != none) become packed ternary matrices (codes,
// α per (row, 128-group) as f16, Tequila bias c per row); plain nn::Linear become dense f32 / bf16.
// q|k|v and gate|up must each be all ternary or all dense. See docs/infer.md.
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "infer/engine.h"
#include "nn/llama.h"
#include "quant/quant.h"

namespace tq::infer {

// The plan only (what lower() hands to Engine and save_packed writes).
EnginePlan lower_plan(const nn::LlamaForCausalLM& model, const EngineOptions& opts = {});
std::unique_ptr<Engine> lower(const nn::LlamaForCausalLM& model, const EngineOptions& opts = {});

// A plan of the config's shape with random weights, for speed measurements at real sizes without
// a model (e.g. LLaMA-3.2-1B-shaped): ternary codes uniform over {-1, 0, 1}, α = 0.02, bias 0.001;
// or (ternary = false) dense weights ~ U(-0.02, 0.02) in opts.dense_dtype. Norms are ones, the
// embedding U(-0.05, 0.05), the LM head as opts.lm_head. Deterministic in `seed`.
EnginePlan random_plan(const nn::LlamaConfig& cfg, const EngineOptions& opts, uint64_t seed,
                       bool ternary = true);

// A packed model file (see infer/packed_model.h) or a checkpoint / HF directory: nn::load_llama,
// then quant::quantize_model with the config's quantization_config when present, then lower().
std::unique_ptr<Engine> load_engine(const std::string& path_or_dir, const EngineOptions& opts = {});

// The `quantization_config` block of config.json as train/checkpoint.cpp writes it:
// {"quant_method": "tequila", "method", "bits": 1.58, "granularity", "group_size", "lambda",
// "modules_to_quantize"}; also accepted: a lone "quant_method" naming the method, "layers" for
// "modules_to_quantize", "minima_eps", "minima_grad". Absent fields keep QuantConfig's defaults;
// unknown fields are errors naming `source`.
quant::QuantConfig quant_config_from_json(const Json& j, const std::string& source);
Json quant_config_to_json(const quant::QuantConfig& c);

}  // namespace tq::infer
