// The LLaMA model in HF's module layout, so named_parameters() yields HF's keys:
//   model.embed_tokens.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
//   model.layers.N.mlp.{gate,up,down}_proj.weight, model.layers.N.{input,post_attention}_layernorm
//   .weight, model.norm.weight, lm_head.weight (absent with tie_word_embeddings: the LM head then
//   reads the embedding Var itself, so gradients from both uses accumulate into one tensor).
//
//   LlamaForCausalLM m(cfg);  m.init_weights(rng);        // or load_llama(dir), nn/hf_checkpoint.h
//   Var logits = m.forward(ids /*i32 [B, T]*/);          // [B, T, V]
//   Var loss = m.loss(ids, targets);                      // mean cross-entropy, scalar
//
// Legend: B batch, T time, C hidden, F FFN width, V vocab, L layers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/rng.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/llama_config.h"

namespace tq::nn {

// down(silu(gate(x)) ∘ up(x)) with the fused autograd::swiglu.
class LlamaMLP : public Module {
 public:
  explicit LlamaMLP(const LlamaConfig& cfg);
  const char* type_name() const override { return "LlamaMLP"; }
  autograd::Var forward(const autograd::Var& x /*[..., C]*/) const;
};

// Pre-norm block: h = x + attn(norm1(x)); y = h + mlp(norm2(h)).
class LlamaDecoderLayer : public Module {
 public:
  explicit LlamaDecoderLayer(const LlamaConfig& cfg);
  const char* type_name() const override { return "LlamaDecoderLayer"; }
  autograd::Var forward(const autograd::Var& x /*[B, T, C]*/, int64_t pos0) const;
};

// Embedding, L decoder layers and the final norm: ids [B, T] -> hidden states [B, T, C].
class LlamaModel : public Module {
 public:
  explicit LlamaModel(const LlamaConfig& cfg);
  const char* type_name() const override { return "LlamaModel"; }
  autograd::Var forward(const Tensor& ids /*i32 [B, T]*/, int64_t pos0 = 0) const;
  const Embedding& embed_tokens() const { return child<Embedding>("embed_tokens"); }
  const ModuleList& layers() const { return child<ModuleList>("layers"); }
};

class LlamaForCausalLM : public Module {
 public:
  explicit LlamaForCausalLM(const LlamaConfig& cfg);  // weights zero (norms one) until init/load
  const char* type_name() const override { return "LlamaForCausalLM"; }
  // Linears and the embedding ~ N(0, stddev²), norms ones (HF _init_weights).
  void init_weights(Rng& rng, double stddev = 0.02);
  const LlamaConfig& config() const { return cfg_; }
  const LlamaModel& model() const { return child<LlamaModel>("model"); }
  // The LM head weight [V, C]: lm_head.weight, or model.embed_tokens.weight when tied.
  autograd::Var lm_head_weight() const;

  autograd::Var hidden_states(const Tensor& ids /*i32 [B, T]*/, int64_t pos0 = 0) const;
  autograd::Var forward(const Tensor& ids /*i32 [B, T]*/, int64_t pos0 = 0) const;  // [B, T, V]
  // Mean cross-entropy over targets != ignore_index (targets are already shifted: the target of
  // ids[b, t] is targets[b, t]).
  autograd::Var loss(const Tensor& ids /*i32 [B, T]*/, const Tensor& targets /*i32 [B, T]*/,
                     int64_t ignore_index = -100) const;

 private:
  LlamaConfig cfg_;
};

// HF checkpoint import/export (defined in nn/hf_checkpoint.cpp; details in nn/hf_checkpoint.h).
// load_llama: dir/config.json + dir/model.safetensors, or the shards listed in
// dir/model.safetensors.index.json; bf16/f16/f32/f64 weights are converted to f32.
std::unique_ptr<LlamaForCausalLM> load_llama(const std::string& dir);
// save_llama: dir/config.json + dir/model.safetensors (f32, no lm_head.weight when tied).
void save_llama(const LlamaForCausalLM& model, const std::string& dir);

}  // namespace tq::nn
