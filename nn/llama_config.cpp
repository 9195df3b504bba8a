#include "nn/llama_config.h"

namespace tq::nn {

namespace {

void parse_rope_scaling(const Json& rs, LlamaConfig& cfg, const std::string& ctx) {
  if (rs.is_null()) return;
  TQ_CHECK(rs.is_object(), "[config] {}: field 'rope_scaling' must be an object or null, got {}",
           ctx, json_kind(rs));
  std::string type;
  if (rs.contains("rope_type")) {
    type = json_get<std::string>(rs, "rope_type", ctx + " rope_scaling");
  } else {
    type = json_get<std::string>(rs, "type", ctx + " rope_scaling");
  }
  TQ_CHECK(type == "llama3" || type == "default",
           "[config] {}: field 'rope_scaling.rope_type' is '{}'; only 'llama3' and 'default' are "
           "supported — hint: linear/dynamic/yarn/longrope scaling is not implemented",
           ctx, type);
  const std::string sub = ctx + " rope_scaling";
  json_check_keys(rs,
                  {"rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
                   "original_max_position_embeddings"},
                  sub);
  cfg.rope.type = type;
  if (type == "llama3") {
    cfg.rope.factor = json_get<double>(rs, "factor", sub);
    cfg.rope.low_freq_factor = json_get<double>(rs, "low_freq_factor", sub);
    cfg.rope.high_freq_factor = json_get<double>(rs, "high_freq_factor", sub);
    cfg.rope.original_max_position_embeddings =
        json_get<int64_t>(rs, "original_max_position_embeddings", sub);
  }
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const Json& j, const std::string& source) {
  const std::string& ctx = source;
  TQ_CHECK(j.is_object(), "[config] {}: expected a JSON object, got {}", source, json_kind(j));
  json_check_keys(
      j,
      {// the math
       "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
       "num_key_value_heads", "head_dim", "max_position_embeddings", "bos_token_id", "eos_token_id",
       "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings",
       // checked below: accepted only with the value we implement
       "attention_bias", "mlp_bias", "hidden_act", "pretraining_tp", "attention_dropout",
       "model_type",
       // bookkeeping
       "architectures", "torch_dtype", "dtype", "transformers_version", "initializer_range",
       "use_cache", "pad_token_id", "quantization_config", "_name_or_path"},
      ctx);
  LlamaConfig c;
  c.vocab_size = json_get<int64_t>(j, "vocab_size", ctx);
  c.hidden_size = json_get<int64_t>(j, "hidden_size", ctx);
  c.intermediate_size = json_get<int64_t>(j, "intermediate_size", ctx);
  c.num_hidden_layers = json_get<int64_t>(j, "num_hidden_layers", ctx);
  c.num_attention_heads = json_get<int64_t>(j, "num_attention_heads", ctx);
  c.num_key_value_heads =
      json_get_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads, ctx);
  c.head_dim = json_get_or<int64_t>(j, "head_dim", 0, ctx);
  c.max_position_embeddings =
      json_get_or<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, ctx);
  c.bos_token_id = json_get_or<int64_t>(j, "bos_token_id", c.bos_token_id, ctx);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    c.eos_token_ids = json_as<std::vector<int64_t>>(j["eos_token_id"], "eos_token_id", ctx);
    TQ_CHECK(!c.eos_token_ids.empty(), "[config] {}: field 'eos_token_id' is an empty list", ctx);
    c.eos_token_id = c.eos_token_ids.front();
  } else {
    c.eos_token_id = json_get_or<int64_t>(j, "eos_token_id", c.eos_token_id, ctx);
    c.eos_token_ids = {c.eos_token_id};
  }
  c.rms_norm_eps = json_get_or<double>(j, "rms_norm_eps", c.rms_norm_eps, ctx);
  c.rope_theta = json_get_or<double>(j, "rope_theta", c.rope_theta, ctx);
  c.tie_word_embeddings = json_get_or<bool>(j, "tie_word_embeddings", false, ctx);
  if (j.contains("rope_scaling")) parse_rope_scaling(j["rope_scaling"], c, ctx);

  TQ_CHECK(!json_get_or<bool>(j, "attention_bias", false, ctx),
           "[config] {}: field 'attention_bias' is true; biased q/k/v/o projections are not "
           "supported",
           ctx);
  TQ_CHECK(!json_get_or<bool>(j, "mlp_bias", false, ctx),
           "[config] {}: field 'mlp_bias' is true; biased MLP projections are not supported", ctx);
  const auto act = json_get_or<std::string>(j, "hidden_act", "silu", ctx);
  TQ_CHECK(act == "silu", "[config] {}: field 'hidden_act' is '{}'; only 'silu' is supported", ctx,
           act);
  const auto tp = json_get_or<int64_t>(j, "pretraining_tp", 1, ctx);
  TQ_CHECK(tp == 1, "[config] {}: field 'pretraining_tp' is {}; only 1 is supported", ctx, tp);
  const auto drop = json_get_or<double>(j, "attention_dropout", 0.0, ctx);
  TQ_CHECK(drop == 0.0, "[config] {}: field 'attention_dropout' is {}; only 0 is supported", ctx,
           drop);
  const auto mt = json_get_or<std::string>(j, "model_type", "llama", ctx);
  TQ_CHECK(mt == "llama", "[config] {}: field 'model_type' is '{}'; only 'llama' is supported", ctx,
           mt);
  if (j.contains("quantization_config")) c.quantization_config = j["quantization_config"];
  c.validate(source);
  return c;
}

void LlamaConfig::validate(const std::string& source) const {
  auto positive = [&source](const char* field, int64_t v) {
    TQ_CHECK(v > 0, "[config] {}: field '{}' must be positive, got {}", source, field, v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("max_position_embeddings", max_position_embeddings);
  TQ_CHECK(num_key_value_heads >= 0 && head_dim >= 0,
           "[config] {}: negative num_key_value_heads ({}) or head_dim ({})", source,
           num_key_value_heads, head_dim);
  const int64_t kv = resolved_kv_heads();
  TQ_CHECK(num_attention_heads % kv == 0,
           "[config] {}: field 'num_key_value_heads' ({}) must divide num_attention_heads ({})",
           source, kv, num_attention_heads);
  if (head_dim == 0) {
    TQ_CHECK(hidden_size % num_attention_heads == 0,
             "[config] {}: field 'num_attention_heads' ({}) must divide hidden_size ({}) — hint: "
             "set head_dim explicitly",
             source, num_attention_heads, hidden_size);
  }
  const int64_t d = resolved_head_dim();
  TQ_CHECK(d > 0 && d % 2 == 0, "[config] {}: field 'head_dim' ({}) must be positive and even",
           source, d);
  TQ_CHECK(rms_norm_eps > 0, "[config] {}: field 'rms_norm_eps' must be positive, got {}", source,
           rms_norm_eps);
  TQ_CHECK(rope_theta > 0, "[config] {}: field 'rope_theta' must be positive, got {}", source,
           rope_theta);
  TQ_CHECK(rope.type == "default" || rope.type == "llama3",
           "[config] {}: field 'rope_scaling.rope_type' is '{}'; only 'llama3' and 'default' are "
           "supported",
           source, rope.type);
  if (rope.type == "llama3") {
    TQ_CHECK(rope.factor > 0 && rope.low_freq_factor > 0 &&
                 rope.high_freq_factor > rope.low_freq_factor &&
                 rope.original_max_position_embeddings > 0,
             "[config] {}: field 'rope_scaling' has invalid llama3 parameters (factor {}, "
             "low_freq_factor {}, high_freq_factor {}, original_max_position_embeddings {})",
             source, rope.factor, rope.low_freq_factor, rope.high_freq_factor,
             rope.original_max_position_embeddings);
  }
  TQ_CHECK(bos_token_id >= -1 && bos_token_id < vocab_size && eos_token_id >= -1 &&
               eos_token_id < vocab_size,
           "[config] {}: field 'bos_token_id' ({}) or 'eos_token_id' ({}) outside vocab_size {}",
           source, bos_token_id, eos_token_id, vocab_size);
}

autograd::RopeConfig LlamaConfig::rope_config() const {
  autograd::RopeConfig r = rope;
  r.theta = rope_theta;
  r.head_dim = resolved_head_dim();
  return r;
}

Json LlamaConfig::to_json() const {
  Json j;
  j["architectures"] = Json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = resolved_kv_heads();
  j["head_dim"] = resolved_head_dim();
  j["max_position_embeddings"] = max_position_embeddings;
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() > 1) {
    j["eos_token_id"] = eos_token_ids;
  } else {
    j["eos_token_id"] = eos_token_id;
  }
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope.type == "llama3") {
    j["rope_scaling"] =
        Json{{"rope_type", "llama3"},
             {"factor", rope.factor},
             {"low_freq_factor", rope.low_freq_factor},
             {"high_freq_factor", rope.high_freq_factor},
             {"original_max_position_embeddings", rope.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = "float32";
  if (!quantization_config.is_null()) j["quantization_config"] = quantization_config;
  return j;
}

}  // namespace tq::nn
