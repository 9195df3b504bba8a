// tqinfer: evaluate and run trained models. Subcommands so far:
//   tqinfer ppl --model DIR --text FILE [--ctx N] [--json]   perplexity of a text (full precision)
// Lowering to packed ternary kernels, generate, eval and bench arrive with issue 6.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "core/logging.h"
#include "core/parallel.h"
#include "data/tokenizer.h"
#include "infer/perplexity.h"
#include "nn/llama.h"

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TQ_CHECK(in.good(), "[tqinfer] cannot open text file {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_ppl(const std::string& model_dir, const std::string& text_path, int64_t ctx, bool json) {
  const auto model = tq::nn::load_llama(model_dir);
  const auto tok = tq::data::load_tokenizer(model_dir);
  const std::string text = read_text(text_path);
  const std::vector<int32_t> ids = tok->encode(text, /*add_bos=*/true, /*add_eos=*/false);
  if (ctx <= 0) ctx = std::min<int64_t>(512, model->config().max_position_embeddings);
  spdlog::info("ppl: {} bytes -> {} tokens, context {}", text.size(), ids.size(), ctx);
  const auto r = tq::infer::perplexity(*model, ids, ctx, [](int64_t done, int64_t total) {
    if (done == total || done % 16 == 0) spdlog::info("ppl: window {}/{}", done, total);
  });
  if (json) {
    std::printf("{\"tokens\": %lld, \"nll\": %.6f, \"ppl\": %.6f}\n", static_cast<long long>(r.tokens), r.nll,
                r.ppl);
  } else {
    std::printf("tokens %lld\nnll    %.6f\nppl    %.6f\n", static_cast<long long>(r.tokens), r.nll, r.ppl);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tqinfer: evaluate, generate with and benchmark libtequila models"};
  app.require_subcommand(1);
  int threads = 0;
  std::string log_level = "info";
  app.add_option("--threads", threads, "threads (default: all cores, or TQ_THREADS)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");

  std::string model_dir, text_path;
  int64_t ctx = 0;
  bool json = false;
  CLI::App* ppl = app.add_subcommand("ppl", "perplexity of a text file under a model (full precision)");
  ppl->add_option("--model", model_dir, "model directory (config.json, weights, tokenizer)")->required();
  ppl->add_option("--text", text_path, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  ppl->add_option("--ctx", ctx, "tokens per window (default: min(512, max_position_embeddings))");
  ppl->add_flag("--json", json, "print {\"tokens\": N, \"nll\": x, \"ppl\": y}");

  CLI11_PARSE(app, argc, argv);
  try {
    tq::init_logging(log_level, "");
    tq::set_num_threads(threads);
    if (*ppl) return run_ppl(model_dir, text_path, ctx, json);
  } catch (const tq::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("tqinfer: {}", e.what());
    return 1;
  }
  return 0;
}
