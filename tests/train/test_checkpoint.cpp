// train/checkpoint: round trip, clear errors on damaged files, atomicity under a simulated crash,
// keep-last-K.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "autograd/tape.h"
#include "core/safetensors.h"
#include "nn/llama.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"

using namespace tq;
using namespace tq::train;
namespace fs = std::filesystem;

namespace {

nn::LlamaConfig tiny() {
  nn::LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  return c;
}

struct Setup {
  std::unique_ptr<nn::LlamaForCausalLM> model;
  std::unique_ptr<AdamW> opt;
  Setup(uint64_t seed, bool train_step) {
    model = std::make_unique<nn::LlamaForCausalLM>(tiny());
    Rng rng(seed);
    model->init_weights(rng);
    opt = std::make_unique<AdamW>(model->named_parameters());
    if (train_step) {
      Tensor ids = Tensor::empty({2, 8}, DType::i32), tgt = Tensor::empty({2, 8}, DType::i32);
      for (int64_t i = 0; i < 16; ++i) {
        ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(64));
        tgt.data<int32_t>()[i] = static_cast<int32_t>(rng.below(64));
      }
      autograd::Tape tape;
      autograd::RecordScope rec(tape);
      tape.backward(model->loss(ids, tgt));
      opt->step(1e-2);
      model->zero_grad();
    }
  }
};

TrainerState state_at(int64_t step) {
  TrainerState s;
  s.step = step;
  s.tokens = step * 100;
  s.rng = Rng(7).state_string();
  s.data_cursor = {{"window", step * 4}, {"epoch", 0}};
  s.config_hash = "abc";
  return s;
}

bool equal_tensors(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data<float>(), cb.data<float>(), static_cast<size_t>(a.numel()) * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("checkpoint: round trip restores weights, moments, step counts and state") {
  test::TempDir tmp("ckpt_rt");
  Setup a(1, true);
  quant::QuantConfig qc;
  qc.group_size = 32;
  CheckpointOptions o;
  o.quant = &qc;
  o.resolved_config_yaml = "a: 1\n";
  const std::string dir = save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(5), o);
  CHECK(dir == (tmp.path / "step-000005").string());
  CHECK(resolve_checkpoint(tmp.path.string()) == dir);
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.json",
                        "config.resolved.yaml"})
    CHECK(fs::exists(fs::path(dir) / f));
  const Json cfg = read_json_file(dir + "/config.json");
  CHECK(cfg["quantization_config"]["method"] == "tequila");
  CHECK(cfg["quantization_config"]["group_size"] == 32);

  Setup b(2, false);  // different weights, fresh optimizer
  const TrainerState st = load_checkpoint(dir, *b.model, *b.opt);
  CHECK(st.step == 5);
  CHECK(st.tokens == 500);
  CHECK(st.data_cursor["window"] == 20);
  CHECK(st.rng == Rng(7).state_string());
  const auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) CHECK(equal_tensors(pa[i].second.value(), pb[i].second.value()));
  const auto sa = a.opt->state_tensors(), sb = b.opt->state_tensors();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CHECK(sa[i].first == sb[i].first);
    CHECK(equal_tensors(sa[i].second, sb[i].second));
  }
  CHECK(a.opt->steps() == b.opt->steps());
  CHECK(b.opt->steps()[0] == 1);
}

TEST_CASE("checkpoint: damaged files give errors naming file and field") {
  test::TempDir tmp("ckpt_bad");
  Setup a(1, true);
  const std::string dir = save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(3), {});
  SUBCASE("truncated model.safetensors") {
    const fs::path p = fs::path(dir) / "model.safetensors";
    fs::resize_file(p, fs::file_size(p) - 100);
    Setup b(2, false);
    const std::string e = test::error_of([&] { load_checkpoint(dir, *b.model, *b.opt); });
    CHECK(e.find("model.safetensors") != std::string::npos);
  }
  SUBCASE("corrupt trainer_state.json") {
    std::ofstream(fs::path(dir) / "trainer_state.json") << "{\"step\": 3, \"tokens\": ";
    Setup b(2, false);
    const std::string e = test::error_of([&] { load_checkpoint(dir, *b.model, *b.opt); });
    CHECK(e.find("trainer_state.json") != std::string::npos);
    CHECK(e.find("parse error") != std::string::npos);
  }
  SUBCASE("wrong field type in trainer_state.json") {
    Json j = read_json_file(dir + "/trainer_state.json");
    j["step"] = "three";
    write_json_file(dir + "/trainer_state.json", j);
    Setup b(2, false);
    const std::string e = test::error_of([&] { load_checkpoint(dir, *b.model, *b.opt); });
    CHECK(e.find("trainer_state.json") != std::string::npos);
    CHECK(e.find("'step'") != std::string::npos);
  }
  SUBCASE("optimizer state of another model") {
    Json j = read_json_file(dir + "/trainer_state.json");
    j["param_steps"].erase("lm_head.weight");
    write_json_file(dir + "/trainer_state.json", j);
    Setup b(2, false);
    const std::string e = test::error_of([&] { load_checkpoint(dir, *b.model, *b.opt); });
    CHECK(e.find("param_steps") != std::string::npos);
    CHECK(e.find("lm_head.weight") != std::string::npos);
  }
  SUBCASE("not a checkpoint") {
    const std::string e = test::error_of([&] { resolve_checkpoint(tmp.file("nothing")); });
    CHECK(e.find("neither a checkpoint directory") != std::string::npos);
  }
}

TEST_CASE("checkpoint: a crash mid-write leaves latest on the previous good checkpoint; keep-last-K") {
  test::TempDir tmp("ckpt_crash");
  Setup a(1, true);
  CheckpointOptions o;
  o.keep = 2;
  save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(1), o);
  for (const char* when : {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "rename"}) {
    CAPTURE(when);
    CheckpointOptions crash = o;
    crash.after_file = [&](const std::string& f) {
      if (f == when) throw std::runtime_error("simulated crash");
    };
    CHECK_THROWS(save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(2), crash));
    CHECK(latest_checkpoint(tmp.path.string()) == (tmp.path / "step-000001").string());
  }
  // The interrupted save before the rename left nothing behind; the one after it left a complete
  // directory that `latest` does not name yet.
  save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(2), o);
  save_checkpoint(tmp.path.string(), *a.model, *a.opt, state_at(3), o);
  CHECK(latest_checkpoint(tmp.path.string()) == (tmp.path / "step-000003").string());
  CHECK(!fs::exists(tmp.path / "step-000001"));  // keep = 2
  CHECK(fs::exists(tmp.path / "step-000002"));
  int tmp_dirs = 0;
  for (const auto& e : fs::directory_iterator(tmp.path))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) ++tmp_dirs;
  CHECK(tmp_dirs == 0);
  Setup b(2, false);
  CHECK(load_checkpoint(latest_checkpoint(tmp.path.string()), *b.model, *b.opt).step == 3);
}
