// Training checkpoints: one directory per step, written atomically, keep-last-K, `latest` pointer.
//
//   <root>/step-000123/  model.safetensors      HF names, latent f32 weights (nn::save_llama)
//                        config.json            HF LLaMA fields + "quantization_config" (when quantized)
//                        optimizer.safetensors  <name>.exp_avg, <name>.exp_avg_sq (AdamW::state_tensors)
//                        trainer_state.json     TrainerState below (step, tokens, RNG, data cursor, ...)
//                        tokenizer.model / tokenizer.json   copied from the run's tokenizer
//                        config.resolved.yaml   the run's resolved tqtrain config
//   <root>/latest        one line: the name of the newest complete checkpoint directory
//
//   save_checkpoint(root, model, opt, state, {.quant = &qc, .tokenizer = tok_path, .keep = 3});
//   std::string dir = resolve_checkpoint(root);            // root/latest → root/step-000123
//   TrainerState st = load_checkpoint(dir, model, opt);    // validates every file, names file + field
//
// Atomicity: files go into <root>/.tmp-step-000123-<pid>/, each written via a temp file + fsync +
// rename (core/json.h AtomicFileWriter), the directory is fsync'ed and renamed to step-000123, the
// root fsync'ed, then `latest` is replaced with write_file_atomic. A crash at any point leaves
// `latest` naming the previous complete checkpoint; stale .tmp-* directories are removed by the next
// save. After `latest` moves, step-* directories beyond the newest `keep` are deleted.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/json.h"
#include "nn/llama.h"
#include "quant/quant.h"
#include "train/adamw.h"

namespace tq::train {

inline constexpr const char* kLibraryVersion = "0.1.0";  // the CMake project version

struct TrainerState {
  int64_t step = 0;             // optimizer steps done (skipped non-finite steps included)
  int64_t tokens = 0;           // training tokens consumed, over all ranks
  int64_t bad_steps = 0;        // consecutive non-finite steps at the time of saving
  int64_t total_bad_steps = 0;  // all skipped steps of the run
  std::string rng;              // the trainer's Rng::state_string()
  Json data_cursor;             // the train loader's cursor (null without one)
  std::string config_hash;      // TrainConfig::hash() of the run that wrote it
  std::string library_version = kLibraryVersion;
  double elapsed_s = 0.0;       // wall time of the run so far
  std::vector<std::pair<std::string, int64_t>> param_steps;  // AdamW step count per parameter

  Json to_json() const;
  // Strict: every field present with its type; errors name `source` and the field.
  static TrainerState from_json(const Json& j, const std::string& source);
};

struct CheckpointOptions {
  const quant::QuantConfig* quant = nullptr;  // non-null and method != none → quantization_config
  std::string tokenizer;                      // file or directory to copy ("" → none)
  std::string resolved_config_yaml;           // written as config.resolved.yaml when non-empty
  int64_t keep = 3;
  // Test hook: called with each file name after it is written (throw to simulate a crash).
  std::function<void(const std::string& file)> after_file;
};

std::string checkpoint_name(int64_t step);  // "step-000123"

// Writes <root>/step-NNNNNN for state.step; returns its path.
std::string save_checkpoint(const std::string& root, const nn::LlamaForCausalLM& model, const AdamW& opt,
                            const TrainerState& state, const CheckpointOptions& opts);

// The checkpoint directory named by <root>/latest; "" when there is none.
std::string latest_checkpoint(const std::string& root);
// `path` when it is a checkpoint directory (holds trainer_state.json), else the one <path>/latest
// names; throws naming `path` when neither.
std::string resolve_checkpoint(const std::string& path);

// Loads weights (strict: every parameter, exact shapes) and optimizer state into `model` / `opt`
// (already built with the checkpoint's architecture and quantization) and returns the trainer state.
// Errors name the file and the field or tensor.
TrainerState load_checkpoint(const std::string& dir, nn::LlamaForCausalLM& model, AdamW& opt);

// The HF quantization_config block written into config.json.
Json quantization_config_json(const quant::QuantConfig& q);

}  // namespace tq::train
