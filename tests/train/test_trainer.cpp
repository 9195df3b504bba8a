// train/trainer: exact resume (bit for bit, shuffled data, grad_accum 2, interrupted through the
// signal path), accumulation equals one big batch, the non-finite step policy, metrics lines.
#include <doctest/doctest.h>

#include <csignal>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/rng.h"
#include "tests/test_util.h"
#include "train/trainer.h"

using namespace tq;
using namespace tq::train;

namespace {

// An in-memory token stream cut into seq_len+1 windows, shuffled per epoch with a seeded
// permutation; the cursor is (epoch, position).
class VectorSource : public BatchSource {
 public:
  VectorSource(std::vector<int32_t> tokens, int64_t T, bool shuffle, uint64_t seed)
      : tokens_(std::move(tokens)), T_(T), shuffle_(shuffle), seed_(seed) {
    n_ = (static_cast<int64_t>(tokens_.size()) - 1) / T_;
    make_order();
  }
  void next_batch(int64_t B, Tensor& ids, Tensor& tgt) override {
    ids = Tensor::empty({B, T_}, DType::i32);
    tgt = Tensor::empty({B, T_}, DType::i32);
    for (int64_t b = 0; b < B; ++b) {
      if (pos_ == n_) {
        ++epoch_;
        pos_ = 0;
        make_order();
      }
      const int64_t w = order_[static_cast<size_t>(pos_++)];
      for (int64_t t = 0; t < T_; ++t) {
        ids.data<int32_t>()[b * T_ + t] = tokens_[static_cast<size_t>(w * T_ + t)];
        tgt.data<int32_t>()[b * T_ + t] = tokens_[static_cast<size_t>(w * T_ + t + 1)];
      }
    }
  }
  Json cursor() const override { return {{"epoch", epoch_}, {"pos", pos_}}; }
  void restore(const Json& c) override {
    epoch_ = c["epoch"].get<int64_t>();
    pos_ = c["pos"].get<int64_t>();
    make_order();
  }

 private:
  void make_order() {
    order_.resize(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) order_[static_cast<size_t>(i)] = i;
    if (!shuffle_) return;
    Rng r(seed_ + static_cast<uint64_t>(epoch_));
    for (int64_t i = n_ - 1; i > 0; --i)
      std::swap(order_[static_cast<size_t>(i)], order_[r.below(static_cast<uint64_t>(i + 1))]);
  }
  std::vector<int32_t> tokens_;
  int64_t T_, n_;
  bool shuffle_;
  uint64_t seed_;
  int64_t epoch_ = 0, pos_ = 0;
  std::vector<int64_t> order_;
};

std::vector<int32_t> corpus(int64_t n, int V) {
  // A learnable pattern with noise.
  Rng r(99);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + (r.below(4) == 0 ? r.below(V) : 0)) % V);
  return t;
}

TrainConfig make_config(const std::string& dir, const std::string& method, int64_t max_steps, int64_t accum) {
  const std::string y = fmt::format(
      "model: {{init: scratch, vocab_size: 64, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,\n"
      "        num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32}}\n"
      "quant: {{method: {}, group_size: 64}}\n"
      "data: {{train: [unused], seq_len: 16, tokenizer: unused}}\n"
      "optim: {{lr: 3.0e-3, betas: [0.9, 0.95], weight_decay: 0.1, grad_clip: 1.0}}\n"
      "schedule: {{name: cosine, warmup_steps: 2, min_lr_ratio: 0.1}}\n"
      "train: {{micro_batch: 2, grad_accum: {}, max_steps: {}, seed: 5}}\n"
      "checkpoint: {{dir: {}, every: 100, keep: 2}}\n"
      "log: {{every: 1, diagnostics_every: 1}}\n",
      method, accum, max_steps, dir);
  return TrainConfig::parse(y, "test.yaml");
}

std::unique_ptr<Trainer> make_trainer(const TrainConfig& c, bool shuffle = true) {
  auto m = std::make_unique<nn::LlamaForCausalLM>(c.model.shape);
  Rng rng(c.train.seed);
  m->init_weights(rng, c.model.init_std);
  return std::make_unique<Trainer>(c, std::move(m),
                                   std::make_unique<VectorSource>(corpus(4000, 64), c.data.seq_len, shuffle, 11));
}

std::vector<double> losses_of(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream f(metrics);
  for (std::string line; std::getline(f, line);) {
    const Json j = Json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

}  // namespace

TEST_CASE("trainer: 3 steps + SIGINT + resume + 3 steps equals 6 steps bit for bit (shuffle, grad_accum 2)") {
  for (const char* method : {"none", "tequila"}) {
    CAPTURE(method);
    test::TempDir a("tr_full"), b("tr_resume");
    const TrainConfig ca = make_config(a.path.string(), method, 6, 2);
    auto full = make_trainer(ca);
    const RunResult rf = full->run();
    CHECK(rf.steps_done == 6);
    CHECK(rf.signal == 0);
    const std::vector<double> want = losses_of(ca.log.metrics);
    REQUIRE(want.size() == 6);

    const TrainConfig cb = make_config(b.path.string(), method, 6, 2);
    auto first = make_trainer(cb);
    first->diagnostics_hook = [](int64_t step) {
      if (step == 3) Trainer::request_stop(SIGINT);  // what the handler does
      return Json{{"diag", step}};
    };
    const RunResult r1 = first->run();
    CHECK(r1.signal == SIGINT);
    CHECK(r1.steps_done == 3);
    CHECK(latest_checkpoint(cb.checkpoint.dir) == (b.path / "step-000003").string());
    first.reset();

    auto second = make_trainer(cb);  // a fresh process: new model init, new source at its start
    CHECK(second->resume_if_available());
    CHECK(second->state().step == 3);
    const RunResult r2 = second->run();
    CHECK(r2.steps_done == 3);
    const std::vector<double> got = losses_of(cb.log.metrics);
    REQUIRE(got.size() == 6);
    for (size_t i = 0; i < 6; ++i) {
      CAPTURE(i);
      CHECK(std::memcmp(&got[i], &want[i], sizeof(double)) == 0);
    }
    // Same final weights, bit for bit.
    const auto pa = full->model().named_parameters(), pb = second->model().named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      const Tensor x = pa[i].second.value(), y = pb[i].second.value();
      CHECK(std::memcmp(x.data<float>(), y.data<float>(), static_cast<size_t>(x.numel()) * 4) == 0);
    }
    CHECK(second->state().tokens == 6 * 2 * 2 * 16);
    CHECK(want[5] < want[0]);  // it learns
  }
}

TEST_CASE("trainer: two micro-batches of B equal one batch of 2B") {
  test::TempDir d("tr_accum");
  TrainConfig c2 = make_config(d.path.string(), "tequila", 10, 2);
  TrainConfig c1 = make_config(d.path.string(), "tequila", 10, 1);
  for (TrainConfig* c : {&c1, &c2}) {
    c->schedule.name = "constant";
    c->schedule.warmup_steps = 0;
  }
  auto t2 = make_trainer(c2), t1 = make_trainer(c1);
  VectorSource src(corpus(4000, 64), 16, true, 3);
  Tensor i0, g0, i1, g1;
  src.next_batch(2, i0, g0);
  src.next_batch(2, i1, g1);
  Tensor ib = Tensor::empty({4, 16}, DType::i32), gb = Tensor::empty({4, 16}, DType::i32);
  std::memcpy(ib.data<int32_t>(), i0.data<int32_t>(), 32 * 4);
  std::memcpy(ib.data<int32_t>() + 32, i1.data<int32_t>(), 32 * 4);
  std::memcpy(gb.data<int32_t>(), g0.data<int32_t>(), 32 * 4);
  std::memcpy(gb.data<int32_t>() + 32, g1.data<int32_t>(), 32 * 4);
  const StepResult a = t2->train_step({{i0, g0}, {i1, g1}});
  const StepResult b = t1->train_step({{ib, gb}});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-6));
  CHECK(a.grad_norm == doctest::Approx(b.grad_norm).epsilon(1e-4));
  CHECK(a.lr == 3e-3);
  CHECK(b.lr == 3e-3);
  const auto pa = t2->model().named_parameters(), pb = t1->model().named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) TQ_CHECK_CLOSE(pa[i].second.value(), pb[i].second.value(), 1e-4, 1e-6);
}

TEST_CASE("trainer: non-finite steps are skipped and counted; max_bad_steps in a row stops") {
  test::TempDir d("tr_nan");
  TrainConfig c = make_config(d.path.string(), "none", 10, 1);
  c.train.max_bad_steps = 3;
  auto t = make_trainer(c);
  t->step();
  // Poison one weight: every loss from here is NaN.
  auto params = t->model().named_parameters();
  Tensor w = params[1].second.value();
  const Tensor before = params[2].second.value().clone();
  w.data<float>()[0] = std::nanf("");
  StepResult r = t->step();
  CHECK(r.skipped);
  CHECK(std::isnan(r.loss));
  CHECK(t->state().bad_steps == 1);
  TQ_CHECK_CLOSE(params[2].second.value(), before, 0.0, 0.0);  // no update happened
  CHECK(t->optimizer().steps()[2] == 1);
  r = t->step();
  CHECK(t->state().bad_steps == 2);
  const std::string e = test::error_of([&] { t->step(); });
  CHECK(e.find("3 non-finite steps in a row") != std::string::npos);
  CHECK(t->state().total_bad_steps == 3);
  // A good step resets the consecutive count.
  w.data<float>()[0] = 0.01f;
  TrainConfig c2 = c;
  auto t2 = make_trainer(c2);
  Tensor w2 = t2->model().named_parameters()[1].second.value();
  const float keep = w2.data<float>()[0];
  w2.data<float>()[0] = std::nanf("");
  t2->step();
  w2.data<float>()[0] = keep;
  t2->step();
  CHECK(t2->state().bad_steps == 0);
  CHECK(t2->state().total_bad_steps == 1);
}

TEST_CASE("trainer: metrics lines carry the documented fields and the learning rate follows the schedule") {
  test::TempDir d("tr_metrics");
  TrainConfig c = make_config(d.path.string(), "tequila", 4, 1);
  auto t = make_trainer(c);
  int calls = 0;
  t->diagnostics_hook = [&](int64_t step) {
    ++calls;
    return Json{{"dead_fraction", 0.5 + static_cast<double>(step)}};
  };
  t->run();
  CHECK(calls == 4);
  std::ifstream f(c.log.metrics);
  std::vector<Json> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(Json::parse(l));
  REQUIRE(lines.size() == 5);  // start event + 4 steps
  CHECK(lines[0]["event"] == "start");
  for (int s = 1; s <= 4; ++s) {
    const Json& j = lines[static_cast<size_t>(s)];
    for (const char* k : {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "bad_steps"})
      CHECK(j.contains(k));
    CHECK(j["step"] == s);
    CHECK(j["tokens"] == s * 2 * 16);
    CHECK(j["dead_fraction"] == 0.5 + s);
    CHECK(j["lr"].get<double>() == doctest::Approx(3e-3 * t->schedule().factor(s - 1)));
  }
  // The final checkpoint exists and holds the resolved config and the quantization block.
  const std::string ck = latest_checkpoint(c.checkpoint.dir);
  REQUIRE(!ck.empty());
  CHECK(read_json_file(ck + "/config.json")["quantization_config"]["method"] == "tequila");
  CHECK(std::filesystem::exists(ck + "/config.resolved.yaml"));
}
