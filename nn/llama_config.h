// LlamaConfig: the model hyper-parameters under their HF config.json names, parsed strictly.
//
//   LlamaConfig cfg = LlamaConfig::from_json(read_json_file(path), path);  // validates
//   write_json_file(dir + "/config.json", cfg.to_json());
//
// Fields that change the math and that we do not implement (attention_bias / mlp_bias true,
// hidden_act other than silu, pretraining_tp != 1, a rope_scaling type other than llama3/default)
// are errors, as are unknown fields (a typo must not fall back to a default). Harmless HF
// bookkeeping fields are accepted; quantization_config is kept verbatim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/rope.h"
#include "core/json.h"

namespace tq::nn {

struct LlamaConfig {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0,
          num_attention_heads = 0, num_key_value_heads = 0,
          head_dim = 0 /*0 -> hidden_size / num_attention_heads*/, max_position_embeddings = 2048,
          bos_token_id = 1, eos_token_id = 2;
  // Every eos id when config.json lists several (Llama 3 instruct); eos_token_id is the first.
  std::vector<int64_t> eos_token_ids;
  double rms_norm_eps = 1e-5, rope_theta = 10000.0;
  // From rope_theta + rope_scaling. The model uses rope_config(), which takes theta from
  // rope_theta and head_dim from resolved_head_dim(), so only type/factor/... matter here.
  autograd::RopeConfig rope;
  bool tie_word_embeddings = false;
  Json quantization_config;  // null when absent; kept raw for quant/

  // Parses and validates; errors name `source` and the field.
  static LlamaConfig from_json(const Json& j, const std::string& source);
  Json to_json() const;
  // Positive sizes, num_key_value_heads divides num_attention_heads, even head_dim, ...
  void validate(const std::string& source) const;

  int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim
                        : (num_attention_heads > 0 ? hidden_size / num_attention_heads : 0);
  }
  int64_t resolved_kv_heads() const {
    return num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads;
  }
  autograd::RopeConfig rope_config() const;
};

}  // namespace tq::nn
