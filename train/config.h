// The tqtrain YAML config, parsed strictly into plain structs (design.md §3, docs/train.md).
//
//   TrainConfig cfg = TrainConfig::load("configs/quickstart-qat.yaml", {"optim.lr=5e-4"});
//   cfg.train.micro_batch;  cfg.quant.to_quant_config();  cfg.model.shape.hidden_size;
//   write_file_atomic(run_dir + "/config.resolved.yaml", cfg.resolved_config_yaml());
//
// Strict: unknown keys, wrong types, missing required keys and impossible values are tq::Error
//   "[config] <file>:<line>: <key.path[i]>: <what was expected>, got <what was found>"
// with the 1-based line of the offending node (of the enclosing mapping for a missing key). A value
// set by --override names the override instead of a line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "nn/llama_config.h"
#include "quant/quant.h"

namespace tq::train {

struct ModelSection {
  std::string init = "scratch";  // scratch | hf
  std::string path;              // init: hf — an HF checkpoint directory
  nn::LlamaConfig shape;         // init: scratch — HF-named fields (vocab_size, hidden_size, ...)
  double init_std = 0.02;        // init: scratch — N(0, init_std²) for linears and the embedding
};

struct QuantSection {
  std::string method = "none";  // none | absmean | absmedian | twn | minima | tequila | tequila_nomix
  double lambda = 1e-3;
  std::string granularity = "group";  // tensor | channel | group
  int64_t group_size = 128;
  std::vector<std::string> layers = {"q_proj", "k_proj",    "v_proj",   "o_proj",
                                     "gate_proj", "up_proj", "down_proj"};
  double minima_eps = 1e-3;
  std::string minima_grad = "paper";
  std::string scale_grad = "row";  // lsq/seq: LSQ gradient scale 1/sqrt(in) (row) or 1/sqrt(out·in) (tensor)
  quant::QuantConfig to_quant_config() const;
};

struct TokenizerTrainSection {
  bool enabled = false;            // the key data.tokenizer_train is present
  int64_t vocab_size = 0;
  std::string model_type = "bpe";  // bpe | unigram
  int64_t input_sentence_size = 2000000;
  bool byte_fallback = true;  // needs vocab_size ≥ 512 (256 byte pieces)
};

struct DataSection {
  std::vector<std::string> train;  // globs (.txt, .jsonl, .tqshard)
  std::vector<std::string> valid;  // globs; empty → valid_fraction of train (or no validation)
  double valid_fraction = 0.0;
  int64_t seq_len = 256;
  std::string tokenizer;  // file or directory (HF tokenizer.json, SentencePiece .model)
  std::string jsonl_field = "text";
  bool shuffle = true;
  int64_t shuffle_block = 1024;
  std::string on_bad_data = "skip";  // skip | stop
  TokenizerTrainSection tokenizer_train;  // train a SentencePiece model into `tokenizer` if absent
};

struct OptimSection {
  std::string name = "adamw";
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;  // YAML: betas: [b1, b2]
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // 0 disables clipping
};

struct ScheduleSection {
  std::string name = "constant";  // constant | cosine | wsd
  int64_t warmup_steps = 0;       // or warmup_ratio (of train.max_steps); not both
  double warmup_ratio = -1.0;     // < 0: unset
  int64_t decay_steps = 0;        // wsd
  double min_lr_ratio = 0.0;
  int64_t resolved_warmup_steps(int64_t max_steps) const;
};

struct TrainSection {
  int64_t micro_batch = 8;
  int64_t grad_accum = 1;
  int64_t max_steps = 1000;
  uint64_t seed = 42;
  int threads = 0;  // 0 = auto (YAML: auto or an integer)
  int64_t max_bad_steps = 5;  // consecutive non-finite steps before the run stops
};

struct EvalSection {
  int64_t every = 0;  // 0: no periodic validation
  int64_t batches = 10;
  std::vector<std::string> tasks;  // multiple-choice jsonl globs, scored every `every` steps by tqtrain
};

struct CheckpointSection {
  std::string dir;  // required
  int64_t every = 0;  // 0: only at the end
  int64_t keep = 3;
};

struct LogSection {
  int64_t every = 10;
  std::string metrics;  // default <checkpoint.dir>/metrics.jsonl
  int64_t diagnostics_every = 0;  // 0: never call the diagnostics hook
};

struct TrainConfig {
  std::string source;  // the file it came from ("<string>" for parse())
  ModelSection model;
  QuantSection quant;
  DataSection data;
  OptimSection optim;
  ScheduleSection schedule;
  TrainSection train;
  EvalSection eval;
  CheckpointSection checkpoint;
  LogSection log;

  // Reads and validates `path`; each override is "dotted.key=yaml value" ("optim.betas=[0.9,0.95]").
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  static TrainConfig parse(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides = {});

  Json to_json() const;                      // every key with its resolved value
  std::string resolved_config_yaml() const;  // the same as YAML (loadable by parse())
  // FNV-1a over the sections that change the numbers of a run (model, quant, data, optim, schedule,
  // train.micro_batch/grad_accum/seed): a resumed run warns when it differs.
  std::string hash() const;
};

// Emits a JSON value as block-style YAML.
std::string json_to_yaml(const Json& j);

}  // namespace tq::train
