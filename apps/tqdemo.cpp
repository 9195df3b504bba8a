// tqdemo: the smallest end-to-end run of libtequila until tqtrain/tqinfer land. It builds a tiny
// LLaMA-shaped model (embedding, RMSNorm, RoPE, grouped-query causal attention, SwiGLU MLP, LM head)
// from the autograd ops, trains it on a short built-in text with Adam for a few hundred steps, and
// greedy-generates text from it. Exit status is non-zero if the loss did not fall by half.
//   tqdemo [steps] [seed]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/cross_entropy.h"
#include "autograd/ops.h"
#include "autograd/rms_norm.h"
#include "autograd/rope.h"
#include "autograd/swiglu.h"
#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"

using namespace tq;
using namespace tq::autograd;

namespace {

const char* kText =
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters. ";

// Legend: B batch, T time, C hidden, H heads, Hkv KV heads, D head_dim, F FFN width, V vocab.
struct Config {
  int64_t V = 0, C = 64, H = 4, Hkv = 2, D = 16, F = 128, L = 2, T = 48, B = 8;
};

struct Layer {
  Var attn_norm, q, k, v, o, mlp_norm, gate, up, down;
};

struct Model {
  Config cfg;
  Var embed;  // [V, C]
  std::vector<Layer> layers;
  Var norm, head;  // [C], [V, C]
  std::vector<double> inv_freq;

  std::vector<Var> params() const {
    std::vector<Var> p{embed, norm, head};
    for (const Layer& l : layers)
      for (const Var& v : {l.attn_norm, l.q, l.k, l.v, l.o, l.mlp_norm, l.gate, l.up, l.down}) p.push_back(v);
    return p;
  }

  // ids i32 [B, T] -> logits [B*T, V]
  Var forward(const Tensor& ids) const {
    const int64_t B = ids.size(0), T = ids.size(1);
    const Config& c = cfg;
    Var x = embedding(embed, ids);  // [B, T, C]
    for (const Layer& l : layers) {
      const Var h = rms_norm(x, l.attn_norm, 1e-5);
      const Var q = rope(reshape(linear(h, l.q), {B, T, c.H, c.D}), inv_freq, 0);
      const Var k = rope(reshape(linear(h, l.k), {B, T, c.Hkv, c.D}), inv_freq, 0);
      const Var v = reshape(linear(h, l.v), {B, T, c.Hkv, c.D});
      const Var a = causal_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(c.D)));
      x = add(x, linear(reshape(a, {B, T, c.H * c.D}), l.o));
      const Var m = rms_norm(x, l.mlp_norm, 1e-5);
      x = add(x, linear(swiglu(linear(m, l.gate), linear(m, l.up)), l.down));
    }
    return reshape(linear(rms_norm(x, norm, 1e-5), head), {B * T, c.V});
  }
};

Var init_param(const Shape& s, Rng& rng, double stddev) { return Var::parameter(Tensor::randn(s, rng, stddev)); }
Var ones_param(int64_t n) { return Var::parameter(Tensor::ones({n})); }

}  // namespace

int main(int argc, char** argv) {
  try {
    init_logging("info", "");
    set_num_threads(0);
    const int steps = argc > 1 ? std::atoi(argv[1]) : 300;
    const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 42;
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
    Model m;
    m.cfg.V = static_cast<int64_t>(to_char.size());
    const Config& c = m.cfg;
    Rng rng(seed);
    m.embed = init_param({c.V, c.C}, rng, 0.5);
    for (int64_t i = 0; i < c.L; ++i) {
      const double s = 1.0 / std::sqrt(static_cast<double>(c.C));
      m.layers.push_back({ones_param(c.C), init_param({c.H * c.D, c.C}, rng, s), init_param({c.Hkv * c.D, c.C}, rng, s),
                          init_param({c.Hkv * c.D, c.C}, rng, s), init_param({c.C, c.H * c.D}, rng, s * 0.5),
                          ones_param(c.C), init_param({c.F, c.C}, rng, s), init_param({c.F, c.C}, rng, s),
                          init_param({c.C, c.F}, rng, 0.5 / std::sqrt(static_cast<double>(c.F)))});
    }
    m.norm = ones_param(c.C);
    m.head = init_param({c.V, c.C}, rng, 1.0 / std::sqrt(static_cast<double>(c.C)));
    RopeConfig rc;
    rc.head_dim = c.D;
    m.inv_freq = rope_inv_freq(rc);
    std::vector<Var> params = m.params();
    int64_t n_params = 0;
    for (const Var& p : params) n_params += p.numel();
    spdlog::info("tqdemo: {} parameters, vocab {}, {} layers, cpu {} ({}), {} threads", n_params, c.V, c.L,
                 cpu_model_name(), cpu_target_name(cpu_target()), num_threads());

    // Adam state (a stand-in until train/ has AdamW).
    std::vector<std::vector<double>> m1(params.size()), m2(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      m1[i].assign(static_cast<size_t>(params[i].numel()), 0.0);
      m2[i].assign(static_cast<size_t>(params[i].numel()), 0.0);
    }
    const int64_t n_windows = static_cast<int64_t>(text.size()) - c.T - 1;
    double first_loss = 0, last_loss = 0;
    for (int step = 1; step <= steps; ++step) {
      Tensor ids = Tensor::empty({c.B, c.T}, DType::i32), tgt = Tensor::empty({c.B * c.T}, DType::i32);
      for (int64_t b = 0; b < c.B; ++b) {
        const int64_t start = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_windows)));
        for (int64_t t = 0; t < c.T; ++t) {
          ids.data<int32_t>()[b * c.T + t] = to_id[text[static_cast<size_t>(start + t)]];
          tgt.data<int32_t>()[b * c.T + t] = to_id[text[static_cast<size_t>(start + t + 1)]];
        }
      }
      Tape tape;
      RecordScope rec(tape);
      const Var loss = cross_entropy(m.forward(ids), tgt);
      tape.backward(loss);
      const double lr = 3e-3 * std::min(1.0, step / 20.0), b1 = 0.9, b2 = 0.99;
      for (size_t i = 0; i < params.size(); ++i) {
        float* w = params[i].value().data<float>();
        const float* g = params[i].grad().data<float>();
        for (int64_t j = 0; j < params[i].numel(); ++j) {
          double& a = m1[i][static_cast<size_t>(j)];
          double& v = m2[i][static_cast<size_t>(j)];
          a = b1 * a + (1 - b1) * g[j];
          v = b2 * v + (1 - b2) * g[j] * g[j];
          const double ah = a / (1 - std::pow(b1, step)), vh = v / (1 - std::pow(b2, step));
          w[j] -= static_cast<float>(lr * ah / (std::sqrt(vh) + 1e-8));
        }
        params[i].zero_grad();
      }
      last_loss = loss.value().item();
      if (step == 1) first_loss = last_loss;
      if (step == 1 || step % 25 == 0 || step == steps) spdlog::info("step {:4d}  loss {:.4f}", step, last_loss);
    }

    // Greedy generation (full recompute per token; the KV-cache engine arrives with tqinfer).
    std::string out = "It is a truth";
    NoGradGuard no_grad;
    for (int i = 0; i < 120; ++i) {
      const int64_t T = std::min<int64_t>(static_cast<int64_t>(out.size()), c.T);
      Tensor ids = Tensor::empty({1, T}, DType::i32);
      for (int64_t t = 0; t < T; ++t)
        ids.data<int32_t>()[t] = to_id[out[out.size() - static_cast<size_t>(T) + static_cast<size_t>(t)]];
      const Tensor logits = m.forward(ids).value();
      const float* last = logits.data<float>() + (T - 1) * c.V;
      int64_t best = 0;
      for (int64_t v = 1; v < c.V; ++v)
        if (last[v] > last[best]) best = v;
      out += to_char[static_cast<size_t>(best)];
    }
    std::printf("generated: %s\n", out.c_str());
    std::printf("loss fell from %.4f to %.4f over %d steps\n", first_loss, last_loss, steps);
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
