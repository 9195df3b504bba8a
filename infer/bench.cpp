#include "infer/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "infer/engine.h"

#include "quant/roofline.h"

namespace tq::infer {

// Note [Probe next to each rep]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// On the shared VM the read probe moves by up to 2× from one minute to the next (29–78 GB/s in one
// day), so a probe taken once before a test that runs for several seconds can sit in a different
// regime from the test: "% of probe" then swung between 51% and 91% for the same code. The bench
// therefore keeps one probe buffer per thread count and measures it before every timed repetition
// and after the last; repetition i is compared with the mean of the probes on either side of it, and
// the row reports the median of those fractions (and of the probes). Each probe reads 256 MiB ten
// times (≈ 50 ms), against ≥ 1 s per decode repetition of the 1B shape.

namespace {

double median(std::vector<double> x) {
  if (x.empty()) return 0;
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

}  // namespace

int64_t llama_layer_macs(const nn::LlamaConfig& c) {
  const int64_t C = c.hidden_size, D = c.resolved_head_dim(), H = c.num_attention_heads,
                Hkv = c.resolved_kv_heads(), F = c.intermediate_size;
  const int64_t per_layer = C * H * D + 2 * C * Hkv * D + H * D * C + 3 * C * F;
  return c.num_hidden_layers * per_layer;
}

int64_t llama_head_macs(const nn::LlamaConfig& c) { return c.vocab_size * c.hidden_size; }

ModelCosts llama_costs(const nn::LlamaConfig& c, int64_t weight_bytes) {
  return {weight_bytes, llama_layer_macs(c), llama_head_macs(c)};
}

double int8_peak_probe_gops(int threads) {
  const double g = quant::int8_dot_peak_gops(threads);
  return g > 0 ? g : std::numeric_limits<double>::quiet_NaN();  // 0: scalar only, no int8 dot product
}

std::vector<BenchRow> run_bench(const std::function<LanguageModel&(int)>& make, const ModelCosts& costs,
                                const BenchOptions& o, const std::function<void(const BenchRow&)>& on_row) {
  TQ_CHECK(o.repetitions >= 1, "[bench] repetitions must be >= 1, got {}", o.repetitions);
  TQ_CHECK(!o.threads.empty(), "[bench] no thread counts given");
  TQ_CHECK(o.n_prompt >= 0 && o.n_gen >= 0 && o.n_prompt + o.n_gen > 0,
           "[bench] need -p > 0 or -n > 0 (got {} and {})", o.n_prompt, o.n_gen);
  TQ_CHECK(o.n_depth >= 0, "[bench] depth (-d) must be >= 0, got {}", o.n_depth);
  std::vector<BenchRow> rows;
  using Clock = std::chrono::steady_clock;
  for (int t : o.threads) {
    TQ_CHECK(t >= 1, "[bench] thread count must be >= 1, got {}", t);
    set_num_threads(t);
    LanguageModel& lm = make(t);
    const int64_t V = lm.vocab_size();
    const int64_t need = o.n_depth + std::max(o.n_prompt, o.n_gen);
    TQ_CHECK(need <= lm.max_context(),
             "[bench] the test needs {} tokens of context (depth {} + {}); the model holds {} — hint: "
             "lower -d / -p / -n",
             need, o.n_depth, std::max(o.n_prompt, o.n_gen), lm.max_context());
    Rng rng(o.seed);
    std::vector<int32_t> ids(static_cast<size_t>(need));  // the depth's tokens, then the test's
    for (auto& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
    std::vector<float> logits(static_cast<size_t>(V));
    // The read probe is measured next to every timed repetition (Note [Probe next to each rep]).
    std::unique_ptr<quant::ReadBandwidthProbe> probe;
    if (o.probes) probe = std::make_unique<quant::ReadBandwidthProbe>(t, o.probe_bytes);
    const double peak = o.probes ? int8_peak_probe_gops(t) : std::numeric_limits<double>::quiet_NaN();
    auto run_test = [&](const std::string& name, int64_t n, bool prefill) {
      BenchRow row;
      row.test = o.n_depth > 0 ? fmt::format("{}@d{}", name, o.n_depth) : name;
      row.depth = o.n_depth;
      row.threads = t;
      row.model = lm.describe();
      std::vector<double> probes;  // probes[i] before timed rep i, probes[R] after the last
      for (int64_t rep = 0; rep <= o.repetitions; ++rep) {  // rep 0 warms up
        if (probe && rep > 0) probes.push_back(probe->measure());
        lm.reset();
        if (o.n_depth > 0) lm.forward(ids.data(), o.n_depth, logits.data(), false);  // untimed context
        const int32_t* test_ids = ids.data() + o.n_depth;
        const bool profiled = rep > 0 && o.profile_reset && o.profile_read;
        if (profiled) o.profile_reset();
        const auto t0 = Clock::now();
        if (prefill) {
          lm.forward(test_ids, n, logits.data(), /*all_logits=*/false);
        } else {
          for (int64_t i = 0; i < n; ++i) lm.forward(test_ids + i, 1, logits.data(), false);
        }
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        if (rep > 0) row.tokens_per_s.push_back(static_cast<double>(n) / s);
        if (profiled) {  // the mean over the timed runs, op by op
          const std::vector<BenchOpTime> p = o.profile_read(n);
          if (row.profile.empty()) row.profile.assign(p.size(), BenchOpTime{});
          for (size_t k = 0; k < p.size() && k < row.profile.size(); ++k) {
            row.profile[k].op = p[k].op;
            row.profile[k].ms_per_token += p[k].ms_per_token / static_cast<double>(o.repetitions);
            row.profile[k].bytes_per_token = prefill ? 0.0 : p[k].bytes_per_token;
          }
        }
      }
      row.median_tps = median(row.tokens_per_s);
      row.bytes_per_token = prefill ? static_cast<double>(costs.weight_bytes) / static_cast<double>(n)
                                    : static_cast<double>(costs.weight_bytes);
      row.achieved_gbs = row.bytes_per_token * row.median_tps / 1e9;
      row.probe_gbs = std::numeric_limits<double>::quiet_NaN();
      row.probe_fraction = std::numeric_limits<double>::quiet_NaN();
      if (probe) {
        probes.push_back(probe->measure());
        std::vector<double> fractions;
        for (size_t i = 0; i < row.tokens_per_s.size(); ++i) {
          const double around = 0.5 * (probes[i] + probes[i + 1]);
          fractions.push_back(row.bytes_per_token * row.tokens_per_s[i] / 1e9 / around);
        }
        row.probe_reps_gbs = probes;
        row.probe_gbs = median(probes);
        row.probe_fraction = median(fractions);
      }
      // Multiply-adds per token: prefill computes the head for the last token only.
      const double macs = static_cast<double>(costs.layer_macs) +
                          (prefill ? static_cast<double>(costs.head_macs) / static_cast<double>(n)
                                   : static_cast<double>(costs.head_macs));
      row.achieved_gops = 2.0 * macs * row.median_tps / 1e9;
      row.peak_gops = peak;
      if (on_row) on_row(row);
      rows.push_back(row);
    };
    if (o.n_prompt > 0) run_test("pp" + std::to_string(o.n_prompt), o.n_prompt, true);
    if (o.n_gen > 0) run_test("tg" + std::to_string(o.n_gen), o.n_gen, false);
  }
  return rows;
}

namespace {

// The profile of a row (BenchOptions::profile_read): the ops of a step add up to its wall time on
// each thread; GB/s only for decode ops that stream weights (not a few kB of norm weights).
void print_profile(const BenchRow& r, std::FILE* out) {
  double total = 0, bytes = 0;
  for (const BenchOpTime& op : r.profile) {
    total += op.ms_per_token;
    bytes += op.bytes_per_token;
  }
  const char* row = "| %-33s | %9s | %9s | %9s | %8s | %13s |\n";
  std::fprintf(out, "\n%s, %d thread(s), per %s token (mean of the threads, timed reps):\n",
               r.test.c_str(), r.threads, r.test.rfind("pp", 0) == 0 ? "prompt" : "decoded");
  std::fprintf(out, row, "op", "ms/token", "% of step", "MB/token", "GB/s", "% of probe BW");
  std::fprintf(out, "|%s|%s|%s|%s|%s|%s|\n", std::string(35, '-').c_str(), std::string(11, '-').c_str(),
               std::string(11, '-').c_str(), std::string(11, '-').c_str(),
               std::string(10, '-').c_str(), std::string(15, '-').c_str());
  auto fmt_or_dash = [](bool ok, const char* f, double v) {
    return ok ? fmt::format(fmt::runtime(f), v) : std::string("-");
  };
  for (const BenchOpTime& op : r.profile) {
    const double gbs = op.ms_per_token > 0 ? op.bytes_per_token / op.ms_per_token * 1e-6 : 0.0;
    const bool streams = bytes > 0 && op.bytes_per_token >= 0.05 * bytes;
    const bool probed = streams && std::isfinite(r.probe_gbs) && r.probe_gbs > 0;
    std::fprintf(out, row, op.op.c_str(), fmt::format("{:.4g}", op.ms_per_token).c_str(),
                 fmt::format("{:.1f}", total > 0 ? 100.0 * op.ms_per_token / total : 0.0).c_str(),
                 fmt_or_dash(op.bytes_per_token > 0, "{:.3f}", op.bytes_per_token / 1e6).c_str(),
                 fmt_or_dash(streams, "{:.2f}", gbs).c_str(),
                 fmt_or_dash(probed, "{:.1f}", probed ? 100.0 * gbs / r.probe_gbs : 0.0).c_str());
  }
  std::fprintf(out, row, "total", fmt::format("{:.4g}", total).c_str(), "100.0", "", "", "");
}

}  // namespace

void print_bench_table(const std::vector<BenchRow>& rows, std::FILE* out) {
  std::fprintf(out, "| %-10s | %7s | %14s | %12s | %10s | %13s | %10s | %13s |\n", "test", "threads", "t/s (median)",
               "MB/token", "GB/s", "% of probe BW", "GOP/s", "% int8 peak");
  std::fprintf(out, "|------------|---------|----------------|--------------|------------|---------------|------------|---------------|\n");
  for (const BenchRow& r : rows) {
    auto pct = [](double a, double b) {
      return std::isfinite(a) && std::isfinite(b) && b > 0 ? fmt::format("{:.1f}", 100.0 * a / b)
                                                         : std::string("n/a");
    };
    std::fprintf(out, "| %-10s | %7d | %14.2f | %12.3f | %10.2f | %13s | %10.2f | %13s |\n", r.test.c_str(), r.threads,
                 r.median_tps, r.bytes_per_token / 1e6, r.achieved_gbs, pct(r.probe_fraction, 1.0).c_str(),
                 r.achieved_gops, pct(r.achieved_gops, r.peak_gops).c_str());
  }
  if (!rows.empty()) {
    int last = -1;
    for (const BenchRow& r : rows) {
      if (r.threads == last) continue;
      last = r.threads;
      auto num = [](double x) { return std::isfinite(x) ? fmt::format("{:.2f}", x) : std::string("n/a"); };
      std::fprintf(out, "%d thread(s): %s; probes: read bandwidth %s GB/s (median next to the reps), int8 "
                   "dot-product peak %s GOP/s\n",
                   r.threads, r.model.c_str(), num(r.probe_gbs).c_str(), num(r.peak_gops).c_str());
    }
  }
  for (const BenchRow& r : rows) {
    if (!r.profile.empty()) print_profile(r, out);
  }
}

Json bench_json(const std::vector<BenchRow>& rows) {
  auto num = [](double x) { return std::isfinite(x) ? Json(x) : Json(nullptr); };
  Json a = Json::array();
  for (const BenchRow& r : rows) {
    a.push_back(Json{{"test", r.test},
                     {"n_depth", r.depth},
                     {"threads", r.threads},
                     {"model", r.model},
                     {"tokens_per_s", r.tokens_per_s},
                     {"median_tokens_per_s", r.median_tps},
                     {"bytes_per_token", r.bytes_per_token},
                     {"achieved_gbs", r.achieved_gbs},
                     {"probe_read_gbs", num(r.probe_gbs)},
                     {"probe_read_gbs_reps", r.probe_reps_gbs},
                     {"fraction_of_probe", num(r.probe_fraction)},
                     {"achieved_gops", r.achieved_gops},
                     {"int8_peak_gops", num(r.peak_gops)}});
    if (!r.profile.empty()) {
      Json p = Json::array();
      for (const BenchOpTime& op : r.profile) {
        p.push_back(Json{{"op", op.op},
                         {"ms_per_token", op.ms_per_token},
                         {"bytes_per_token", op.bytes_per_token}});
      }
      a.back()["profile"] = p;
    }
  }
  return a;
}

void bench_profile_hooks(const std::function<Engine*()>& get, BenchOptions& o) {
  auto prof = [get]() {
    Engine* e = get();
    TQ_CHECK(e != nullptr && e->step_profile() != nullptr,
             "[bench] profiling needs the packed engine built with EngineOptions::profile");
    return e;
  };
  o.profile_reset = [prof]() { prof()->step_profile()->reset(); };
  o.profile_read = [prof](int64_t tokens) {
    Engine* e = prof();
    std::array<double, kStepOps> sec = e->step_profile()->seconds();
    for (double& v : sec) v /= static_cast<double>(std::max<int64_t>(tokens, 1));
    const std::array<double, kStepOps> bytes = e->step_op_bytes();
    std::vector<BenchOpTime> out;
    for (int i = 0; i < kStepOps; ++i) {
      const auto k = static_cast<size_t>(i);
      out.push_back({step_op_name(static_cast<StepOp>(i)), 1e3 * sec[k], bytes[k]});
    }
    return out;
  };
}

nn::LlamaConfig shape_config(const std::string& name) {
  nn::LlamaConfig c;
  if (name == "tiny") {
    c.vocab_size = 512; c.hidden_size = 128; c.intermediate_size = 384; c.num_hidden_layers = 2;
    c.num_attention_heads = 4; c.num_key_value_heads = 2; c.max_position_embeddings = 1024;
  } else if (name == "small") {
    c.vocab_size = 4096; c.hidden_size = 384; c.intermediate_size = 1024; c.num_hidden_layers = 6;
    c.num_attention_heads = 6; c.num_key_value_heads = 2; c.max_position_embeddings = 1024;
  } else if (name == "llama-3.2-1b") {
    c.vocab_size = 128256; c.hidden_size = 2048; c.intermediate_size = 8192; c.num_hidden_layers = 16;
    c.num_attention_heads = 32; c.num_key_value_heads = 8; c.head_dim = 64; c.max_position_embeddings = 4096;
    c.rope_theta = 500000.0; c.tie_word_embeddings = true; c.bos_token_id = 128000; c.eos_token_id = 128001;
  } else if (name == "llama-3.2-3b") {
    c.vocab_size = 128256; c.hidden_size = 3072; c.intermediate_size = 8192; c.num_hidden_layers = 28;
    c.num_attention_heads = 24; c.num_key_value_heads = 8; c.head_dim = 128; c.max_position_embeddings = 4096;
    c.rope_theta = 500000.0; c.tie_word_embeddings = true; c.bos_token_id = 128000; c.eos_token_id = 128001;
  } else {
    TQ_THROW("[bench] unknown --shape '{}' — expected tiny, small, llama-3.2-1b or llama-3.2-3b", name);
  }
  c.validate("--shape " + name);
  return c;
}

}  // namespace tq::infer
