// Tests nn/llama.cpp and nn/llama_config.cpp: the exact HF key list (tied and untied), config
// parsing and its errors, forward/loss shapes, causality, tied-gradient accumulation and a
// 128,257-token tied vocabulary.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "autograd/cross_entropy.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "nn/llama.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::nn;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

LlamaConfig tiny_config(bool tied, int64_t layers = 2, int64_t vocab = 50) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

std::vector<std::string> hf_keys(int64_t layers, bool tied) {
  std::vector<std::string> k = {"model.embed_tokens.weight"};
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* s :
         {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
          "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
          "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"}) {
      k.push_back(p + s);
    }
  }
  k.push_back("model.norm.weight");
  if (!tied) k.push_back("lm_head.weight");
  return k;
}

Tensor random_ids(Rng& rng, int64_t B, int64_t T, int64_t V) {
  Tensor ids = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) {
    ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  }
  return ids;
}

Json base_json() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "attention_bias": false, "mlp_bias": false, "pretraining_tp": 1, "attention_dropout": 0.0,
    "torch_dtype": "bfloat16", "transformers_version": "4.45.0", "initializer_range": 0.02,
    "use_cache": true, "pad_token_id": null,
    "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009]})");
}

}  // namespace

TEST_CASE("LlamaForCausalLM parameter names are exactly HF's (untied and tied)") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    LlamaForCausalLM m(tiny_config(tied));
    std::vector<std::string> names;
    for (const auto& [n, p] : m.named_parameters()) names.push_back(n);
    CHECK(names == hf_keys(2, tied));
    const auto sd = m.state_dict();
    CHECK(sd.size() == names.size());
    CHECK(sd.front().second.shape() == Shape{50, 32});
    CHECK(m.lm_head_weight().impl() ==
          (tied ? m.model().embed_tokens().weight().impl() : m.lm_head_weight().impl()));
  }
  // Shapes of a GQA layer: q [H*D, C], k/v [Hkv*D, C], o [C, H*D], MLP [F, C] / [C, F].
  LlamaForCausalLM m(tiny_config(false, 1));
  std::map<std::string, Shape> shapes;
  for (const auto& [n, p] : m.named_parameters()) shapes[n] = p.shape();
  CHECK(shapes["model.layers.0.self_attn.q_proj.weight"] == Shape{32, 32});
  CHECK(shapes["model.layers.0.self_attn.k_proj.weight"] == Shape{16, 32});
  CHECK(shapes["model.layers.0.self_attn.o_proj.weight"] == Shape{32, 32});
  CHECK(shapes["model.layers.0.mlp.down_proj.weight"] == Shape{32, 48});
  CHECK(shapes["lm_head.weight"] == Shape{50, 32});
}

TEST_CASE("head_dim from the config overrides hidden/heads") {
  LlamaConfig c = tiny_config(true, 1);
  c.head_dim = 16;  // H*D = 64 != C = 32
  LlamaForCausalLM m(c);
  std::map<std::string, Shape> shapes;
  for (const auto& [n, p] : m.named_parameters()) shapes[n] = p.shape();
  CHECK(shapes["model.layers.0.self_attn.q_proj.weight"] == Shape{64, 32});
  CHECK(shapes["model.layers.0.self_attn.o_proj.weight"] == Shape{32, 64});
  Rng rng = make_rng(3);
  m.init_weights(rng);
  CHECK(m.forward(random_ids(rng, 1, 5, 50)).shape() == Shape{1, 5, 50});
}

TEST_CASE("LlamaConfig::from_json reads a Llama-3.2-1B config and round-trips") {
  const LlamaConfig c = LlamaConfig::from_json(base_json(), "config.json");
  CHECK(c.vocab_size == 128256);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.head_dim == 64);
  CHECK(c.rope.type == "llama3");
  CHECK(c.rope.factor == 32.0);
  CHECK(c.rope_config().theta == 500000.0);
  CHECK(c.rope_config().head_dim == 64);
  CHECK(c.tie_word_embeddings);
  CHECK(c.eos_token_id == 128001);
  CHECK(c.eos_token_ids.size() == 3);
  const LlamaConfig c2 = LlamaConfig::from_json(c.to_json(), "roundtrip");
  CHECK(c2.to_json() == c.to_json());
  CHECK(c2.rope.original_max_position_embeddings == 8192);

  // Absent optional fields take HF defaults: num_key_value_heads = heads, head_dim = C / H.
  Json j = base_json();
  j.erase("num_key_value_heads");
  j.erase("head_dim");
  j.erase("rope_scaling");
  const LlamaConfig c3 = LlamaConfig::from_json(j, "config.json");
  CHECK(c3.resolved_kv_heads() == 32);
  CHECK(c3.resolved_head_dim() == 64);
  CHECK(c3.rope.type == "default");
  // quantization_config is kept verbatim.
  j["quantization_config"] = Json{{"quant_method", "tequila"}};
  CHECK(LlamaConfig::from_json(j, "c").to_json()["quantization_config"]["quant_method"] ==
        "tequila");
}

TEST_CASE("LlamaConfig errors name the source and the field") {
  auto err_with = [](const std::string& key, const Json& value) {
    Json j = base_json();
    j[key] = value;
    return error_of([&] { LlamaConfig::from_json(j, "ckpt/config.json"); });
  };
  std::string e = err_with("num_key_value_heads", 5);
  CHECK(e.find("ckpt/config.json") != std::string::npos);
  CHECK(e.find("num_key_value_heads") != std::string::npos);
  CHECK(e.find("must divide") != std::string::npos);

  e = err_with("rope_scaling", Json{{"rope_type", "yarn"}, {"factor", 4.0}});
  CHECK(e.find("rope_type") != std::string::npos);
  CHECK(e.find("yarn") != std::string::npos);

  e = err_with("attention_bias", true);
  CHECK(e.find("attention_bias") != std::string::npos);
  CHECK(e.find("ckpt/config.json") != std::string::npos);
  CHECK(err_with("mlp_bias", true).find("mlp_bias") != std::string::npos);
  CHECK(err_with("hidden_act", "gelu").find("hidden_act") != std::string::npos);
  CHECK(err_with("hiden_size", 4).find("hiden_size") != std::string::npos);  // unknown field
  CHECK(err_with("hidden_size", "big").find("hidden_size") != std::string::npos);
  CHECK(err_with("head_dim", 63).find("head_dim") != std::string::npos);

  Json j = base_json();
  j.erase("head_dim");
  j["num_attention_heads"] = 24;  // does not divide 2048
  j["num_key_value_heads"] = 8;
  e = error_of([&] { LlamaConfig::from_json(j, "c.json"); });
  CHECK(e.find("num_attention_heads") != std::string::npos);
  j.erase("vocab_size");
  CHECK(error_of([&] { LlamaConfig::from_json(j, "c.json"); }).find("vocab_size") !=
        std::string::npos);
}

TEST_CASE("forward gives [B, T, V] logits; loss is the mean cross-entropy of them") {
  LlamaForCausalLM m(tiny_config(false));
  Rng rng = make_rng(1);
  m.init_weights(rng, 0.1);
  const Tensor ids = random_ids(rng, 2, 7, 50);
  Tensor targets = random_ids(rng, 2, 7, 50);
  targets.data<int32_t>()[3] = -100;
  const autograd::Var logits = m.forward(ids);
  CHECK(logits.shape() == Shape{2, 7, 50});
  const double want =
      autograd::cross_entropy_composed(autograd::reshape(logits, {14, 50}), targets.reshape({14}))
          .value()
          .item();
  CHECK(m.loss(ids, targets).value().item() == doctest::Approx(want).epsilon(1e-6));
  CHECK(error_of([&] { m.forward(Tensor::zeros({2, 3})); }).find("i32") != std::string::npos);
}

TEST_CASE("the model is causal: a prefix's logits do not depend on later tokens") {
  LlamaConfig c = tiny_config(true);
  c.rope.type = "llama3";
  c.rope.factor = 8;
  c.rope.original_max_position_embeddings = 16;
  LlamaForCausalLM m(c);
  Rng rng = make_rng(2);
  m.init_weights(rng, 0.2);
  const Tensor ids = random_ids(rng, 1, 9, 50);
  const Tensor full = m.forward(ids).value();
  const Tensor prefix = m.forward(ids.slice(1, 0, 4).contiguous()).value();
  TQ_CHECK_CLOSE(full.slice(1, 0, 4), prefix, 1e-5, 1e-6);
  // pos0 shifts every position; RoPE scores depend only on relative positions, so without a KV
  // cache the logits are unchanged up to rounding.
  const Tensor at0 = m.forward(ids.slice(1, 4, 9).contiguous(), 0).value();
  const Tensor at4 = m.forward(ids.slice(1, 4, 9).contiguous(), 4).value();
  TQ_CHECK_CLOSE(at0, at4, 1e-4, 1e-5);
}

TEST_CASE("tied embeddings accumulate gradients from the embedding and the LM head") {
  Rng rng = make_rng(4);
  LlamaForCausalLM tied(tiny_config(true, 1));
  tied.init_weights(rng, 0.1);
  LlamaForCausalLM untied(tiny_config(false, 1));
  std::map<std::string, Tensor> sd;
  for (const auto& [n, t] : tied.state_dict()) sd[n] = t;
  sd["lm_head.weight"] = sd["model.embed_tokens.weight"];
  untied.load_state_dict(sd, true, "copy");

  const Tensor ids = random_ids(rng, 2, 6, 50);
  const Tensor targets = random_ids(rng, 2, 6, 50);
  auto run = [&](const LlamaForCausalLM& m) {
    autograd::Tape tape;
    autograd::RecordScope rec(tape);
    const autograd::Var loss = m.loss(ids, targets);
    tape.backward(loss);
    return loss.value().item();
  };
  CHECK(run(tied) == doctest::Approx(run(untied)).epsilon(1e-6));
  const Tensor g_tied = tied.model().embed_tokens().weight().grad();
  const Tensor g_emb = untied.model().embed_tokens().weight().grad();
  const Tensor g_head = untied.lm_head_weight().grad();
  Tensor sum = Tensor::empty(g_emb.shape());
  for (int64_t i = 0; i < sum.numel(); ++i)
    sum.data<float>()[i] = float(g_emb.flat(i) + g_head.flat(i));
  TQ_CHECK_CLOSE(g_tied, sum, 1e-4, 1e-6);
  // Every parameter received a gradient.
  for (const auto& [n, p] : tied.named_parameters()) {
    CAPTURE(n);
    CHECK(p.has_grad());
  }
  tied.zero_grad();
  CHECK_FALSE(tied.model().embed_tokens().weight().has_grad());
}

TEST_CASE("a tied 128,257-token vocabulary works (hidden 64)") {
  LlamaConfig c = tiny_config(true, 1, 128257);
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 1;
  c.bos_token_id = 128000;
  c.eos_token_id = 128256;
  LlamaForCausalLM m(c);
  Rng rng = make_rng(5);
  m.init_weights(rng);
  Tensor ids = random_ids(rng, 1, 4, 128257);
  ids.data<int32_t>()[0] = 128256;  // the last id
  Tensor targets = random_ids(rng, 1, 4, 128257);
  autograd::Tape tape;
  autograd::RecordScope rec(tape);
  const autograd::Var loss = m.loss(ids, targets);
  CHECK(loss.value().item() == doctest::Approx(std::log(128257.0)).epsilon(0.01));
  tape.backward(loss);
  CHECK(m.model().embed_tokens().weight().grad().shape() == Shape{128257, 64});
  CHECK(m.num_parameters() == 128257 * 64 + (64 * 64 * 2 + 16 * 64 * 2) + 3 * 64 * 96 + 3 * 64);
}
