// Tests nn/hf_checkpoint.cpp: save -> load round trips (tied and untied), bf16/f16 weights,
// sharded checkpoints with an index, dropped HF-only tensors, and errors that name the file.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "nn/hf_checkpoint.h"
#include "nn/llama.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace tq;
using namespace tq::nn;
using tq::test::error_of;
using tq::test::make_rng;
using tq::test::TempDir;

namespace {

LlamaConfig small_config(bool tied) {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rope_theta = 500000;
  c.rope.type = "llama3";
  c.rope.factor = 32;
  c.rope.original_max_position_embeddings = 8192;
  c.tie_word_embeddings = tied;
  return c;
}

std::unique_ptr<LlamaForCausalLM> random_model(bool tied, uint64_t salt) {
  auto m = std::make_unique<LlamaForCausalLM>(small_config(tied));
  Rng rng = make_rng(salt);
  m->init_weights(rng, 0.1);
  return m;
}

Tensor ids_0_to(int64_t T) {
  Tensor ids = Tensor::empty({1, T}, DType::i32);
  for (int64_t t = 0; t < T; ++t) ids.data<int32_t>()[t] = static_cast<int32_t>((t * 7) % 40);
  return ids;
}

void check_same_weights(const LlamaForCausalLM& a, const LlamaForCausalLM& b, double rtol,
                        double atol = 0.0) {
  const auto sa = a.state_dict();
  const auto sb = b.state_dict();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CAPTURE(sa[i].first);
    CHECK(sa[i].first == sb[i].first);
    TQ_CHECK_CLOSE(sb[i].second, sa[i].second, rtol, atol);
  }
}

void write_config(const LlamaForCausalLM& m, const std::string& dir) {
  write_json_file(dir + "/config.json", m.config().to_json());
}

}  // namespace

TEST_CASE("save_llama -> load_llama round-trips exactly (untied and tied)") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    TempDir dir("nn_roundtrip");
    const auto m = random_model(tied, 10);
    save_llama(*m, dir.path.string());
    const SafetensorsFile f = SafetensorsFile::open(dir.file("model.safetensors"));
    CHECK(f.contains("lm_head.weight") == !tied);
    CHECK(f.info("model.embed_tokens.weight").st_dtype == "F32");
    const auto back = load_llama(dir.path.string());
    CHECK(back->config().to_json() == m->config().to_json());
    check_same_weights(*m, *back, 0.0);
    CHECK(max_abs_diff(m->forward(ids_0_to(6)).value(), back->forward(ids_0_to(6)).value()) == 0.0);
    // Loaded parameters own writable memory (not the file mapping).
    for (const auto& [n, p] : back->named_parameters()) {
      CAPTURE(n);
      CHECK_FALSE(p.value().storage()->read_only());
    }
    // And it saves again over itself.
    save_llama(*back, dir.path.string());
    check_same_weights(*m, *load_llama(dir.path.string()), 0.0);
  }
}

TEST_CASE("bf16 and f16 checkpoints load, converted to f32") {
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dt));
    TempDir dir("nn_half");
    const auto m = random_model(false, 11);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& [n, t] : m->state_dict()) tensors.emplace_back(n, t.to(dt));
    save_safetensors(dir.file("model.safetensors"), tensors);
    write_config(*m, dir.path.string());
    const auto back = load_llama(dir.path.string());
    for (const auto& [n, p] : back->named_parameters()) CHECK(p.dtype() == DType::f32);
    // Half the spacing of the format: 2^-8 (bf16), 2^-11 (f16, plus its subnormal step 2^-24).
    check_same_weights(*m, *back, dt == DType::bf16 ? 1.0 / 256 : 1.0 / 2048,
                       dt == DType::bf16 ? 0.0 : 1.0 / (1 << 24));
  }
}

TEST_CASE("sharded checkpoints load through model.safetensors.index.json") {
  TempDir dir("nn_shards");
  const auto m = random_model(false, 12);
  const auto sd = m->state_dict();
  std::vector<std::pair<std::string, Tensor>> a, b;
  Json map = Json::object();
  for (size_t i = 0; i < sd.size(); ++i) {
    const bool first = i < sd.size() / 2;
    (first ? a : b).push_back(sd[i]);
    map[sd[i].first] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  save_safetensors(dir.file("model-00001-of-00002.safetensors"), a);
  save_safetensors(dir.file("model-00002-of-00002.safetensors"), b);
  write_json_file(dir.file("model.safetensors.index.json"),
                  Json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}});
  write_config(*m, dir.path.string());
  check_same_weights(*m, *load_llama(dir.path.string()), 0.0);

  // A model.safetensors next to the index wins, as in transformers.
  const auto other = random_model(false, 16);
  save_safetensors(dir.file("model.safetensors"), other->state_dict());
  check_same_weights(*other, *load_llama(dir.path.string()), 0.0);
  fs::remove(dir.file("model.safetensors"));

  // The index names a tensor its shard lacks: the error names the shard.
  map["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_json_file(dir.file("model.safetensors.index.json"), Json{{"weight_map", map}});
  std::string e = error_of([&] { load_llama(dir.path.string()); });
  CHECK(e.find("model-00001-of-00002.safetensors") != std::string::npos);
  CHECK(e.find("model.norm.weight") != std::string::npos);

  // A shard that does not exist.
  map["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_json_file(dir.file("model.safetensors.index.json"), Json{{"weight_map", map}});
  e = error_of([&] { load_llama(dir.path.string()); });
  CHECK(e.find("model-00003-of-00002.safetensors") != std::string::npos);
}

TEST_CASE("HF-only tensors are dropped: rotary inv_freq buffers, a tied checkpoint's lm_head") {
  TempDir dir("nn_extra");
  const auto m = random_model(true, 13);
  auto tensors = m->state_dict();
  tensors.emplace_back("lm_head.weight", m->model().embed_tokens().weight().value());
  tensors.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor::ones({2}));
  save_safetensors(dir.file("model.safetensors"), tensors);
  write_config(*m, dir.path.string());
  check_same_weights(*m, *load_llama(dir.path.string()), 0.0);
}

TEST_CASE("checkpoint errors name the file") {
  TempDir dir("nn_errors");
  const std::string d = dir.path.string();
  std::string e = error_of([&] { load_llama(d); });
  CHECK(e.find("config.json") != std::string::npos);

  const auto m = random_model(false, 14);
  write_config(*m, d);
  e = error_of([&] { load_llama(d); });
  CHECK(e.find("model.safetensors") != std::string::npos);

  // A corrupt weights file.
  { std::ofstream(dir.file("model.safetensors"), std::ios::binary) << "garbage!"; }
  e = error_of([&] { load_llama(d); });
  CHECK(e.find(dir.file("model.safetensors")) != std::string::npos);

  // An untied config over tied weights: the missing LM head is reported with a hint.
  auto tied = random_model(true, 15);
  save_safetensors(dir.file("model.safetensors"), tied->state_dict());
  e = error_of([&] { load_llama(d); });
  CHECK(e.find(dir.file("model.safetensors")) != std::string::npos);
  CHECK(e.find("missing key(s): lm_head.weight") != std::string::npos);
  CHECK(e.find("tie_word_embeddings") != std::string::npos);

  // Wrong shapes (a config with a different FFN width) and an unsupported dtype.
  LlamaConfig wide = small_config(false);
  wide.intermediate_size = 32;
  write_json_file(dir.file("config.json"), wide.to_json());
  save_safetensors(dir.file("model.safetensors"), m->state_dict());
  e = error_of([&] { load_llama(d); });
  CHECK(e.find("model.layers.0.mlp.gate_proj.weight (checkpoint f32[24, 16], model f32[32, 16])") !=
        std::string::npos);
  write_config(*m, d);
  auto bad = m->state_dict();
  bad[0].second = Tensor::zeros(bad[0].second.shape(), DType::i32);
  save_safetensors(dir.file("model.safetensors"), bad);
  e = error_of([&] { load_llama(d); });
  CHECK(e.find("model.embed_tokens.weight") != std::string::npos);
  CHECK(e.find(dir.file("model.safetensors")) != std::string::npos);

  // A bad config.json.
  { std::ofstream(dir.file("config.json")) << "{\"vocab_size\": 40,"; }
  CHECK(error_of([&] { load_llama(d); }).find(dir.file("config.json")) != std::string::npos);
}
