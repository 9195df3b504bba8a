#include "nn/llama.h"

#include "autograd/cross_entropy.h"
#include "autograd/ops.h"
#include "autograd/swiglu.h"

namespace tq::nn {

using autograd::Var;

LlamaMLP::LlamaMLP(const LlamaConfig& cfg) {
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size;
  register_module("gate_proj", std::make_shared<Linear>(C, F));
  register_module("up_proj", std::make_shared<Linear>(C, F));
  register_module("down_proj", std::make_shared<Linear>(F, C));
}

Var LlamaMLP::forward(const Var& x) const {
  Var gate = child<Linear>("gate_proj").forward(x);
  Var up = child<Linear>("up_proj").forward(x);
  return child<Linear>("down_proj").forward(autograd::swiglu(gate, up));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& cfg) {
  register_module("self_attn", std::make_shared<LlamaAttention>(cfg));
  register_module("mlp", std::make_shared<LlamaMLP>(cfg));
  register_module("input_layernorm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps));
  register_module("post_attention_layernorm",
                  std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps));
}

Var LlamaDecoderLayer::forward(const Var& x, int64_t pos0) const {
  Var h = autograd::add(x, child<LlamaAttention>("self_attn")
                               .forward(child<RMSNorm>("input_layernorm").forward(x), pos0));
  return autograd::add(
      h, child<LlamaMLP>("mlp").forward(child<RMSNorm>("post_attention_layernorm").forward(h)));
}

LlamaModel::LlamaModel(const LlamaConfig& cfg) {
  register_module("embed_tokens", std::make_shared<Embedding>(cfg.vocab_size, cfg.hidden_size));
  auto layers = std::make_shared<ModuleList>();
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    layers->push_back(std::make_shared<LlamaDecoderLayer>(cfg));
  }
  register_module("layers", layers);
  register_module("norm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps));
}

Var LlamaModel::forward(const Tensor& ids, int64_t pos0) const {
  TQ_CHECK(ids.dim() == 2 && ids.dtype() == DType::i32,
           "[LlamaModel] ids must be i32 [B, T], got {}", ids.str());
  TQ_CHECK(pos0 >= 0, "[LlamaModel] negative pos0 {}", pos0);
  Var h = embed_tokens().forward(ids);  // [B, T, C]
  const ModuleList& ls = layers();
  for (int64_t l = 0; l < ls.size(); ++l) h = ls.at<LlamaDecoderLayer>(l).forward(h, pos0);
  return child<RMSNorm>("norm").forward(h);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& cfg) : cfg_(cfg) {
  cfg_.validate("LlamaForCausalLM");
  register_module("model", std::make_shared<LlamaModel>(cfg_));
  if (!cfg_.tie_word_embeddings) {
    register_module("lm_head", std::make_shared<Linear>(cfg_.hidden_size, cfg_.vocab_size));
  }
}

void LlamaForCausalLM::init_weights(Rng& rng, double stddev) {
  init_parameters(rng, stddev);
}

Var LlamaForCausalLM::lm_head_weight() const {
  if (cfg_.tie_word_embeddings) return model().embed_tokens().weight();
  return child<Linear>("lm_head").weight();
}

Var LlamaForCausalLM::hidden_states(const Tensor& ids, int64_t pos0) const {
  return model().forward(ids, pos0);
}

Var LlamaForCausalLM::forward(const Tensor& ids, int64_t pos0) const {
  Var h = hidden_states(ids, pos0);
  if (cfg_.tie_word_embeddings) return autograd::linear(h, lm_head_weight());
  return child<Linear>("lm_head").forward(h);
}

Var LlamaForCausalLM::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) const {
  TQ_CHECK(targets.dtype() == DType::i32 && targets.shape() == ids.shape(),
           "[LlamaForCausalLM::loss] targets {} must be i32 with the shape of ids {}",
           targets.str(), ids.str());
  Var logits = forward(ids, 0);  // [B, T, V]
  const int64_t V = cfg_.vocab_size;
  return autograd::cross_entropy(autograd::reshape(logits, {-1, V}), targets.reshape({-1}),
                                 ignore_index);
}

}  // namespace tq::nn
