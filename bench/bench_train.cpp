// Tokens per second of one training step (forward, backward, clip, AdamW) of the `small` LLaMA
// (design.md §4: 6 layers, hidden 384, FFN 1024, 6 heads / 2 KV heads, vocab 4096, seq 256) through
// Trainer::train_step, in full precision and with Tequila QAT (group 128, λ 1e-3); prints both and
// the Tequila/fp32 step-time ratio (target ≤ 1.15). scripts/bench_train_torch.py runs the same step
// in PyTorch on the same threads (target: ours ≥ 1.5× its tokens/s).
//
//   build/release/bench/bench_train [micro_batch=4] [reps=5]     # TQ_THREADS=n pins the threads
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "train/trainer.h"

using namespace tq;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double time_step(const std::string& method, int64_t B, int reps) {
  const int64_t T = 256;
  const std::string yaml = fmt::format(
      "model: {{init: scratch, vocab_size: 4096, hidden_size: 384, intermediate_size: 1024, num_hidden_layers: 6,\n"
      "        num_attention_heads: 6, num_key_value_heads: 2, max_position_embeddings: 256, tie_word_embeddings: true}}\n"
      "quant: {{method: {}, group_size: 128, lambda: 1.0e-3}}\n"
      "data: {{train: [unused], seq_len: {}, tokenizer: unused}}\n"
      "optim: {{lr: 1.0e-3, weight_decay: 0.1, grad_clip: 1.0}}\n"
      "train: {{micro_batch: {}, max_steps: 1000}}\n"
      "checkpoint: {{dir: unused}}\n",
      method, T, B);
  const train::TrainConfig cfg = train::TrainConfig::parse(yaml, "bench");
  auto model = std::make_unique<nn::LlamaForCausalLM>(cfg.model.shape);
  Rng rng(1);
  model->init_weights(rng, 0.02);
  const int64_t params = model->num_parameters();
  train::Trainer trainer(cfg, std::move(model), nullptr);
  Tensor ids = Tensor::empty({B, T}, DType::i32), tgt = Tensor::empty({B, T}, DType::i32);
  for (int64_t i = 0; i < B * T; ++i) {
    ids.data<int32_t>()[i] = static_cast<int32_t>(rng.below(4096));
    tgt.data<int32_t>()[i] = static_cast<int32_t>(rng.below(4096));
  }
  std::vector<double> ts;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.train_step({{ids, tgt}});
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) ts.push_back(dt);
  }
  const double s = median(ts);
  std::printf("%-8s %lld params  B=%lld T=%lld  step %.3f s  %.0f tokens/s\n", method.c_str(),
              static_cast<long long>(params), static_cast<long long>(B), static_cast<long long>(T), s,
              static_cast<double>(B * T) / s);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    init_logging("warn", "");
    set_num_threads(0);
    const int64_t B = argc > 1 ? std::atoll(argv[1]) : 4;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
    std::printf("bench_train: small LLaMA, %d threads, cpu %s (%s), median of %d steps\n", num_threads(),
                cpu_model_name().c_str(), cpu_target_name(cpu_target()), reps);
    const double fp = time_step("none", B, reps);
    const double tq = time_step("tequila", B, reps);
    std::printf("tequila/fp32 step time: %.3f (target <= 1.15)\n", tq / fp);
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 2;
  }
}
