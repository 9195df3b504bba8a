// infer/bench: the rows' arithmetic (median, bytes per token, GB/s, GOP/s, fraction of the probes next
// to the reps) on a toy model, the matmul multiply-add count against LLaMA-3.2-1B's published
// parameter count, and argument errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "infer/bench.h"
#include "infer/engine.h"
#include "infer/lower.h"
#include "tests/infer/toy_models.h"
#include "tests/test_util.h"

using namespace tq;

TEST_CASE("bench: pp and tg rows, medians and derived rates") {
  test::UnigramLM lm(std::vector<float>(16, 0.0f), 64);
  infer::BenchOptions o;
  o.n_prompt = 8;
  o.n_gen = 4;
  o.repetitions = 3;
  o.threads = {1};
  o.probes = false;
  const infer::ModelCosts costs{1000000, 400000, 80000};
  int made = 0;
  const auto rows = infer::run_bench([&](int) -> infer::LanguageModel& { ++made; return lm; }, costs, o);
  CHECK(made == 1);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].test == "pp8");
  CHECK(rows[1].test == "tg4");
  // Calls: pp = 1 warm-up + 3 timed forwards of 8; tg = 4 runs of 4 single-token forwards.
  CHECK(lm.calls == 4 + 16);
  for (const auto& r : rows) {
    REQUIRE(r.tokens_per_s.size() == 3);
    std::vector<double> s = r.tokens_per_s;
    std::sort(s.begin(), s.end());
    CHECK(r.median_tps == s[1]);
    CHECK(r.achieved_gbs == doctest::Approx(r.bytes_per_token * r.median_tps / 1e9));
    CHECK(r.model == "unigram");
  }
  // pp8 computes the head for its last token only; tg4 for every token.
  CHECK(rows[0].achieved_gops == doctest::Approx(2.0 * (400000 + 80000 / 8.0) * rows[0].median_tps / 1e9));
  CHECK(rows[1].achieved_gops == doctest::Approx(2.0 * (400000 + 80000) * rows[1].median_tps / 1e9));
  CHECK(rows[0].bytes_per_token == doctest::Approx(1000000.0 / 8));  // weights shared by the 8 prefilled tokens
  CHECK(rows[1].bytes_per_token == doctest::Approx(1000000.0));      // every decoded token reads them all
  const Json j = infer::bench_json(rows);
  CHECK(j.size() == 2);
  CHECK(j[0]["probe_read_gbs"].is_null());
  CHECK(j[0]["fraction_of_probe"].is_null());

  // With probes: one before each timed rep and one after the last; rep i is compared with the mean
  // of the probes on its two sides, the row with the median of those fractions.
  o.probes = true;
  o.probe_bytes = size_t{1} << 20;
  const auto probed = infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o);
  for (const auto& r : probed) {
    REQUIRE(r.probe_reps_gbs.size() == 4);
    std::vector<double> f, p = r.probe_reps_gbs;
    for (size_t i = 0; i < 3; ++i) {
      CHECK(p[i] > 0);
      f.push_back(r.bytes_per_token * r.tokens_per_s[i] / 1e9 / (0.5 * (p[i] + p[i + 1])));
    }
    std::sort(f.begin(), f.end());
    std::sort(p.begin(), p.end());
    CHECK(r.probe_fraction == doctest::Approx(f[1]));
    CHECK(r.probe_gbs == doctest::Approx(0.5 * (p[1] + p[2])));
  }
  CHECK(infer::bench_json(probed)[1]["probe_read_gbs_reps"].size() == 4);
  o.probes = false;

  // -d: each run starts after `n_depth` untimed tokens (one more forward per run).
  o.n_depth = 8;
  lm.calls = 0;
  const auto deep = infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o);
  CHECK(lm.calls == 4 * (1 + 1) + 4 * (1 + 4));
  CHECK(deep[0].test == "pp8@d8");
  CHECK(deep[1].test == "tg4@d8");
  CHECK(deep[1].depth == 8);
  CHECK(infer::bench_json(deep)[1]["n_depth"] == 8);
  CHECK(lm.position() == 8 + 4);
  o.n_depth = 57;  // 57 + 8 > 64
  CHECK_THROWS_WITH_AS(infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o),
                       doctest::Contains("lower -d"), Error);
  o.n_depth = -1;
  CHECK_THROWS_WITH_AS(infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o),
                       doctest::Contains("depth (-d) must be >= 0"), Error);
  o.n_depth = 0;

  o.n_prompt = 100;  // more than the toy's context of 64
  CHECK_THROWS_WITH_AS(infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o),
                       doctest::Contains("lower -d / -p / -n"), Error);
  o.n_prompt = 8;
  o.repetitions = 0;
  CHECK_THROWS_WITH_AS(infer::run_bench([&](int) -> infer::LanguageModel& { return lm; }, costs, o),
                       doctest::Contains("repetitions"), Error);
}

TEST_CASE("bench: --profile rows of an engine (pp and tg), and a clear error without profiling") {
  infer::EngineOptions eo;
  eo.profile = true;
  infer::Engine e(infer::random_plan(test::tiny_engine_config(), eo, 3), eo, "random");
  infer::BenchOptions o;
  o.n_prompt = 4;
  o.n_gen = 3;
  o.repetitions = 2;
  o.probes = false;
  infer::bench_profile_hooks([&e] { return &e; }, o);
  const infer::ModelCosts costs{static_cast<int64_t>(e.bytes_per_token()), 1, 1};
  const auto rows = infer::run_bench([&](int) -> infer::LanguageModel& { return e; }, costs, o);
  REQUIRE(rows.size() == 2);
  CHECK(e.step_profile()->steps() == 3);  // reset before each timed run, read after it
  for (const infer::BenchRow& r : rows) {  // per token of the run: pp4 (one step), then tg3
    CAPTURE(r.test);
    REQUIRE(r.profile.size() == static_cast<size_t>(infer::kStepOps));
    double ms = 0, bytes = 0;
    for (const auto& op : r.profile) {
      CHECK(op.ms_per_token >= 0);
      ms += op.ms_per_token;
      bytes += op.bytes_per_token;
    }
    CHECK(ms > 0);
    CHECK(ms <= 1e3 / *std::min_element(r.tokens_per_s.begin(), r.tokens_per_s.end()));
    // Decode ops carry the weight bytes of a token; prefill reads them once per step, so none.
    CHECK(bytes == doctest::Approx(r.test == "tg3" ? r.bytes_per_token : 0.0));
    CHECK(r.profile[0].op.find("linears") != std::string::npos);
    CHECK(r.profile[0].ms_per_token > 0);
  }
  // The printed tables: one per row, per prompt token for pp and per decoded token for tg.
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  infer::print_bench_table(rows, f);
  std::rewind(f);
  std::string printed;
  for (int ch = std::fgetc(f); ch != EOF; ch = std::fgetc(f)) printed.push_back(static_cast<char>(ch));
  std::fclose(f);
  CHECK(printed.find("pp4, 1 thread(s), per prompt token") != std::string::npos);
  CHECK(printed.find("tg3, 1 thread(s), per decoded token") != std::string::npos);
  const Json j = infer::bench_json(rows);
  CHECK(j[0]["profile"].size() == static_cast<size_t>(infer::kStepOps));
  CHECK(j[1]["profile"].size() == static_cast<size_t>(infer::kStepOps));

  infer::EngineOptions off;
  infer::Engine plain(infer::random_plan(test::tiny_engine_config(), off, 3), off, "random");
  infer::bench_profile_hooks([&plain] { return &plain; }, o);
  CHECK_THROWS_WITH_AS(infer::run_bench([&](int) -> infer::LanguageModel& { return plain; }, costs, o),
                       doctest::Contains("EngineOptions::profile"), Error);
}

TEST_CASE("bench: matmul multiply-adds of the LLaMA-3.2-1B shape") {
  // HF reports 1,235,814,400 parameters for Llama-3.2-1B (tied embedding counted once); minus the 33
  // RMSNorm weight vectors of 2048, every other parameter is a matmul weight read once per token.
  const nn::LlamaConfig c = infer::shape_config("llama-3.2-1b");
  CHECK(infer::llama_layer_macs(c) + infer::llama_head_macs(c) == 1235814400 - 33 * 2048);
  CHECK(infer::llama_head_macs(c) == 128256 * 2048);
  CHECK_THROWS_WITH_AS(infer::shape_config("gpt-5"), doctest::Contains("unknown --shape 'gpt-5'"), Error);
}
