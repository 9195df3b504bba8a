// The training loop behind tqtrain: model (scratch or HF), quantization swap, AdamW, LR schedule,
// gradient accumulation, MPI all-reduce, clipping, non-finite step policy, metrics, validation,
// checkpoints, signals and exact resume. See docs/train.md.
//
//   Trainer t(TrainConfig::load("configs/quickstart-qat.yaml"));
//   t.resume_if_available();                  // checkpoint.dir/latest, if any
//   RunResult r = t.run();                    // until train.max_steps or SIGINT/SIGTERM
//
// Lower level (tests, golden comparisons): a model and batch sources supplied by the caller, and
// one optimizer step over fixed micro-batches:
//   Trainer t(cfg, std::move(model), std::make_unique<MySource>(...));
//   StepResult s = t.train_step({{ids0, tgt0}, {ids1, tgt1}});   // i32 [B, T] each
//
// One step: for each micro-batch, loss.backward() seeded with 1/n_micro (gradients accumulate);
// gradients averaged over ranks; global-norm clip; when the loss or the norm is not finite the
// update is skipped (counted; after train.max_bad_steps in a row a tq::Error stops the run);
// otherwise AdamW with lr = optim.lr · schedule.factor(step); gradients zeroed.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/rng.h"
#include "nn/llama.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/metrics.h"
#include "train/schedule.h"

namespace tq::data {
class Tokenizer;
}

namespace tq::train {

// A resumable stream of (ids, targets) batches, i32 [B, T] each (targets = ids shifted by one).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual void next_batch(int64_t B, Tensor& ids, Tensor& targets) = 0;
  virtual Json cursor() const = 0;            // resumes right after the last batch returned
  virtual void restore(const Json& cursor) = 0;
};

struct StepResult {
  int64_t step = 0;        // the step number just completed (1-based)
  double loss = 0.0;       // mean over the step's tokens (all ranks)
  double grad_norm = 0.0;  // before clipping
  double lr = 0.0;
  bool skipped = false;    // non-finite loss or gradient: no update
  int64_t tokens = 0;      // tokens in the step, all ranks
};

struct RunResult {
  int64_t steps_done = 0;  // steps run by this call
  int signal = 0;          // the signal that stopped the run early, 0 when it reached max_steps
  std::string checkpoint;  // the last checkpoint written ("" if none)
};

class Trainer {
 public:
  // Everything from the config: tokenizer (trained into data.tokenizer first when
  // data.tokenizer_train is set and the file is absent), model (scratch init with train.seed, or
  // load_llama(model.path)), quantize_model when quant.method != none, AdamW, schedule, loaders.
  explicit Trainer(TrainConfig cfg);
  // The caller's model and data (either source may be null: train_step works without them).
  Trainer(TrainConfig cfg, std::unique_ptr<nn::LlamaForCausalLM> model, std::unique_ptr<BatchSource> train_data,
          std::unique_ptr<BatchSource> valid_data = nullptr);
  ~Trainer();

  StepResult train_step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches);
  // Draws train.grad_accum micro-batches of train.micro_batch windows and calls train_step.
  StepResult step();
  // Steps until train.max_steps with metrics, validation, checkpoints; stops early (after
  // finishing the step and checkpointing) on SIGINT/SIGTERM. Throws tq::Error on failure.
  RunResult run();

  // Mean per-token validation loss over eval.batches batches, always the same batches (the
  // validation source is rewound first); NaN without a validation source.
  double validation_loss();
  std::string save_checkpoint();         // rank 0 writes; returns the directory
  void resume(const std::string& path);  // a checkpoint dir or a run dir with `latest`
  bool resume_if_available();            // resume(checkpoint.dir) when it has a `latest`

  // Called every log.diagnostics_every steps (when set and that is > 0); its object is merged into
  // that step's metrics line.
  std::function<Json(int64_t step)> diagnostics_hook;
  // Called on rank 0 every eval.every steps (when set); its object is merged into that step's
  // validation metrics line. tqtrain sets it to score eval.tasks (multiple choice, infer/mc_eval.h).
  // It must not change the model or consume the trainer's RNG (resume stays bit-exact).
  std::function<Json(int64_t step)> eval_hook;

  const TrainConfig& config() const { return cfg_; }
  const TrainerState& state() const { return state_; }
  nn::LlamaForCausalLM& model() { return *model_; }
  AdamW& optimizer() { return *opt_; }
  const LrSchedule& schedule() const { return schedule_; }
  // The tokenizer file/dir copied into checkpoints ("" when the caller supplied the data).
  const std::string& tokenizer_path() const { return tokenizer_path_; }
  // The tokenizer built from the config (null when the caller supplied the data).
  const std::shared_ptr<const data::Tokenizer>& tokenizer() const { return tokenizer_; }

  // What the SIGINT/SIGTERM handler does; run() notices it after the current step.
  static void request_stop(int signal);

 private:
  void setup_optimizer();
  void draw(std::vector<std::pair<Tensor, Tensor>>& micro);
  Json gather_cursor() const;
  void restore_cursor(const Json& c);

  TrainConfig cfg_;
  std::shared_ptr<const data::Tokenizer> tokenizer_;
  std::string tokenizer_path_;
  std::unique_ptr<nn::LlamaForCausalLM> model_;
  std::unique_ptr<AdamW> opt_;
  LrSchedule schedule_;
  quant::QuantConfig qcfg_;
  std::unique_ptr<BatchSource> train_data_, valid_data_;
  Json valid_start_;
  TrainerState state_;
  Rng rng_;
  double elapsed_base_ = 0.0;  // elapsed_s of the resumed run
};


}  // namespace tq::train
