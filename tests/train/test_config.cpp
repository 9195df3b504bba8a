// train/config: the strict YAML parser. Each error class names the file, the full key path and the
// 1-based line of the offending node (counted by hand in the texts below).
#include <doctest/doctest.h>

#include <string>

#include "tests/test_util.h"
#include "train/config.h"

using namespace tq;
using namespace tq::train;

namespace {

// Line numbers:  1 model, 2 init, 3 vocab, 4 hidden, 5 inter, 6 layers, 7 heads, 8 kv, 9 maxpos,
// 10 quant, 11 method, 12 group_size, 13 data, 14 train, 15 seq_len, 16 tokenizer, 17 optim, 18 lr,
// 19 betas, 20 train, 21 max_steps, 22 micro_batch, 23 checkpoint, 24 dir
std::string base() {
  return "model:\n"
         "  init: scratch\n"
         "  vocab_size: 512\n"
         "  hidden_size: 128\n"
         "  intermediate_size: 256\n"
         "  num_hidden_layers: 2\n"
         "  num_attention_heads: 4\n"
         "  num_key_value_heads: 2\n"
         "  max_position_embeddings: 256\n"
         "quant:\n"
         "  method: tequila\n"
         "  group_size: 128\n"
         "data:\n"
         "  train: [\"corpus/*.txt\"]\n"
         "  seq_len: 128\n"
         "  tokenizer: tok.model\n"
         "optim:\n"
         "  lr: 1.0e-3\n"
         "  betas: [0.9, 0.95]\n"
         "train:\n"
         "  max_steps: 100\n"
         "  micro_batch: 4\n"
         "checkpoint:\n"
         "  dir: runs/x\n";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  REQUIRE(p != std::string::npos);
  return s.replace(p, from.size(), to);
}

std::string err(const std::string& text, const std::vector<std::string>& ov = {}) {
  return test::error_of([&] { TrainConfig::parse(text, "cfg.yaml", ov); });
}

}  // namespace

TEST_CASE("config: a valid file parses into the structs") {
  const TrainConfig c = TrainConfig::parse(base(), "cfg.yaml");
  CHECK(c.model.shape.hidden_size == 128);
  CHECK(c.model.shape.num_key_value_heads == 2);
  CHECK(c.quant.method == "tequila");
  CHECK(c.quant.to_quant_config().group_size == 128);
  CHECK(c.data.train == std::vector<std::string>{"corpus/*.txt"});
  CHECK(c.optim.beta2 == 0.95);
  CHECK(c.train.micro_batch == 4);
  CHECK(c.train.grad_accum == 1);  // default
  CHECK(c.log.metrics == "runs/x/metrics.jsonl");
  // The resolved YAML parses back to the same config (and the same hash).
  const TrainConfig back = TrainConfig::parse(c.resolved_config_yaml(), "resolved.yaml");
  CHECK(back.to_json() == c.to_json());
  CHECK(back.hash() == c.hash());
  // Overrides change values and the hash.
  const TrainConfig o = TrainConfig::parse(base(), "cfg.yaml", {"optim.lr=5e-4", "train.grad_accum=2"});
  CHECK(o.optim.lr == 5e-4);
  CHECK(o.train.grad_accum == 2);
  CHECK(o.hash() != c.hash());
}

TEST_CASE("config: unknown keys name the path and line") {
  const std::string e = err(replace(base(), "  lr: 1.0e-3\n", "  lr: 1.0e-3\n  lerning_rate: 2\n"));
  CHECK(e.find("cfg.yaml:19") != std::string::npos);
  CHECK(e.find("optim.lerning_rate") != std::string::npos);
  CHECK(e.find("unknown key") != std::string::npos);
  const std::string top = err(base() + "extra: 1\n");
  CHECK(top.find("cfg.yaml:25") != std::string::npos);
  CHECK(top.find("extra: unknown key") != std::string::npos);
}

TEST_CASE("config: wrong types name the element path and line") {
  std::string e = err(replace(base(), "[0.9, 0.95]", "[0.9, abc]"));
  CHECK(e.find("cfg.yaml:19") != std::string::npos);
  CHECK(e.find("optim.betas[1]") != std::string::npos);
  CHECK(e.find("expected a finite number, got 'abc'") != std::string::npos);
  e = err(replace(base(), "micro_batch: 4", "micro_batch: 4.5"));
  CHECK(e.find("cfg.yaml:22: train.micro_batch: expected an integer") != std::string::npos);
  e = err(replace(base(), "micro_batch: 4", "micro_batch: \"4\""));  // a quoted string is not a number
  CHECK(e.find("train.micro_batch: expected an integer") != std::string::npos);
  e = err(replace(base(), "  lr: 1.0e-3\n", "  lr: [1]\n"));
  CHECK(e.find("cfg.yaml:18: optim.lr") != std::string::npos);
  e = err(replace(base(), "  method: tequila\n", "  method: {a: 1}\n"));
  CHECK(e.find("cfg.yaml:11: quant.method: expected a string") != std::string::npos);
}

TEST_CASE("config: missing required keys name the enclosing mapping's line") {
  std::string e = err(replace(base(), "  max_steps: 100\n", ""));
  CHECK(e.find("cfg.yaml:21: train.max_steps: missing required key") != std::string::npos);
  e = err(replace(base(), "  tokenizer: tok.model\n", ""));
  CHECK(e.find("data.tokenizer: missing required key") != std::string::npos);
  CHECK(e.find("cfg.yaml:14") != std::string::npos);
  e = err(replace(base(), "checkpoint:\n  dir: runs/x\n", ""));
  CHECK(e.find("checkpoint: missing required section") != std::string::npos);
}

TEST_CASE("config: impossible values") {
  std::string e = err(replace(base(), "num_attention_heads: 4", "num_attention_heads: 3"));
  CHECK(e.find("cfg.yaml:7: model.num_attention_heads: must divide hidden_size 128") != std::string::npos);
  e = err(replace(base(), "num_key_value_heads: 2", "num_key_value_heads: 3"));
  CHECK(e.find("cfg.yaml:8: model.num_key_value_heads: must divide num_attention_heads 4") != std::string::npos);
  e = err(replace(base(), "group_size: 128", "group_size: 96"));
  CHECK(e.find("cfg.yaml:12: quant.group_size: must divide the input width 128") != std::string::npos);
  e = err(replace(base(), "seq_len: 128", "seq_len: 512"));
  CHECK(e.find("cfg.yaml:15: data.seq_len: 512 exceeds model.max_position_embeddings 256") != std::string::npos);
  e = err(replace(base(), "lr: 1.0e-3", "lr: 0"));
  CHECK(e.find("cfg.yaml:18: optim.lr: must be > 0") != std::string::npos);
  e = err(replace(base(), "lr: 1.0e-3", "lr: -1"));
  CHECK(e.find("optim.lr: must be > 0") != std::string::npos);
  e = err(replace(base(), "[0.9, 0.95]", "[0.9, 1.5]"));
  CHECK(e.find("cfg.yaml:19: optim.betas[1]: must be in [0, 1)") != std::string::npos);
  e = err(replace(base(), "method: tequila", "method: tequilla"));
  CHECK(e.find("cfg.yaml:11: quant.method: expected one of") != std::string::npos);
  // An intermediate size the group does not divide: down_proj's input.
  e = err(replace(base(), "intermediate_size: 256", "intermediate_size: 320"));
  CHECK(e.find("must divide the input width 320 of down_proj") != std::string::npos);
}

TEST_CASE("config: YAML syntax errors and overrides are reported") {
  std::string e = err(replace(base(), "  lr: 1.0e-3\n", "  lr: [1.0e-3\n"));
  CHECK(e.find("cfg.yaml:") != std::string::npos);
  CHECK(e.find("not valid YAML") != std::string::npos);
  e = err(base(), {"optim.lr=-3"});
  CHECK(e.find("cfg.yaml (--override optim.lr): optim.lr: must be > 0") != std::string::npos);
  e = err(base(), {"optim.lrr=3"});
  CHECK(e.find("optim.lrr: unknown key") != std::string::npos);
  e = err(base(), {"novalue"});
  CHECK(e.find("expected key.path=value") != std::string::npos);
  e = test::error_of([] { TrainConfig::load("/nonexistent/cfg.yaml"); });
  CHECK(e.find("cannot open /nonexistent/cfg.yaml") != std::string::npos);
}
