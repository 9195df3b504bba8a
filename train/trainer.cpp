#include "train/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "data/loader.h"
#include "data/spm_trainer.h"
#include "data/text_source.h"
#include "data/tokenizer.h"
#include "quant/diagnostics.h"
#include "quant/quant.h"
#include "train/distributed.h"


namespace fs = std::filesystem;

namespace tq::train {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void tq_train_on_signal(int sig) { g_stop_signal = sig; }

// Installs the handlers for the lifetime of run() and restores the previous ones.
class SignalScope {
 public:
  SignalScope() {
    struct sigaction sa {};
    sa.sa_handler = tq_train_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

class TokenLoaderSource : public BatchSource {
 public:
  TokenLoaderSource(std::shared_ptr<const data::Tokenizer> tok, data::LoaderOptions o, const std::string& context)
      : loader_(std::move(tok), std::move(o), context) {}
  void next_batch(int64_t B, Tensor& ids, Tensor& targets) override { loader_.next_batch(B, ids, targets); }
  Json cursor() const override { return loader_.cursor(); }
  void restore(const Json& c) override { loader_.restore(c); }

 private:
  data::TokenLoader loader_;
};

LrSchedule make_schedule(const TrainConfig& c) {
  const int64_t T = c.train.max_steps;
  const int64_t W = c.schedule.resolved_warmup_steps(T);
  if (c.schedule.name == "constant") return LrSchedule::constant(W);
  if (c.schedule.name == "cosine") return LrSchedule::cosine(T, W, c.schedule.min_lr_ratio);
  const double ratio = c.schedule.warmup_ratio >= 0 ? c.schedule.warmup_ratio
                                                    : static_cast<double>(W) / static_cast<double>(T);
  return LrSchedule::wsd(T, ratio, c.schedule.decay_steps, c.schedule.min_lr_ratio);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void Trainer::request_stop(int signal) { g_stop_signal = signal; }

Trainer::~Trainer() = default;

Trainer::Trainer(TrainConfig cfg, std::unique_ptr<nn::LlamaForCausalLM> model, std::unique_ptr<BatchSource> train_data,
                 std::unique_ptr<BatchSource> valid_data)
    : cfg_(std::move(cfg)),
      model_(std::move(model)),
      train_data_(std::move(train_data)),
      valid_data_(std::move(valid_data)),
      rng_(cfg_.train.seed) {
  TQ_CHECK(model_ != nullptr, "[trainer] no model given");
  setup_optimizer();
}

Trainer::Trainer(TrainConfig cfg) : cfg_(std::move(cfg)), rng_(cfg_.train.seed) {
  Distributed& dist = Distributed::get();
  if (cfg_.train.threads > 0) set_num_threads(cfg_.train.threads);

  // Tokenizer: train our own SentencePiece vocabulary first when asked and absent (rank 0 only).
  tokenizer_path_ = cfg_.data.tokenizer;
  if (cfg_.data.tokenizer_train.enabled && !fs::exists(tokenizer_path_)) {
    const auto& tt = cfg_.data.tokenizer_train;
    TQ_CHECK(fs::path(tokenizer_path_).extension() == ".model",
             "[config] {}: data.tokenizer: with data.tokenizer_train the path must end in .model (the SentencePiece "
             "file to write), got '{}'", cfg_.source, tokenizer_path_);
    if (dist.is_root()) {
      std::vector<std::string> inputs;
      for (const auto& f : data::expand_globs(cfg_.data.train, "data.train"))
        if (fs::path(f).extension() == ".txt") inputs.push_back(f);
      TQ_CHECK(!inputs.empty(), "[trainer] data.tokenizer_train needs .txt files among data.train");
      const auto parent = fs::path(tokenizer_path_).parent_path();
      if (!parent.empty()) fs::create_directories(parent);
      std::string prefix = tokenizer_path_.substr(0, tokenizer_path_.size() - 6);
      spdlog::info("[tqtrain] training a SentencePiece {} vocabulary of {} on {} file(s) into {}", tt.model_type,
                   tt.vocab_size, inputs.size(), tokenizer_path_);
      data::train_sentencepiece(inputs, prefix, static_cast<int>(tt.vocab_size), tt.model_type, tt.byte_fallback,
                                {{"input_sentence_size", std::to_string(tt.input_sentence_size)},
                                 {"hard_vocab_limit", "false"}});
    }
    dist.barrier();
  }
  tokenizer_ = data::load_tokenizer(tokenizer_path_);

  // Model.
  if (cfg_.model.init == "hf") {
    // A run directory (with `latest`) stands for its newest checkpoint.
    std::string path = cfg_.model.path;
    if (!fs::exists(fs::path(path) / "config.json") && fs::exists(fs::path(path) / "latest"))
      path = latest_checkpoint(path);
    TQ_CHECK(fs::exists(fs::path(path) / "config.json"),
             "[config] {}: model.path: {} is not an HF checkpoint directory (no config.json) nor a run directory "
             "with a 'latest' checkpoint — hint: run the pretraining config first", cfg_.source, cfg_.model.path);
    model_ = nn::load_llama(path);
    if (Distributed::get().is_root()) spdlog::info("[tqtrain] model from {}", path);
    TQ_CHECK(cfg_.data.seq_len <= model_->config().max_position_embeddings,
             "[config] {}: data.seq_len: {} exceeds max_position_embeddings {} of {}", cfg_.source, cfg_.data.seq_len,
             model_->config().max_position_embeddings, cfg_.model.path);
  } else {
    nn::LlamaConfig mc = cfg_.model.shape;
    if (tokenizer_->bos_id() >= 0) mc.bos_token_id = tokenizer_->bos_id();
    if (tokenizer_->eos_id() >= 0) {
      mc.eos_token_id = tokenizer_->eos_id();
      mc.eos_token_ids = {mc.eos_token_id};
    }
    model_ = std::make_unique<nn::LlamaForCausalLM>(mc);
    Rng init_rng(cfg_.train.seed);
    model_->init_weights(init_rng, cfg_.model.init_std);
  }
  TQ_CHECK(tokenizer_->vocab_size() <= model_->config().vocab_size,
           "[config] {}: the tokenizer {} has {} tokens but the model's vocab_size is {}", cfg_.source,
           tokenizer_path_, tokenizer_->vocab_size(), model_->config().vocab_size);

  data::LoaderOptions lo;
  lo.sources = cfg_.data.train;
  lo.jsonl_field = cfg_.data.jsonl_field;
  lo.seq_len = cfg_.data.seq_len;
  lo.shuffle = cfg_.data.shuffle;
  lo.shuffle_block = cfg_.data.shuffle_block;
  lo.seed = cfg_.train.seed;
  lo.rank = dist.rank();
  lo.world = dist.world();
  lo.on_bad_data = cfg_.data.on_bad_data;
  lo.valid_fraction = cfg_.data.valid_fraction;
  lo.split = cfg_.data.valid_fraction > 0 ? "train" : "all";
  train_data_ = std::make_unique<TokenLoaderSource>(tokenizer_, lo, "data.train");
  if (!cfg_.data.valid.empty() || cfg_.data.valid_fraction > 0) {
    data::LoaderOptions vo = lo;
    vo.shuffle = false;
    if (!cfg_.data.valid.empty()) {
      vo.sources = cfg_.data.valid;
      vo.valid_fraction = 0.0;
      vo.split = "all";
    } else {
      vo.split = "valid";
    }
    vo.prefetch = 256;
    valid_data_ = std::make_unique<TokenLoaderSource>(tokenizer_, vo, "data.valid");
  }
  setup_optimizer();
}

void Trainer::setup_optimizer() {
  qcfg_ = cfg_.quant.to_quant_config();
  if (qcfg_.method != "none") {
    try {
      const int64_t n = quant::quantize_model(*model_, qcfg_);
      spdlog::debug("[tqtrain] {} linears quantized with {}", n, qcfg_.method);
    } catch (const Error& e) {
      TQ_THROW("[config] {}: quant: {}", cfg_.source, e.message());
    }
  }
  // Dead-zone diagnostics (docs/diagnostics.md) every log.diagnostics_every steps, under "diagnostics"
  // in that step's metrics line; rank 0 only (it writes the metrics). A caller's hook is kept.
  if (!diagnostics_hook && qcfg_.method != "none" && cfg_.log.diagnostics_every > 0 &&
      Distributed::get().is_root()) {
    auto monitor = std::make_shared<quant::DeadZoneMonitor>();
    diagnostics_hook = [this, monitor](int64_t step) {
      return Json{{"diagnostics", monitor->measure(*model_, step)}};
    };
  }
  AdamWOptions o;
  o.lr = cfg_.optim.lr;
  o.beta1 = cfg_.optim.beta1;
  o.beta2 = cfg_.optim.beta2;
  o.eps = cfg_.optim.eps;
  o.weight_decay = cfg_.optim.weight_decay;
  opt_ = std::make_unique<AdamW>(model_->named_parameters(), o);
  schedule_ = make_schedule(cfg_);
  state_.config_hash = cfg_.hash();
  state_.rng = rng_.state_string();
  if (valid_data_) valid_start_ = valid_data_->cursor();
}

StepResult Trainer::train_step(const std::vector<std::pair<Tensor, Tensor>>& micro_batches) {
  TQ_CHECK(!micro_batches.empty(), "[trainer] train_step needs at least one micro-batch");
  Distributed& dist = Distributed::get();
  const double scale = 1.0 / static_cast<double>(micro_batches.size());
  double loss_sum = 0.0;
  int64_t tokens = 0;
  for (const auto& [ids, targets] : micro_batches) {
    autograd::Tape tape;
    autograd::RecordScope rec(tape);
    const autograd::Var loss = model_->loss(ids, targets);
    loss_sum += loss.value().item();
    tape.backward(loss, Tensor::full(loss.value().shape(), scale, loss.value().dtype()));
    tokens += ids.numel();
  }
  double loss = loss_sum * scale;
  const auto& params = opt_->params();
  if (dist.world() > 1) {
    std::vector<Tensor> grads;
    for (const auto& [name, p] : params) {
      if (!p.has_grad()) autograd::accumulate_grad(p, Tensor::zeros(p.value().shape(), p.value().dtype()));
      grads.push_back(p.grad());
    }
    dist.allreduce_mean(grads);
    loss = dist.allreduce_sum(loss) / dist.world();
    tokens = dist.allreduce_sum(tokens);
  }
  const double norm = clip_grad_norm(params, cfg_.optim.grad_clip);
  StepResult r;
  r.lr = cfg_.optim.lr * schedule_.factor(state_.step);
  r.loss = loss;
  r.grad_norm = norm;
  r.tokens = tokens;
  state_.step += 1;
  state_.tokens += tokens;
  r.step = state_.step;
  if (!std::isfinite(loss) || !std::isfinite(norm)) {
    r.skipped = true;
    state_.bad_steps += 1;
    state_.total_bad_steps += 1;
    model_->zero_grad();
    spdlog::warn("[tqtrain] step {}: non-finite {} ({}) — update skipped ({} in a row, limit {})", r.step,
                 std::isfinite(loss) ? "gradient norm" : "loss", std::isfinite(loss) ? norm : loss, state_.bad_steps,
                 cfg_.train.max_bad_steps);
    TQ_CHECK(state_.bad_steps < cfg_.train.max_bad_steps,
             "[tqtrain] {} non-finite steps in a row (train.max_bad_steps = {}) at step {}; stopping — the last "
             "good checkpoint is untouched — hint: lower optim.lr or check the data",
             state_.bad_steps, cfg_.train.max_bad_steps, r.step);
    return r;
  }
  state_.bad_steps = 0;
  opt_->step(r.lr);
  model_->zero_grad();
  return r;
}

void Trainer::draw(std::vector<std::pair<Tensor, Tensor>>& micro) {
  TQ_CHECK(train_data_ != nullptr, "[trainer] no training data source");
  micro.resize(static_cast<size_t>(cfg_.train.grad_accum));
  for (auto& [ids, tgt] : micro) train_data_->next_batch(cfg_.train.micro_batch, ids, tgt);
}

StepResult Trainer::step() {
  std::vector<std::pair<Tensor, Tensor>> micro;
  draw(micro);
  return train_step(micro);
}

double Trainer::validation_loss() {
  if (!valid_data_) return std::nan("");
  valid_data_->restore(valid_start_);
  autograd::NoGradGuard ng;
  double sum = 0.0;
  int64_t n = 0;
  for (int64_t b = 0; b < cfg_.eval.batches; ++b) {
    Tensor ids, tgt;
    valid_data_->next_batch(cfg_.train.micro_batch, ids, tgt);
    const double l = model_->loss(ids, tgt).value().item();
    sum += l * static_cast<double>(ids.numel());
    n += ids.numel();
  }
  Distributed& dist = Distributed::get();
  sum = dist.allreduce_sum(sum);
  n = dist.allreduce_sum(n);
  return sum / static_cast<double>(n);
}

Json Trainer::gather_cursor() const {
  if (!train_data_) return nullptr;
  Distributed& dist = Distributed::get();
  if (dist.world() == 1) return train_data_->cursor();
  Json ranks = Json::array();
  for (const auto& s : dist.allgather(train_data_->cursor().dump())) ranks.push_back(Json::parse(s));
  return {{"world", dist.world()}, {"ranks", ranks}};
}

void Trainer::restore_cursor(const Json& c) {
  if (!train_data_ || c.is_null()) return;
  Distributed& dist = Distributed::get();
  if (c.is_object() && c.contains("ranks") && c.contains("world")) {
    TQ_CHECK(c["world"].get<int64_t>() == dist.world(),
             "[checkpoint] data_cursor was saved by {} ranks but this run has {} — hint: resume with the same mpirun -np",
             c["world"].get<int64_t>(), dist.world());
    train_data_->restore(c["ranks"][static_cast<size_t>(dist.rank())]);
  } else {
    TQ_CHECK(dist.world() == 1, "[checkpoint] data_cursor was saved by 1 rank but this run has {}", dist.world());
    train_data_->restore(c);
  }
}

std::string Trainer::save_checkpoint() {
  Distributed& dist = Distributed::get();
  state_.rng = rng_.state_string();
  state_.data_cursor = gather_cursor();
  std::string dir;
  if (dist.is_root()) {
    CheckpointOptions o;
    o.quant = &qcfg_;
    o.tokenizer = tokenizer_path_;
    o.resolved_config_yaml = cfg_.resolved_config_yaml();
    o.keep = cfg_.checkpoint.keep;
    dir = train::save_checkpoint(cfg_.checkpoint.dir, *model_, *opt_, state_, o);
  }
  dist.barrier();
  return dist.broadcast(dir);
}

void Trainer::resume(const std::string& path) {
  const std::string dir = resolve_checkpoint(path);
  const TrainerState st = load_checkpoint(dir, *model_, *opt_);
  if (st.config_hash != cfg_.hash())
    spdlog::warn("[tqtrain] resuming from {} written with a different config (hash {} vs {}): the losses will not "
                 "match an uninterrupted run", dir, st.config_hash, cfg_.hash());
  rng_.set_state_string(st.rng);
  restore_cursor(st.data_cursor);
  state_ = st;
  state_.config_hash = cfg_.hash();
  elapsed_base_ = st.elapsed_s;
  if (Distributed::get().is_root())
    spdlog::info("[tqtrain] resumed from {} at step {} ({} tokens)", dir, state_.step, state_.tokens);
}

bool Trainer::resume_if_available() {
  if (latest_checkpoint(cfg_.checkpoint.dir).empty()) return false;
  resume(cfg_.checkpoint.dir);
  return true;
}

RunResult Trainer::run() {
  Distributed& dist = Distributed::get();
  const bool root = dist.is_root();
  RunResult result;
  if (root) {
    fs::create_directories(cfg_.checkpoint.dir);
    write_file_atomic((fs::path(cfg_.checkpoint.dir) / "config.resolved.yaml").string(), cfg_.resolved_config_yaml());
    write_json_file((fs::path(cfg_.checkpoint.dir) / "config.resolved.json").string(), cfg_.to_json());
  }
  MetricsWriter metrics(cfg_.log.metrics, root);
  metrics.truncate_after(state_.step);
  if (state_.step == 0 && root)
    metrics.write({{"event", "start"}, {"step", state_.step}, {"params", model_->num_parameters()}, {"world", dist.world()},
                   {"threads", num_threads()}, {"quant", cfg_.quant.method}, {"config_hash", cfg_.hash()}});
  const int64_t first = state_.step;
  Progress progress(cfg_.train.max_steps, first, root);
  SignalScope signals;
  g_stop_signal = 0;
  const double t0 = now_s();
  double window_t = t0;
  int64_t window_tokens = 0;
  double window_loss = 0.0;
  int64_t window_steps = 0;
  std::vector<std::pair<Tensor, Tensor>> micro;

  while (state_.step < cfg_.train.max_steps) {
    draw(micro);
    const StepResult r = train_step(micro);
    result.steps_done += 1;
    window_tokens += r.tokens;
    if (!r.skipped) {
      window_loss += r.loss;
      window_steps += 1;
    }
    const double now = now_s();
    const double tok_s = static_cast<double>(window_tokens) / std::max(now - window_t, 1e-9);
    const bool log_now = r.step % cfg_.log.every == 0 || r.step == cfg_.train.max_steps;
    progress.update(r.step, r.loss, r.lr, tok_s, log_now);
    if (log_now) {
      Json line = {{"step", r.step},
                   {"tokens", state_.tokens},
                   {"loss", r.loss},
                   {"loss_avg", window_steps > 0 ? window_loss / static_cast<double>(window_steps) : std::nan("")},
                   {"lr", r.lr},
                   {"grad_norm", r.grad_norm},
                   {"tokens_per_s", tok_s},
                   {"elapsed_s", elapsed_base_ + now - t0},
                   {"bad_steps", state_.total_bad_steps},
                   {"skipped", r.skipped}};
      if (diagnostics_hook && cfg_.log.diagnostics_every > 0 && r.step % cfg_.log.diagnostics_every == 0) {
        const Json d = diagnostics_hook(r.step);
        if (d.is_object())
          for (auto it = d.begin(); it != d.end(); ++it) line[it.key()] = it.value();
      }
      metrics.write(line);
      window_t = now;
      window_tokens = 0;
      window_loss = 0.0;
      window_steps = 0;
    } else if (diagnostics_hook && cfg_.log.diagnostics_every > 0 && r.step % cfg_.log.diagnostics_every == 0) {
      Json line = diagnostics_hook(r.step);
      if (line.is_object()) {
        line["step"] = r.step;
        metrics.write(line);
      }
    }
    if (cfg_.eval.every > 0 && r.step % cfg_.eval.every == 0 && (valid_data_ || eval_hook)) {
      Json line = {{"step", r.step}, {"tokens", state_.tokens}};
      if (valid_data_) {
        const double vl = validation_loss();  // collective under MPI: every rank calls it
        line["valid_loss"] = vl;
        line["valid_ppl"] = std::exp(vl);
        if (root) {
          progress.finish();
          spdlog::info("[tqtrain] step {}: validation loss {:.4f}, perplexity {:.2f}", r.step, vl, std::exp(vl));
        }
      }
      if (eval_hook && root) {
        const Json e = eval_hook(r.step);
        if (e.is_object())
          for (auto it = e.begin(); it != e.end(); ++it) line[it.key()] = it.value();
      }
      metrics.write(line);
    }
    state_.elapsed_s = elapsed_base_ + now_s() - t0;
    const int stop = static_cast<int>(dist.allreduce_max(static_cast<double>(g_stop_signal)));
    const bool periodic = cfg_.checkpoint.every > 0 && r.step % cfg_.checkpoint.every == 0;
    if (periodic || stop != 0 || state_.step == cfg_.train.max_steps) {
      progress.finish();
      result.checkpoint = save_checkpoint();
    }
    if (stop != 0) {
      result.signal = stop;
      if (root)
        spdlog::warn("[tqtrain] stopped by signal {} after step {}; checkpoint {} — run the same command to resume",
                     stop, state_.step, result.checkpoint);
      metrics.write({{"event", "interrupted"}, {"step", state_.step}, {"signal", stop}});
      return result;
    }
  }
  progress.finish();
  if (result.steps_done == 0 && root)
    spdlog::info("[tqtrain] nothing to do: step {} ≥ train.max_steps {}", state_.step, cfg_.train.max_steps);
  return result;
}

}  // namespace tq::train
