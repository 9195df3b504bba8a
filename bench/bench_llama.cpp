// One training step's forward + backward of a LLaMA at the Llama-3.2-1B shape (vocab 128256,
// hidden 2048, 16 layers, 32/8 heads, head_dim 64, FFN 8192, tied embeddings, llama3 RoPE) with
// random f32 weights: time per pass and peak RSS. Needs ~15 GB at T = 512 (weights, gradients and
// activations in f32).
//
//   ./build/bench/bench_llama [T=512] [layers=16] [reps=2] [vocab=128256]   # B = 1
// TQ_THREADS=n pins the thread count; a small vocab isolates the decoder layers when profiling.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "autograd/tape.h"
#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "nn/llama.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double peak_rss_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  try {
    tq::init_logging("warn", "");
    tq::set_num_threads(0);
    const int64_t T = argc > 1 ? std::atoll(argv[1]) : 512;
    const int64_t layers = argc > 2 ? std::atoll(argv[2]) : 16;
    const int reps = argc > 3 ? std::atoi(argv[3]) : 2;
    const int64_t vocab = argc > 4 ? std::atoll(argv[4]) : 128256;

    tq::nn::LlamaConfig c;
    c.vocab_size = vocab;
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_hidden_layers = layers;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 64;
    c.max_position_embeddings = 131072;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000;
    c.rope.type = "llama3";
    c.rope.factor = 32;
    c.rope.low_freq_factor = 1;
    c.rope.high_freq_factor = 4;
    c.rope.original_max_position_embeddings = 8192;
    c.tie_word_embeddings = true;
    c.bos_token_id = vocab > 128001 ? 128000 : 1;
    c.eos_token_id = vocab > 128001 ? 128001 : 2;

    std::printf("bench_llama: %s, %d threads, B=1 T=%lld layers=%lld\n",
                tq::cpu_model_name().c_str(), tq::num_threads(), static_cast<long long>(T),
                static_cast<long long>(layers));
    auto t0 = std::chrono::steady_clock::now();
    tq::nn::LlamaForCausalLM model(c);
    tq::Rng rng(42);
    model.init_weights(rng, 0.02);
    std::printf("init: %lld parameters in %.1f s, peak RSS %.2f GiB\n",
                static_cast<long long>(model.num_parameters()), seconds_since(t0), peak_rss_gib());

    tq::Tensor ids = tq::Tensor::empty({1, T}, tq::DType::i32);
    tq::Tensor targets = tq::Tensor::empty({1, T}, tq::DType::i32);
    for (int64_t t = 0; t < T; ++t) {
      ids.data<int32_t>()[t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
      targets.data<int32_t>()[t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    }
    for (int r = 0; r < reps; ++r) {
      model.zero_grad();
      tq::autograd::Tape tape;
      tq::autograd::RecordScope rec(tape);
      t0 = std::chrono::steady_clock::now();
      const tq::autograd::Var loss = model.loss(ids, targets);
      const double fwd = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      tape.backward(loss);
      const double bwd = seconds_since(t0);
      // ~6 N T FLOPs per token-step for forward + backward of the dense weights.
      const double flops =
          6.0 * static_cast<double>(model.num_parameters()) * static_cast<double>(T);
      std::printf(
          "pass %d: loss %.4f  forward %.2f s  backward %.2f s  total %.2f s  "
          "(%.1f GFLOP/s dense-weight estimate, %.0f tok/s)  peak RSS %.2f GiB\n",
          r, loss.value().item(), fwd, bwd, fwd + bwd, flops / (fwd + bwd) * 1e-9,
          static_cast<double>(T) / (fwd + bwd), peak_rss_gib());
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_llama: %s\n", e.what());
    return 1;
  }
}
