// The training graph (nn::LlamaForCausalLM, full precision or fake-quant when its projections are
// quant::QuantLinear) behind the infer::LanguageModel interface: the `--fp` path of tqinfer and the
// correctness reference for the packed engine. It keeps the token context and recomputes the forward
// over the whole context on every call (no KV cache), so decode is O(T²) — fine for the reference.
//
//   auto model = infer::load_model_for_inference("runs/tequila-small/latest");  // QuantLinear if the
//   auto lm = infer::make_fp_model(model);                  // config has a quantization_config block
//   lm->forward(ids.data(), n, logits.data(), /*all_logits=*/true);   // [n, V]
//
// quantization_config in config.json (parsed by quant_config_from_json in infer/lower.h, shared with the engine):
//   {"quant_method" (or "method"): "tequila", "granularity": "group", "group_size": 128,
//    "lambda": 0.001, "layers": ["q_proj", ...], "minima_eps": 0.001, "minima_grad": "paper"}
// Absent fields keep QuantConfig's defaults; unknown fields are errors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/json.h"
#include "infer/language_model.h"
#include "nn/llama.h"
#include "quant/quant.h"

namespace tq::infer {

// The adaptor. max_context() is the config's max_position_embeddings.
std::unique_ptr<LanguageModel> make_fp_model(std::shared_ptr<const nn::LlamaForCausalLM> model);

// nn::load_llama(dir), then — when config.json has a quantization_config block — quant::quantize_model
// with the QuantConfig it describes, so the model computes the fake-quant (ternary) forward.
std::shared_ptr<nn::LlamaForCausalLM> load_model_for_inference(const std::string& dir);

// Bytes of every parameter tensor (what one forward reads, for bench's bytes-per-token figure).
int64_t parameter_bytes(const nn::Module& model);

}  // namespace tq::infer
