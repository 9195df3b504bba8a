// llama-bench-like throughput of a LanguageModel: pp<N> (prefill N tokens from an empty context, one
// forward) and tg<N> (decode N tokens one at a time from an empty context), each repeated and
// summarised by the median tokens/s, per thread count. Next to tokens/s it reports the bytes of
// weights read per token, the achieved GB/s against a read-bandwidth probe run in the same process
// next to every repetition (Note [Probe next to each rep] in bench.cpp), and for prefill the achieved
// GOP/s (2 ops per multiply-add over the matmul weights) against the int8 dot-product peak probe. Prefill computes the last token's logits only (as llama-bench), so its
// GOP/s counts the LM head once per prompt, not once per token.
//
//   BenchOptions o;  o.threads = {1, 2};
//   auto rows = run_bench([&](int t) { return make_model(t); }, model_costs(cfg, weight_bytes), o);
//   print_bench_table(rows, stdout);
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "infer/language_model.h"
#include "nn/llama_config.h"

namespace tq::infer {

// One kind of op of a step (infer/step_profile.h): time and (decode) weight bytes per token.
struct BenchOpTime {
  std::string op;
  double ms_per_token = 0;
  double bytes_per_token = 0;  // weights it reads per decoded token (0: none, and in pp rows)
};

struct BenchOptions {
  int64_t n_prompt = 512;     // pp test size (0: skip)
  int64_t n_gen = 128;        // tg test size (0: skip)
  int64_t n_depth = 0;        // context filled (untimed) before every run of a test, like llama-bench -d
  int64_t repetitions = 5;
  std::vector<int> threads = {1};
  uint64_t seed = 1;          // random token ids
  size_t probe_bytes = size_t{1} << 28;  // read-bandwidth probe buffer (256 MiB)
  bool probes = true;         // run the bandwidth / int8 peak probes
  // Optional step profile (Engine with EngineOptions::profile): profile_reset() right before each
  // timed run of a test (after its depth prefill), profile_read(tokens) right after it, per token of
  // the run; BenchRow::profile is the mean over the runs. bench_profile_hooks() builds both.
  std::function<void()> profile_reset;
  std::function<std::vector<BenchOpTime>(int64_t tokens)> profile_read;
};

struct ModelCosts {
  int64_t weight_bytes = 0;  // bytes read per decoded token (weights)
  int64_t layer_macs = 0;    // multiply-adds per token in the decoder layers' linear projections
  int64_t head_macs = 0;     // multiply-adds of the LM head per token whose logits are computed
};
// Per token of a LLaMA config: multiply-adds of the layers' projections (attention scores excluded)
// and of the LM head. A pp<N> test computes logits for the last token only, so its GOP/s counts
// N·layer_macs + head_macs per run; a tg test counts both for every token.
int64_t llama_layer_macs(const nn::LlamaConfig& cfg);
int64_t llama_head_macs(const nn::LlamaConfig& cfg);
ModelCosts llama_costs(const nn::LlamaConfig& cfg, int64_t weight_bytes);

struct BenchRow {
  std::string test;  // "pp512" / "tg128"; "tg128@d512" with BenchOptions::n_depth = 512
  int64_t depth = 0;  // tokens in the context before each timed run
  int threads = 1;
  std::vector<double> tokens_per_s;  // one per repetition
  double median_tps = 0;
  double bytes_per_token = 0;
  double achieved_gbs = 0;     // bytes_per_token * median_tps / 1e9
  double probe_gbs = 0;        // median read-bandwidth probe next to this test's reps (NaN: not run)
  std::vector<double> probe_reps_gbs;  // the probes: before each timed rep, then after the last
  double probe_fraction = 0;   // median over reps of achieved GB/s / mean of the probes around it
  double achieved_gops = 0;    // 2 * macs * median_tps / 1e9
  double peak_gops = 0;        // int8 dot-product peak probe (NaN when not available)
  std::string model;           // describe()
  std::vector<BenchOpTime> profile;  // with BenchOptions::profile_read: per op, per token
};

class Engine;
// profile_reset / profile_read for the engine that get() returns when called (the bench rebuilds
// the model per thread count); get() must return an Engine built with EngineOptions::profile.
void bench_profile_hooks(const std::function<Engine*()>& get, BenchOptions& o);

// make(threads) builds (or re-configures) the model for that thread count; tq::set_num_threads(t) is
// called before it. One warm-up run precedes the timed repetitions of each test.
std::vector<BenchRow> run_bench(const std::function<LanguageModel&(int)>& make, const ModelCosts& costs,
                                const BenchOptions& o, const std::function<void(const BenchRow&)>& on_row = {});

void print_bench_table(const std::vector<BenchRow>& rows, std::FILE* out);
Json bench_json(const std::vector<BenchRow>& rows);

// The int8 dot-product peak of the best ISA (quant/roofline.h; NaN where the CPU has none). The read
// probe is quant::ReadBandwidthProbe, measured next to each repetition.
double int8_peak_probe_gops(int threads);

// HF-shaped configs for benchmarks with random weights: tiny, small, llama-3.2-1b, llama-3.2-3b.
nn::LlamaConfig shape_config(const std::string& name);

}  // namespace tq::infer
