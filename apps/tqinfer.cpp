// tqinfer: evaluate, generate with and benchmark trained models (docs/tqinfer.md).
//   tqinfer generate --model DIR [--prompt TEXT | stdin] [--max-tokens N] [--temperature T] [--top-k K]
//                    [--top-p P] [--seed S] [--fp]
//   tqinfer ppl      --model DIR --text FILE [--ctx N] [--json] [--fp]
//   tqinfer eval     --model DIR --tasks FILE|GLOB... [--output results.json] [--limit N] [--fp]
//   tqinfer bench    (--model DIR | --shape llama-3.2-1b) [-p 512] [-n 128] [-d 0] [-r 5] [-t 1,2] [--json]
//                    [--fp] [--profile]
//   tqinfer convert  --model DIR --output FILE
// Every subcommand runs on the packed ternary engine (infer/engine.h) by default and on the training graph
// (full precision, or fake-quant when config.json has a quantization_config) with --fp. open_model() is
// the one switch. --model is a checkpoint directory, or (engine only) a packed file from `convert`.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/json.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "data/text_source.h"
#include "data/tokenizer.h"
#include "infer/bench.h"
#include "infer/engine.h"
#include "infer/fp_model.h"
#include "infer/lower.h"
#include "infer/mc_eval.h"
#include "infer/packed_model.h"
#include "infer/perplexity.h"
#include "infer/sampling.h"
#include "nn/llama.h"
#include "quant/quant.h"

namespace {

using tq::infer::LanguageModel;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TQ_CHECK(in.good(), "[tqinfer] cannot open text file {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Engine options every subcommand shares (--lm-head, --kv-cache).
tq::infer::EngineOptions g_engine_opts;

// A model ready to run: the LanguageModel plus what the subcommands need around it.
struct OpenModel {
  std::shared_ptr<tq::nn::LlamaForCausalLM> graph;  // the training graph (--fp, or the source of a lowering)
  std::shared_ptr<tq::infer::EnginePlan> plan;      // packed path: the lowered weights
  std::unique_ptr<LanguageModel> lm;
  std::vector<int32_t> eos_ids;  // from config.json
  int64_t weight_bytes = 0;      // bytes of weights one decoded token reads
  tq::nn::LlamaConfig config;

  // The same model at another thread count (the engine fixes its threads when built).
  LanguageModel& at_threads(int threads) {
    if (plan) {
      tq::infer::EngineOptions o = g_engine_opts;
      o.threads = threads;
      lm = std::make_unique<tq::infer::Engine>(*plan, o);
    }
    return *lm;
  }
};

// The one switch between the packed ternary engine (default) and the training graph (--fp).
// `graph` non-null: use that in-memory model (bench --shape) instead of loading `path`.
OpenModel open_model(const std::string& path, bool fp, std::shared_ptr<tq::nn::LlamaForCausalLM> graph = {}) {
  namespace fs = std::filesystem;
  OpenModel m;
  if (!graph) {
    TQ_CHECK(!path.empty(), "[tqinfer] --model is required");
    TQ_CHECK(fs::exists(path), "[tqinfer] model {} is missing (expected a checkpoint directory with config.json, "
             "model.safetensors and a tokenizer, or a packed .tqpk file)", path);
    if (fs::is_directory(path)) graph = tq::infer::load_model_for_inference(path);
    TQ_CHECK(graph || !fp, "[tqinfer] --fp needs a checkpoint directory, not the packed file {}", path);
  }
  const tq::nn::LlamaConfig* cfg = nullptr;
  if (fp) {
    m.graph = graph;
    cfg = &graph->config();
    m.weight_bytes = tq::infer::parameter_bytes(*graph);
    m.lm = tq::infer::make_fp_model(graph);
  } else {
    m.graph = graph;
    m.plan = std::make_shared<tq::infer::EnginePlan>(graph ? tq::infer::lower_plan(*graph, g_engine_opts)
                                                            : tq::infer::read_packed_plan(path));
    if (!graph) tq::infer::follow_packed_head(*m.plan, g_engine_opts, path);  // e.g. a q4-head file
    auto eng = std::make_unique<tq::infer::Engine>(*m.plan, g_engine_opts, graph ? "lower" : path);
    m.weight_bytes = static_cast<int64_t>(eng->bytes_per_token());
    m.lm = std::move(eng);
    cfg = &m.plan->config;
  }
  for (int64_t id : cfg->eos_token_ids) m.eos_ids.push_back(static_cast<int32_t>(id));
  if (cfg->eos_token_id >= 0) m.eos_ids.push_back(static_cast<int32_t>(cfg->eos_token_id));
  m.config = *cfg;
  return m;
}

// --tokenizer, else the model directory (or the directory holding a packed file).
std::unique_ptr<tq::data::Tokenizer> open_tokenizer(const std::string& model, const std::string& tokenizer) {
  if (!tokenizer.empty()) return tq::data::load_tokenizer(tokenizer);
  const std::filesystem::path p(model);
  return tq::data::load_tokenizer(std::filesystem::is_directory(p) ? model : p.parent_path().string());
}

// --- generate ---

struct GenerateArgs {
  std::string model, tokenizer, prompt;
  bool fp = false, no_bos = false, ignore_eos = false;
  tq::infer::SamplingOptions so;
};

int run_generate(GenerateArgs& a) {
  OpenModel m = open_model(a.model, a.fp);
  const auto tok = open_tokenizer(a.model, a.tokenizer);
  if (a.prompt.empty()) {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    a.prompt = ss.str();
  }
  a.so.add_bos = !a.no_bos;
  a.so.stop_at_eos = !a.ignore_eos;
  a.so.eos_ids = m.eos_ids;
  spdlog::info("generate: {}; temperature {}, top-k {}, top-p {}, seed {}", m.lm->describe(), a.so.temperature,
               a.so.top_k, a.so.top_p, a.so.seed);
  std::fwrite(a.prompt.data(), 1, a.prompt.size(), stdout);
  std::fflush(stdout);
  const tq::infer::GenerateResult r = tq::infer::generate(*m.lm, *tok, a.prompt, a.so, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  const double n = static_cast<double>(r.tokens.size());
  spdlog::info("generate: prompt {} tokens ({:.1f} t/s), generated {} tokens ({:.1f} t/s), stop: {}",
               r.prompt_ids.size(), static_cast<double>(r.prompt_ids.size()) / std::max(r.prefill_seconds, 1e-9),
               r.tokens.size(), n / std::max(r.decode_seconds, 1e-9), r.stop_reason);
  return 0;
}

// --- ppl ---

int run_ppl(const std::string& model_dir, const std::string& tokenizer, const std::string& text_path, int64_t ctx,
            bool json, bool fp) {
  OpenModel m = open_model(model_dir, fp);
  const auto tok = open_tokenizer(model_dir, tokenizer);
  const std::string text = read_text(text_path);
  const std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/tok->bos_id() >= 0, /*add_eos=*/false);
  if (ctx <= 0) ctx = std::min<int64_t>(512, m.lm->max_context());
  spdlog::info("ppl: {}; {} bytes -> {} tokens, context {}", m.lm->describe(), text.size(), ids.size(), ctx);
  const auto r = tq::infer::perplexity(*m.lm, ids, ctx, static_cast<int64_t>(text.size()),
                                       [](int64_t done, int64_t total) {
                                         if (done == total || done % 16 == 0) spdlog::info("ppl: window {}/{}", done, total);
                                       });
  if (json) {
    std::printf("{\"tokens\": %lld, \"nll\": %.6f, \"ppl\": %.6f, \"bytes\": %lld, \"bits_per_byte\": %.6f}\n",
                static_cast<long long>(r.tokens), r.nll, r.ppl, static_cast<long long>(r.bytes), r.bits_per_byte);
  } else {
    std::printf("tokens %lld\nnll    %.6f\nppl    %.6f\nbytes  %lld\nbpb    %.6f\n", static_cast<long long>(r.tokens),
                r.nll, r.ppl, static_cast<long long>(r.bytes), r.bits_per_byte);
  }
  return 0;
}

// --- eval ---

struct EvalArgs {
  std::string model, tokenizer, output;
  std::vector<std::string> tasks;
  int64_t limit = 0;
  bool fp = false, bos = false;
  std::string delimiter = " ";
};

int run_eval(const EvalArgs& a) {
  const std::vector<std::string> files = tq::data::expand_globs(a.tasks, "tqinfer eval --tasks");
  std::vector<tq::infer::McTask> tasks;
  for (const std::string& f : files) tasks.push_back(tq::infer::load_mc_task(f));  // validate all first
  OpenModel m = open_model(a.model, a.fp);
  const auto tok = open_tokenizer(a.model, a.tokenizer);
  tq::infer::McOptions o;
  o.limit = a.limit;
  o.add_bos = a.bos;
  o.target_delimiter = a.delimiter;
  std::vector<tq::infer::McTaskResult> results;
  for (const auto& t : tasks) {
    spdlog::info("eval: {} ({} docs) on {}", t.name, t.docs.size(), m.lm->describe());
    results.push_back(tq::infer::evaluate_mc_task(*m.lm, *tok, t, o, [&](int64_t done, int64_t total) {
      if (done == total || done % 100 == 0) spdlog::info("eval: {} {}/{}", t.name, done, total);
    }));
  }
  std::printf("|  Tasks   |Version|Filter|n-shot| Metric |   | Value |   |Stderr|\n");
  std::printf("|----------|------:|------|-----:|--------|---|------:|---|-----:|\n");
  for (const auto& r : results) {
    std::printf("|%-10s|      1|none  |     0|acc     |↑  |%7.4f|±  |%6.4f|\n", r.name.c_str(), r.acc, r.acc_stderr);
    std::printf("|%-10s|       |none  |     0|acc_norm|↑  |%7.4f|±  |%6.4f|\n", "", r.acc_norm, r.acc_norm_stderr);
  }
  if (!a.output.empty()) {
    const std::string args = "model=" + a.model + (a.fp ? ",fp=true" : "");
    tq::write_json_file(a.output, tq::infer::mc_results_json(results, o, "tqinfer", args));
    spdlog::info("eval: wrote {}", a.output);
  }
  return 0;
}

// --- bench ---

struct BenchArgs {
  std::string model, shape, json_out, dense;
  bool fp = false, json = false, profile = false;
  tq::infer::BenchOptions o;
  std::string threads = "1";
};

std::vector<int> parse_int_list(const std::string& s, const char* what) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t pos = 0;
      const int v = std::stoi(item, &pos);
      TQ_CHECK(pos == item.size() && v >= 1, "bad");
      out.push_back(v);
    } catch (const std::exception&) {
      TQ_THROW("[tqinfer] {} '{}': expected a comma-separated list of positive integers such as 1,2", what, s);
    }
  }
  TQ_CHECK(!out.empty(), "[tqinfer] {} is empty", what);
  return out;
}

int run_bench(BenchArgs& a) {
  TQ_CHECK(a.model.empty() != a.shape.empty(), "[tqinfer] bench needs exactly one of --model DIR or --shape NAME");
  a.o.threads = parse_int_list(a.threads, "--threads");
  TQ_CHECK(!(a.profile && a.fp),
           "[tqinfer] bench --profile times the packed engine's ops; drop --fp");
  g_engine_opts.profile = a.profile;
  OpenModel m;
  if (!a.model.empty()) {
    m = open_model(a.model, a.fp);
  } else if (a.fp) {
    TQ_CHECK(a.dense.empty(), "[tqinfer] bench --dense is for the engine (drop --fp)");
    const tq::nn::LlamaConfig cfg = tq::infer::shape_config(a.shape);
    spdlog::info("bench: building a random {} model, Tequila-quantized (group 128)", a.shape);
    auto model = std::make_shared<tq::nn::LlamaForCausalLM>(cfg);
    tq::Rng rng(a.o.seed);
    model->init_weights(rng);
    tq::quant::QuantConfig qc;  // random ternary: Tequila, group 128
    tq::quant::quantize_model(*model, qc);
    m = open_model("", true, model);
  } else {
    // The engine's random plan: ternary codes (default) or dense weights in --dense f32|bf16.
    const tq::nn::LlamaConfig cfg = tq::infer::shape_config(a.shape);
    const bool ternary = a.dense.empty();
    if (!ternary) g_engine_opts.dense_dtype = a.dense;
    g_engine_opts.validate();
    m.plan = std::make_shared<tq::infer::EnginePlan>(tq::infer::random_plan(cfg, g_engine_opts, a.o.seed, ternary));
    auto eng = std::make_unique<tq::infer::Engine>(*m.plan, g_engine_opts, "random " + a.shape);
    m.weight_bytes = static_cast<int64_t>(eng->bytes_per_token());
    m.config = cfg;
    m.lm = std::move(eng);
  }
  if (a.profile) {
    auto engine = [&m] { return dynamic_cast<tq::infer::Engine*>(m.lm.get()); };
    tq::infer::bench_profile_hooks(engine, a.o);
  }
  const auto rows = tq::infer::run_bench([&](int t) -> LanguageModel& { return m.at_threads(t); },
                                         tq::infer::llama_costs(m.config, m.weight_bytes), a.o, [](const tq::infer::BenchRow& r) {
                                           spdlog::info("bench: {} threads {}: {:.2f} t/s", r.test, r.threads,
                                                        r.median_tps);
                                         });
  if (a.json) {
    std::printf("%s\n", tq::infer::bench_json(rows).dump(2).c_str());
  } else {
    tq::infer::print_bench_table(rows, stdout);
  }
  return 0;
}

// --- convert ---

int run_convert(const std::string& model_dir, const std::string& output) {
  TQ_CHECK(std::filesystem::is_directory(model_dir), "[tqinfer] convert: model directory {} is missing", model_dir);
  const auto model = tq::infer::load_model_for_inference(model_dir);
  const tq::infer::EnginePlan plan = tq::infer::lower_plan(*model, g_engine_opts);
  tq::infer::save_packed(plan, output);
  spdlog::info("convert: wrote {} ({:.2f} MB)", output,
               static_cast<double>(std::filesystem::file_size(output)) / 1e6);
  std::printf("%s\n", output.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tqinfer: evaluate, generate with and benchmark libtequila models"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads, --log-level, --lm-head, --kv-cache also after the subcommand
  int threads = 0;
  std::string log_level = "info";
  app.add_option("--threads", threads, "threads (default: all cores, or TQ_THREADS)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--lm-head", g_engine_opts.lm_head, "packed engine LM head: int8 (default) | f32 | bf16 | q4 (4-bit, 32-input groups)");
  app.add_option("--kv-cache", g_engine_opts.kv_cache, "engine KV cache: auto (default: f16 where the AVX-512 kernels run, else f32) | f16 | f32");

  // generate
  GenerateArgs ga;
  CLI::App* gen = app.add_subcommand("generate", "generate text from a prompt (streams to stdout)");
  gen->add_option("--model", ga.model, "checkpoint directory (config.json, weights, tokenizer) or packed .tqpk file")->required();
  gen->add_option("--tokenizer", ga.tokenizer, "tokenizer file or directory (default: the model directory)");
  gen->add_option("--prompt", ga.prompt, "prompt text (default: read stdin)");
  gen->add_option("--max-tokens", ga.so.max_tokens, "tokens to generate at most (default 128)");
  gen->add_option("--temperature", ga.so.temperature, "0 = greedy (default 1.0)");
  gen->add_option("--top-k", ga.so.top_k, "keep the k most likely tokens (0 = off, default)");
  gen->add_option("--top-p", ga.so.top_p, "nucleus sampling mass in (0, 1] (1 = off, default)");
  gen->add_option("--repetition-penalty", ga.so.repetition_penalty, "CTRL/HF repetition penalty (1 = off, default)");
  gen->add_option("--seed", ga.so.seed, "sampling seed (default 0)");
  gen->add_flag("--no-bos", ga.no_bos, "do not prepend BOS to the prompt");
  gen->add_flag("--ignore-eos", ga.ignore_eos, "keep generating after EOS");
  gen->add_flag("--fp", ga.fp, "run the training graph instead of the packed engine");

  // ppl
  std::string ppl_model, ppl_tokenizer, text_path;
  int64_t ctx = 0;
  bool json = false, ppl_fp = false;
  CLI::App* ppl = app.add_subcommand("ppl", "perplexity and bits per byte of a text file");
  ppl->add_option("--model", ppl_model, "checkpoint directory (config.json, weights, tokenizer) or packed .tqpk file")->required();
  ppl->add_option("--tokenizer", ppl_tokenizer, "tokenizer file or directory (default: the model directory)");
  ppl->add_option("--text", text_path, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  ppl->add_option("--ctx", ctx, "tokens per window (default: min(512, the model's context))");
  ppl->add_flag("--json", json, "print {\"tokens\", \"nll\", \"ppl\", \"bytes\", \"bits_per_byte\"}");
  ppl->add_flag("--fp", ppl_fp, "run the training graph instead of the packed engine");

  // eval
  EvalArgs ea;
  CLI::App* ev = app.add_subcommand("eval", "multiple-choice jsonl tasks scored like lm-evaluation-harness");
  ev->add_option("--model", ea.model, "checkpoint directory (config.json, weights, tokenizer) or packed .tqpk file")->required();
  ev->add_option("--tokenizer", ea.tokenizer, "tokenizer file or directory (default: the model directory)");
  ev->add_option("--tasks", ea.tasks, "jsonl task files or globs ({\"context\", \"choices\", \"gold\"} per line)")
      ->required();
  ev->add_option("--output", ea.output, "write results JSON (lm-evaluation-harness layout)");
  ev->add_option("--limit", ea.limit, "score only the first N docs of each task");
  ev->add_option("--target-delimiter", ea.delimiter, "between context and choice (default: one space)");
  ev->add_flag("--bos", ea.bos, "prepend BOS to every request (the harness's add_bos_token=True)");
  ev->add_flag("--fp", ea.fp, "run the training graph instead of the packed engine");

  // bench
  BenchArgs ba;
  CLI::App* be = app.add_subcommand("bench", "prefill (pp) and decode (tg) tokens/s, llama-bench style");
  be->add_option("--model", ba.model, "checkpoint directory or packed .tqpk file");
  be->add_option("--shape", ba.shape, "random ternary model of a shape: tiny, small, llama-3.2-1b, llama-3.2-3b");
  be->add_option("-p,--n-prompt", ba.o.n_prompt, "prefill tokens (default 512, 0 = skip)");
  be->add_option("-n,--n-gen", ba.o.n_gen, "decode tokens (default 128, 0 = skip)");
  be->add_option("-d,--n-depth", ba.o.n_depth,
                 "tokens already in the context when each test starts (default 0; prefilled untimed)");
  be->add_option("-r,--repetitions", ba.o.repetitions, "timed repetitions (default 5)");
  be->add_option("-t,--threads", ba.threads, "comma-separated thread counts (default 1)");
  be->add_option("--dense", ba.dense, "with --shape: dense f32 | bf16 weights instead of packed ternary (engine)");
  be->add_flag("--json", ba.json, "print the rows as JSON");
  be->add_flag("--no-probes", [&](int64_t) { ba.o.probes = false; }, "skip the bandwidth / int8 peak probes");
  be->add_flag("--fp", ba.fp, "run the training graph instead of the packed engine");
  be->add_flag("--profile", ba.profile,
               "time each kind of op of the timed steps (ms per token; decode also MB and GB/s)");

  // convert
  std::string conv_model, conv_out;
  CLI::App* conv = app.add_subcommand("convert", "write a packed ternary model file (mmap-able) from a checkpoint");
  conv->add_option("--model", conv_model, "model directory")->required();
  conv->add_option("--output", conv_out, "packed model file")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    tq::init_logging(log_level, "");
    tq::set_num_threads(threads);
    g_engine_opts.validate();
    if (*gen) return run_generate(ga);
    if (*ppl) return run_ppl(ppl_model, ppl_tokenizer, text_path, ctx, json, ppl_fp);
    if (*ev) return run_eval(ea);
    if (*be) return run_bench(ba);
    if (*conv) return run_convert(conv_model, conv_out);
  } catch (const tq::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("tqinfer: {}", e.what());
    return 1;
  }
  return 0;
}
