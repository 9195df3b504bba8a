// tqshard: pre-tokenizes text (.txt, .jsonl; or re-packs .tqshard files) into one token shard.
//
//   tqshard --tokenizer data-cache/tokenizers/llama2 --out brown.tqshard 'corpora/brown/train/*.txt'
//
// Documents are read exactly as the TokenLoader reads them (data/document_stream.h): each becomes
// [BOS] + encode(text) + [EOS], and the shard holds their concatenation, so a loader over the shard
// yields the same windows as a loader over the text. The file is written atomically (temp file,
// fsync, rename). Progress goes to stderr (a rewritten line on a terminal, a line every 10 s
// otherwise); the summary line goes to stdout.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/logging.h"
#include "data/document_stream.h"
#include "data/shard.h"
#include "data/text_source.h"
#include "data/tokenizer.h"

namespace {

int run(const std::string& tokenizer_path, const std::string& out,
        const std::vector<std::string>& inputs, const tq::data::StreamOptions& opts) {
  using Clock = std::chrono::steady_clock;
  TQ_CHECK(out.size() > 8 && out.compare(out.size() - 8, 8, ".tqshard") == 0,
           "[tqshard] --out {}: the name must end in .tqshard (the loader picks the reader by "
           "extension)",
           out);
  const std::vector<std::string> files = tq::data::expand_sources(inputs, "tqshard");
  std::error_code ec;
  for (const auto& f : files) {
    TQ_CHECK(!std::filesystem::equivalent(f, out, ec), "[tqshard] --out {} is also an input", out);
  }
  std::shared_ptr<const tq::data::Tokenizer> tok;
  if (!tokenizer_path.empty()) tok = tq::data::load_tokenizer(tokenizer_path);
  int32_t vocab = 0, bos = -1, eos = -1;
  if (tok) {
    vocab = tok->vocab_size();
    bos = tok->bos_id();
    eos = tok->eos_id();
  } else {
    // Only shards: take the vocabulary of the first one (the stream checks the others against it).
    TQ_CHECK(tq::data::source_kind_of(files[0]) == tq::data::SourceKind::shard,
             "[tqshard] --tokenizer is required for text inputs ({})", files[0]);
    const auto first = tq::data::ShardFile::open(files[0]);
    vocab = static_cast<int32_t>(first->header().vocab_size);
    bos = first->header().bos_id;
    eos = first->header().eos_id;
  }
  tq::data::DocumentStream stream(files, tok, opts);
  tq::data::ShardWriter writer(out, vocab, bos, eos);
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  const auto t0 = Clock::now();
  auto last = t0;
  int64_t docs = 0;
  tq::data::Document doc;
  auto progress = [&](bool final) {
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::fprintf(stderr, "%s[tqshard] file %lld/%zu, %lld documents, %llu tokens, %.0f tokens/s%s",
                 tty ? "\r" : "", static_cast<long long>(std::min<int64_t>(doc.pos.file + 1, static_cast<int64_t>(files.size()))),
                 files.size(), static_cast<long long>(docs),
                 static_cast<unsigned long long>(writer.num_tokens()),
                 s > 0 ? static_cast<double>(writer.num_tokens()) / s : 0.0,
                 tty && !final ? "" : "\n");
    std::fflush(stderr);
  };
  while (stream.next(doc)) {
    writer.append(doc.tokens);
    ++docs;
    const auto now = Clock::now();
    if (now - last > (tty ? std::chrono::seconds(1) : std::chrono::seconds(10))) {
      progress(false);
      last = now;
    }
  }
  progress(true);
  TQ_CHECK(writer.num_tokens() > 0, "[tqshard] the inputs hold no document ({} files)", files.size());
  writer.commit();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("[tqshard] wrote %s: %lld documents, %llu tokens (vocab %d), %lld bad records skipped, %.2f s\n",
              out.c_str(), static_cast<long long>(docs),
              static_cast<unsigned long long>(writer.num_tokens()), vocab,
              static_cast<long long>(stream.bad_records()), s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tqshard: pre-tokenize .txt/.jsonl into a .tqshard token shard"};
  std::string tokenizer, out, field = "text", txt_document = "paragraph", on_bad_data = "skip";
  std::string split = "all", log_level = "info";
  double valid_fraction = 0.0;
  std::vector<std::string> inputs;
  app.add_option("--tokenizer", tokenizer, "tokenizer file or directory (not needed for shard inputs)");
  app.add_option("--out", out, "output FILE.tqshard")->required();
  app.add_option("--field", field, "jsonl field holding the text (default: text)");
  app.add_option("--txt-document", txt_document, "what a .txt document is: paragraph | line | file");
  app.add_option("--on-bad-data", on_bad_data, "skip (warn and count) | stop");
  app.add_option("--valid-fraction", valid_fraction, "hash split fraction (see docs/data.md)");
  app.add_option("--split", split, "all | train | valid (with --valid-fraction)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("inputs", inputs, "input files or glob patterns (.txt, .jsonl, .tqshard)")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    tq::init_logging(log_level, "");
    tq::data::StreamOptions opts;
    opts.context = "tqshard";
    opts.jsonl_field = field;
    opts.txt_document = tq::data::parse_txt_document(txt_document, "tqshard");
    TQ_CHECK(on_bad_data == "skip" || on_bad_data == "stop",
             "[tqshard] --on-bad-data: expected skip or stop, got '{}'", on_bad_data);
    opts.stop_on_bad_data = on_bad_data == "stop";
    TQ_CHECK(valid_fraction >= 0.0 && valid_fraction <= 1.0,
             "[tqshard] --valid-fraction: must be in [0, 1], got {}", valid_fraction);
    opts.valid_fraction = valid_fraction;
    opts.split = tq::data::parse_split(split, "tqshard");
    return run(tokenizer, out, inputs, opts);
  } catch (const tq::Error& e) {
    std::fprintf(stderr, "\n");
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("tqshard: {}", e.what());
    return 1;
  }
}
