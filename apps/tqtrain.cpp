// tqtrain: trains a LLaMA from a YAML config — full-precision pretraining from scratch or QAT
// (Tequila or a baseline) from an HF checkpoint; one process or several under mpirun.
//   tqtrain CONFIG.yaml [--resume DIR] [--threads N] [--override key=value ...] [--fresh]
// Resumes from <checkpoint.dir>/latest automatically unless --fresh; exit status 0 when max_steps is
// reached, 128+signal when stopped by SIGINT/SIGTERM (after checkpointing), 2 on an error.
// See docs/train.md.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "data/text_source.h"
#include "infer/fp_model.h"
#include "infer/mc_eval.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/trainer.h"

using namespace tq;

namespace {

// eval.tasks: multiple-choice jsonl files scored like lm-evaluation-harness (infer/mc_eval.h) on the
// training graph (fake-quant for QAT runs) every eval.every steps; acc and acc_norm per task go into
// the validation metrics line under "tasks".
std::function<tq::Json(int64_t)> make_task_eval_hook(tq::train::Trainer& trainer) {
  const auto& cfg = trainer.config();
  TQ_CHECK(trainer.tokenizer() != nullptr, "[config] {}: eval.tasks needs the config's tokenizer", cfg.source);
  auto tasks = std::make_shared<std::vector<tq::infer::McTask>>();
  for (const auto& f : tq::data::expand_globs(cfg.eval.tasks, "eval.tasks")) tasks->push_back(tq::infer::load_mc_task(f));
  return [&trainer, tasks](int64_t step) {
    // A non-owning view: the trainer keeps the model; the adaptor only reads it.
    const std::shared_ptr<const tq::nn::LlamaForCausalLM> view(&trainer.model(), [](const tq::nn::LlamaForCausalLM*) {});
    const auto lm = tq::infer::make_fp_model(view);
    tq::Json out = tq::Json::object();
    for (const auto& t : *tasks) {
      const auto r = tq::infer::evaluate_mc_task(*lm, *trainer.tokenizer(), t, tq::infer::McOptions{});
      out[t.name] = {{"acc", r.acc}, {"acc_stderr", r.acc_stderr}, {"acc_norm", r.acc_norm},
                     {"acc_norm_stderr", r.acc_norm_stderr}, {"n", static_cast<int64_t>(r.docs.size())}};
      spdlog::info("[tqtrain] step {}: {} acc {:.4f} ± {:.4f}, acc_norm {:.4f} ± {:.4f} ({} docs)", step, t.name, r.acc,
                   r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.docs.size());
    }
    return tq::Json{{"tasks", out}};
  };
}

}  // namespace

int main(int argc, char** argv) {
  train::Distributed& dist = train::Distributed::init(&argc, &argv);
  CLI::App app{"tqtrain: train a LLaMA (full precision or ternary QAT) from a YAML config"};
  std::string config_path, resume_dir, log_level = "info";
  std::vector<std::string> overrides;
  int threads = -1;
  bool fresh = false;
  app.add_option("config", config_path, "YAML config (docs/train.md lists every key)")->required();
  app.add_option("--resume", resume_dir, "resume from this checkpoint directory (or a run dir with 'latest')");
  app.add_option("--threads", threads, "OpenMP threads (overrides train.threads; 0 = all cores)");
  app.add_option("--override,-o", overrides, "key.path=value, applied to the YAML before validation")->take_all();
  app.add_flag("--fresh", fresh, "start from step 0 even when checkpoint.dir has a 'latest'");
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    dist.finalize();
    return rc;
  }
  int rc = 0;
  try {
    init_logging(dist.is_root() ? log_level : "warn", "");
    train::TrainConfig cfg = train::TrainConfig::load(config_path, overrides);
    if (threads >= 0) cfg.train.threads = threads;
    set_num_threads(cfg.train.threads);
    train::Trainer trainer(cfg);
    if (!cfg.eval.tasks.empty() && dist.is_root()) trainer.eval_hook = make_task_eval_hook(trainer);
    if (!resume_dir.empty()) {
      trainer.resume(resume_dir);
    } else if (!fresh) {
      trainer.resume_if_available();
    }
    if (dist.is_root())
      spdlog::info("[tqtrain] {}: {} parameters, quant {}, {} rank(s) × {} threads, cpu {}, step {} → {}", config_path,
                   trainer.model().num_parameters(), cfg.quant.method, dist.world(), num_threads(),
                   cpu_target_name(cpu_target()), trainer.state().step, cfg.train.max_steps);
    const train::RunResult r = trainer.run();
    if (r.signal != 0) {
      if (dist.is_root())
        std::fprintf(stderr, "tqtrain: interrupted by signal %d at step %lld; checkpoint %s — rerun to resume\n",
                     r.signal, static_cast<long long>(trainer.state().step), r.checkpoint.c_str());
      rc = 128 + r.signal;
    } else if (dist.is_root()) {
      spdlog::info("[tqtrain] done: step {}, {} tokens, checkpoint {}", trainer.state().step, trainer.state().tokens,
                   r.checkpoint.empty() ? train::latest_checkpoint(cfg.checkpoint.dir) : r.checkpoint);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "tqtrain: error: %s\n", e.what());
    rc = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tqtrain: error: %s\n", e.what());
    rc = 2;
  }
  if (rc == 2 && dist.world() > 1) dist.abort(rc);  // the other ranks may wait in a collective
  dist.finalize();
  return rc;
}
