// tqdemo: the smallest end-to-end run of libtequila in one file (tqtrain is the config-driven trainer). It builds a tiny
// nn::LlamaForCausalLM (2 layers, GQA, RoPE, SwiGLU) over a character vocabulary, trains it on a short
// built-in text with AdamW, saves it as an HF-layout checkpoint, loads it back, reports its perplexity
// and greedy-generates text with the reloaded model. Exit status is non-zero if the loss did not halve.
//   tqdemo [steps] [seed] [out_dir]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "infer/perplexity.h"
#include "nn/llama.h"
#include "quant/quant.h"
#include "train/adamw.h"

using namespace tq;
using namespace tq::autograd;

namespace {

const char* kText =
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters. ";

}  // namespace

int main(int argc, char** argv) {
  try {
    init_logging("info", "");
    set_num_threads(0);
    const int steps = argc > 1 ? std::atoi(argv[1]) : 300;
    const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 42;
    const std::string out_dir = argc > 3 ? argv[3] : "runs/tqdemo";
    TQ_CHECK(steps > 0, "[tqdemo] steps must be a positive integer, got '{}'", argc > 1 ? argv[1] : "");

    // Character vocabulary of the text.
    const std::string text = kText;
    std::map<char, int32_t> to_id;
    std::string to_char;
    for (char ch : text)
      if (!to_id.count(ch)) to_id[ch] = 0;
    for (auto& [ch, id] : to_id) {
      id = static_cast<int32_t>(to_char.size());
      to_char += ch;
    }
    nn::LlamaConfig c;
    c.vocab_size = static_cast<int64_t>(to_char.size());
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 64;
    c.bos_token_id = 0;
    c.eos_token_id = 0;
    const int64_t B = 8, T = 48;
    nn::LlamaForCausalLM model(c);
    Rng rng(seed);
    model.init_weights(rng, 0.1);
    spdlog::info("tqdemo: {} parameters, vocab {}, {} layers, cpu {} ({}), {} threads", model.num_parameters(),
                 c.vocab_size, c.num_hidden_layers, cpu_model_name(), cpu_target_name(cpu_target()), num_threads());

    // AdamW (train/adamw.h, no weight decay) over the model's current parameters: built per phase,
    // after quantize_model swapped the linears.
    const int64_t n_windows = static_cast<int64_t>(text.size()) - T - 1;
    auto train = [&](nn::LlamaForCausalLM& model_, int n_steps, double peak_lr, const char* phase) {
      const nn::LlamaForCausalLM& m = model_;
      train::AdamWOptions ao;
      ao.beta1 = 0.9;
      ao.beta2 = 0.99;
      ao.eps = 1e-8;
      train::AdamW opt(m.named_parameters(), ao);
      double first_loss = 0, last_loss = 0;
      for (int step = 1; step <= n_steps; ++step) {
        Tensor ids = Tensor::empty({B, T}, DType::i32), tgt = Tensor::empty({B, T}, DType::i32);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t start = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_windows)));
          for (int64_t t = 0; t < T; ++t) {
            ids.data<int32_t>()[b * T + t] = to_id[text[static_cast<size_t>(start + t)]];
            tgt.data<int32_t>()[b * T + t] = to_id[text[static_cast<size_t>(start + t + 1)]];
          }
        }
        Tape tape;
        RecordScope rec(tape);
        const Var loss = m.loss(ids, tgt);
        tape.backward(loss);
        opt.step(peak_lr * std::min(1.0, step / 20.0));
        model_.zero_grad();
        last_loss = loss.value().item();
        if (step == 1) first_loss = last_loss;
        if (step == 1 || step % 25 == 0 || step == n_steps) spdlog::info("{} step {:4d}  loss {:.4f}", phase, step, last_loss);
      }

    return std::make_pair(first_loss, last_loss);
    };
    const auto [first_loss, last_loss] = train(model, steps, 3e-3, "fp32");

    // Save as an HF-layout checkpoint, load it back, and use the reloaded model from here on.
    nn::save_llama(model, out_dir);
    const auto reloaded = nn::load_llama(out_dir);
    std::vector<int32_t> all(text.size());
    for (size_t i = 0; i < text.size(); ++i) all[i] = to_id[text[i]];
    const infer::PerplexityResult ppl = infer::perplexity(*reloaded, all, T);
    spdlog::info("saved {} and reloaded it: perplexity of the training text {:.3f} over {} tokens", out_dir,
                 ppl.ppl, ppl.tokens);

    // Tequila QAT: swap the seven projections for ternary QuantLinear layers and keep training.
    quant::QuantConfig qc;
    qc.method = "tequila";
    qc.group_size = 64;  // hidden 64: every quantized input width is a multiple of 64
    const int64_t swapped = quant::quantize_model(*reloaded, qc);
    const infer::PerplexityResult ppl_q0 = infer::perplexity(*reloaded, all, T);
    const auto [q_first, q_last] = train(*reloaded, std::max(1, steps / 2), 1e-3, "tequila");
    const infer::PerplexityResult ppl_q = infer::perplexity(*reloaded, all, T);
    spdlog::info("tequila QAT ({} ternary linears, group {}, lambda {}): perplexity {:.3f} right after "
                 "quantization, {:.3f} after {} QAT steps (loss {:.4f} -> {:.4f})", swapped, qc.group_size,
                 qc.lambda, ppl_q0.ppl, ppl_q.ppl, std::max(1, steps / 2), q_first, q_last);

    // Greedy generation with the ternary model (full recompute per token; the KV-cache engine arrives
    // with tqinfer).
    std::string out = "It is a truth";
    NoGradGuard no_grad;
    for (int i = 0; i < 120; ++i) {
      const int64_t n = std::min<int64_t>(static_cast<int64_t>(out.size()), T);
      Tensor ids = Tensor::empty({1, n}, DType::i32);
      for (int64_t t = 0; t < n; ++t)
        ids.data<int32_t>()[t] = to_id[out[out.size() - static_cast<size_t>(n) + static_cast<size_t>(t)]];
      const Tensor logits = reloaded->forward(ids).value();  // [1, n, V]
      const float* last = logits.data<float>() + (n - 1) * c.vocab_size;
      int64_t best = 0;
      for (int64_t v = 1; v < c.vocab_size; ++v)
        if (last[v] > last[best]) best = v;
      out += to_char[static_cast<size_t>(best)];
    }
    std::printf("generated: %s\n", out.c_str());
    std::printf("fp32: loss fell from %.4f to %.4f over %d steps; perplexity %.3f\n", first_loss, last_loss, steps,
                ppl.ppl);
    std::printf("tequila ternary: perplexity %.3f after quantization, %.3f after QAT\n", ppl_q0.ppl, ppl_q.ppl);
    if (!(last_loss < 0.5 * first_loss)) {
      spdlog::error("tqdemo: the loss did not fall by half — training is broken");
      return 1;
    }
    return 0;
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
}
