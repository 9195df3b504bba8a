// TokenLoader: packing against an independent re-computation, block shuffle, exact resume across
// block and epoch boundaries, rank striding, the validation split, bad data, txt == jsonl.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include "core/error.h"
#include "data/document_stream.h"
#include "data/loader.h"
#include "data/text_source.h"
#include "tests/data/data_fixtures.h"
#include "tests/test_util.h"

using tq::Json;
using tq::data::LoaderOptions;
using tq::data::TokenLoader;
using tq::test::ByteTokenizer;
using Windows = std::vector<std::vector<int32_t>>;

namespace {

struct Corpus {
  tq::test::TempDir dir{"loader"};
  std::vector<std::string> docs;  // all documents, in file order
  std::shared_ptr<const tq::data::Tokenizer> tok = std::make_shared<ByteTokenizer>();
  // Three .txt files of `per_file` random documents each.
  explicit Corpus(uint64_t salt, int per_file = 20) {
    auto rng = tq::test::make_rng(salt);
    for (int f = 0; f < 3; ++f) {
      auto d = tq::test::random_docs(rng, per_file);
      tq::test::write_txt(dir.file("part" + std::to_string(f) + ".txt"), d);
      docs.insert(docs.end(), d.begin(), d.end());
    }
  }
  LoaderOptions opts(int64_t S, bool shuffle, int64_t K = 4) const {
    LoaderOptions o;
    o.sources = {dir.file("part*.txt")};
    o.seq_len = S;
    o.shuffle = shuffle;
    o.shuffle_block = K;
    o.prefetch = 5;
    return o;
  }
};

std::multiset<std::vector<int32_t>> as_multiset(const Windows& w) { return {w.begin(), w.end()}; }

}  // namespace

TEST_CASE("loader: shuffle off yields the packing formula's windows, epoch after epoch") {
  Corpus c(1);
  for (int64_t S : {1, 7, 32}) {
    CAPTURE(S);
    const auto ref = tq::test::reference_windows(tq::test::reference_stream(c.docs), S);
    REQUIRE(ref.size() > 10);
    TokenLoader loader(c.tok, c.opts(S, false), "t");
    CHECK(loader.files().size() == 3);
    const auto got = tq::test::read_windows(loader, static_cast<int64_t>(2 * ref.size()) + 3);
    for (size_t i = 0; i < got.size(); ++i) {
      REQUIRE(got[i] == ref[i % ref.size()]);
    }
    CHECK(loader.stats().epoch == 2);
    CHECK(loader.stats().windows == static_cast<int64_t>(got.size()));
    CHECK(loader.stats().tokens == static_cast<int64_t>(got.size()) * S);
  }
}

TEST_CASE("loader: block shuffle permutes each block, is seeded, keeps the epoch multiset") {
  Corpus c(2);
  const int64_t S = 5, K = 6;
  const auto ref = tq::test::reference_windows(tq::test::reference_stream(c.docs), S);
  const auto n = static_cast<int64_t>(ref.size());
  REQUIRE(n % K != 0);  // a partial last block is exercised
  auto read_epoch = [&](uint64_t seed, int64_t count) {
    auto o = c.opts(S, true, K);
    o.seed = seed;
    TokenLoader loader(c.tok, o, "t");
    return tq::test::read_windows(loader, count);
  };
  const auto a = read_epoch(7, 2 * n);
  const auto b = read_epoch(7, 2 * n);
  const auto d = read_epoch(8, 2 * n);
  CHECK(a == b);
  CHECK(a != d);
  int64_t moved = 0;
  for (int64_t e = 0; e < 2; ++e) {
    for (int64_t s = 0; s < n; s += K) {
      const int64_t end = std::min(n, s + K);
      const Windows got(a.begin() + e * n + s, a.begin() + e * n + end);
      const Windows want(ref.begin() + s, ref.begin() + end);
      CHECK(as_multiset(got) == as_multiset(want));
      moved += got != want;
    }
  }
  CHECK(moved > 0);
  // The two epochs are shuffled differently (seeded by epoch) yet hold the same windows.
  CHECK(Windows(a.begin(), a.begin() + n) != Windows(a.begin() + n, a.end()));
  CHECK(as_multiset(Windows(a.begin(), a.begin() + n)) == as_multiset(ref));
}

TEST_CASE("loader: resume from a cursor is exact across blocks and epochs") {
  Corpus c(3, 8);
  const int64_t S = 6, K = 4, B = 3, M = 9;
  const auto n = static_cast<int64_t>(
      tq::test::reference_windows(tq::test::reference_stream(c.docs), S).size());
  REQUIRE(n > 2 * K);
  for (int world : {1, 2}) {
    auto o = c.opts(S, true, K);
    o.world = world;
    o.rank = world - 1;
    // n windows per epoch: N up to two epochs' worth of batches
    for (int64_t N : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, n / B, n / B + 1,
                      2 * n / (B * world) + 1}) {
      CAPTURE(world);
      CAPTURE(N);
      TokenLoader a(c.tok, o, "t");
      tq::test::read_windows(a, N * B, B);
      const Json cur = Json::parse(a.cursor().dump());  // through text, as trainer_state.json
      const auto want = tq::test::read_windows(a, M * B, B);
      TokenLoader fresh(c.tok, o, "t");
      tq::test::read_windows(fresh, 2 * B, B);  // its producer is somewhere else; restore resets it
      fresh.restore(cur);
      CHECK(fresh.cursor() == cur);
      CHECK(tq::test::read_windows(fresh, M * B, B) == want);
      a.restore(cur);  // restoring the same loader rewinds it
      CHECK(tq::test::read_windows(a, M * B, B) == want);
    }
  }
}

TEST_CASE("loader: ranks of world 2 interleave to the world-1 stream, with identical cursors") {
  Corpus c(4);
  const int64_t S = 4, K = 5, n = 40;
  auto o = c.opts(S, true, K);
  TokenLoader single(c.tok, o, "t");
  const auto all = tq::test::read_windows(single, 2 * n);
  o.world = 2;
  o.rank = 0;
  TokenLoader r0(c.tok, o, "t");
  o.rank = 1;
  TokenLoader r1(c.tok, o, "t");
  const auto w0 = tq::test::read_windows(r0, n / 2, 2);
  const auto w1 = tq::test::read_windows(r1, n / 2, 2);
  for (int64_t i = 0; i < n / 2; ++i) {
    REQUIRE(w0[static_cast<size_t>(i)] == all[static_cast<size_t>(2 * i)]);
    REQUIRE(w1[static_cast<size_t>(i)] == all[static_cast<size_t>(2 * i + 1)]);
  }
  // After the same number of windows every rank reports the same cursor, so one saved cursor
  // resumes all ranks.
  CHECK(r0.cursor() == r1.cursor());
  r1.restore(r0.cursor());
  const auto next1 = tq::test::read_windows(r1, 4);
  for (int64_t i = 0; i < 4; ++i) CHECK(next1[static_cast<size_t>(i)] == all[static_cast<size_t>(n + 2 * i + 1)]);
}

TEST_CASE("loader: valid_fraction splits documents into disjoint train/valid covering all") {
  Corpus c(5);
  auto files = tq::data::expand_sources({c.dir.file("part*.txt")}, "t");
  auto collect = [&](tq::data::Split split) {
    tq::data::StreamOptions so;
    so.valid_fraction = 0.3;
    so.split = split;
    tq::data::DocumentStream s(files, c.tok, so);
    std::vector<std::pair<int64_t, int64_t>> ids;  // (file, index)
    std::vector<std::string> texts;
    tq::data::Document d;
    while (s.next(d)) {
      ids.emplace_back(d.pos.file, d.pos.index);
      texts.push_back(c.tok->decode(d.tokens));
    }
    return std::make_pair(ids, texts);
  };
  const auto all = collect(tq::data::Split::all);
  const auto train = collect(tq::data::Split::train);
  const auto valid = collect(tq::data::Split::valid);
  REQUIRE(all.first.size() == c.docs.size());
  CHECK(all.second == c.docs);
  CHECK(train.first.size() + valid.first.size() == all.first.size());
  CHECK(!valid.first.empty());
  CHECK(!train.first.empty());
  std::set<std::pair<int64_t, int64_t>> u(train.first.begin(), train.first.end());
  for (const auto& v : valid.first) CHECK(u.insert(v).second);  // disjoint
  CHECK(u == std::set<std::pair<int64_t, int64_t>>(all.first.begin(), all.first.end()));
  // The rule itself: valid iff the hash of (file name, index) is below the fraction.
  for (const auto& v : valid.first) {
    CHECK(tq::data::split_hash("part" + std::to_string(v.first) + ".txt", v.second) < 0.3);
  }
  // The loader over the valid split packs exactly the valid documents.
  auto o = c.opts(3, false);
  o.valid_fraction = 0.3;
  o.split = "valid";
  TokenLoader loader(c.tok, o, "t");
  const auto ref = tq::test::reference_windows(tq::test::reference_stream(valid.second), 3);
  CHECK(tq::test::read_windows(loader, static_cast<int64_t>(ref.size())) == ref);
}

TEST_CASE("loader: txt (paragraph), jsonl and txt_document=line give the same stream") {
  tq::test::TempDir dir("loader_formats");
  auto rng = tq::test::make_rng(6);
  auto docs = tq::test::random_docs(rng, 30);
  auto tok = std::make_shared<ByteTokenizer>();
  tq::test::write_txt(dir.file("a.txt"), docs);
  tq::test::write_jsonl(dir.file("a.jsonl"), docs, "body");
  std::string lines;
  std::vector<std::string> one_line_docs;
  for (auto d : docs) {
    std::replace(d.begin(), d.end(), '\n', ' ');
    lines += d + "\n";
    one_line_docs.push_back(d);
  }
  tq::test::write_text(dir.file("lines.txt"), lines);
  LoaderOptions o;
  o.seq_len = 9;
  o.shuffle = false;
  const auto ref = tq::test::reference_windows(tq::test::reference_stream(docs), 9);
  o.sources = {dir.file("a.txt")};
  TokenLoader t(tok, o, "t");
  o.sources = {dir.file("a.jsonl")};
  o.jsonl_field = "body";
  TokenLoader j(tok, o, "t");
  const auto n = static_cast<int64_t>(ref.size());
  CHECK(tq::test::read_windows(t, n) == ref);
  CHECK(tq::test::read_windows(j, n) == ref);
  o.sources = {dir.file("lines.txt")};
  o.txt_document = "line";
  TokenLoader l(tok, o, "t");
  const auto ref_lines = tq::test::reference_windows(tq::test::reference_stream(one_line_docs), 9);
  CHECK(tq::test::read_windows(l, static_cast<int64_t>(ref_lines.size())) == ref_lines);
  // txt_document=file: each file is one document, inner blank lines kept, trailing ones dropped.
  tq::test::write_text(dir.file("f1.txt"), "\n\nfirst para\n\n\nsecond\n\n");
  tq::test::write_text(dir.file("f2.txt"), "other file");
  o.sources = {dir.file("f*.txt")};
  o.txt_document = "file";
  TokenLoader whole(tok, o, "t");
  const auto ref_file = tq::test::reference_windows(
      tq::test::reference_stream({"first para\n\n\nsecond", "other file"}), 9);
  CHECK(tq::test::read_windows(whole, static_cast<int64_t>(ref_file.size())) == ref_file);
  // A tokenizer without BOS/EOS: documents are joined bare.
  o.sources = {dir.file("a.txt")};
  o.txt_document = "paragraph";
  TokenLoader bare(std::make_shared<ByteTokenizer>(false), o, "t");
  const auto ref_bare = tq::test::reference_windows(tq::test::reference_stream(docs, false), 9);
  CHECK(tq::test::read_windows(bare, static_cast<int64_t>(ref_bare.size())) == ref_bare);
}

TEST_CASE("loader: bad data is reported with file:line, skipped with a count or stopped") {
  tq::test::TempDir dir("loader_bad");
  auto tok = std::make_shared<ByteTokenizer>();
  const std::string txt = dir.file("bad.txt");
  // Paragraphs start at lines 1, 4, 7; the second has an invalid byte on its 2nd line (line 5).
  tq::test::write_text(txt, "good one\nstill one\n\nbad two\nhere \xC3\x28 x\n\nthird doc\n");
  const std::string jl = dir.file("bad.jsonl");
  tq::test::write_text(jl,
                       "{\"text\": \"alpha\"}\n"
                       "{\"text\": \"beta\"\n"        // 2: not JSON
                       "\n"
                       "{\"other\": \"gamma\"}\n"    // 4: missing field
                       "{\"text\": 5}\n"             // 5: not a string
                       "[1, 2]\n"                    // 6: not an object
                       "{\"text\": \"\xFF\"}\n"      // 7: invalid UTF-8
                       "{\"text\": \"delta\"}\n");
  auto stream_errors = [&](const std::string& file) {
    tq::data::StreamOptions so;
    so.stop_on_bad_data = true;
    tq::data::DocumentStream s({file}, tok, so);
    tq::data::Document d;
    return tq::test::error_of([&] {
      while (s.next(d)) {
      }
    });
  };
  const std::string e_txt = stream_errors(txt);
  CHECK(e_txt.find(txt + ":5: invalid UTF-8 at byte offset 33") != std::string::npos);
  const std::string e_jl = stream_errors(jl);
  CHECK(e_jl.find(jl + ":2: not JSON") != std::string::npos);

  // Skip: count, and the good documents only.
  tq::data::DocumentStream s({txt, jl}, tok, tq::data::StreamOptions{});
  std::vector<std::string> texts;
  tq::data::Document d;
  while (s.next(d)) texts.push_back(tok->decode(d.tokens));
  CHECK(s.bad_records() == 6);
  CHECK(texts == std::vector<std::string>{"good one\nstill one", "third doc", "alpha", "delta"});

  // Through the loader: stop rethrows the producer's error in next_batch; skip packs the rest.
  LoaderOptions o;
  o.sources = {jl};
  o.seq_len = 2;
  o.shuffle = false;
  o.on_bad_data = "stop";
  TokenLoader stop(tok, o, "t");
  tq::Tensor ids, targets;
  const std::string e = tq::test::error_of([&] {
    for (int i = 0; i < 100; ++i) stop.next_batch(1, ids, targets);
  });
  CHECK(e.find(jl + ":2: not JSON") != std::string::npos);
  CHECK(e.find("on_bad_data: stop") != std::string::npos);
  o.on_bad_data = "skip";
  TokenLoader skip(tok, o, "t");
  const auto ref =
      tq::test::reference_windows(tq::test::reference_stream({"alpha", "delta"}), 2);
  CHECK(tq::test::read_windows(skip, static_cast<int64_t>(ref.size())) == ref);
  CHECK(skip.stats().bad_records >= 5);
}

TEST_CASE("loader: option, source and cursor errors name the field") {
  Corpus c(7, 3);
  auto tok = c.tok;
  auto bad = [&](auto edit) {
    auto o = c.opts(4, true);
    edit(o);
    return tq::test::error_of([&] { TokenLoader l(tok, o, "data.train"); });
  };
  CHECK(bad([](LoaderOptions& o) { o.seq_len = 0; }).find("'seq_len'") != std::string::npos);
  CHECK(bad([](LoaderOptions& o) { o.rank = 2; }).find("'rank'") != std::string::npos);
  CHECK(bad([](LoaderOptions& o) { o.on_bad_data = "ignore"; }).find("'on_bad_data'") !=
        std::string::npos);
  CHECK(bad([](LoaderOptions& o) { o.split = "test"; }).find("'split'") != std::string::npos);
  CHECK(bad([](LoaderOptions& o) { o.split = "valid"; }).find("'split'") != std::string::npos);
  CHECK(bad([](LoaderOptions& o) { o.txt_document = "page"; }).find("'txt_document'") !=
        std::string::npos);
  const std::string nomatch = c.dir.file("nothing*.txt");
  CHECK(bad([&](LoaderOptions& o) { o.sources = {nomatch}; })
            .find("'" + nomatch + "' matches no file") != std::string::npos);
  tq::test::write_text(c.dir.file("x.csv"), "a,b\n");
  CHECK(bad([&](LoaderOptions& o) { o.sources = {c.dir.file("x.csv")}; }).find("x.csv") !=
        std::string::npos);
  auto o = c.opts(4, true);
  CHECK(tq::test::error_of([&] { TokenLoader l(nullptr, o, "t"); }).find("no tokenizer") !=
        std::string::npos);
  // Too little data for one window.
  o.seq_len = 100000;
  TokenLoader tiny(tok, o, "t");
  tq::Tensor ids, targets;
  CHECK(tq::test::error_of([&] { tiny.next_batch(1, ids, targets); }).find("no window") !=
        std::string::npos);

  o.seq_len = 4;
  TokenLoader loader(tok, o, "t");
  tq::test::read_windows(loader, 3);
  const Json good = loader.cursor();
  auto restore_err = [&](auto edit) {
    Json j = good;
    edit(j);
    return tq::test::error_of([&] { loader.restore(j); });
  };
  CHECK(restore_err([](Json& j) { j["seq_len"] = 8; }).find("'seq_len'") != std::string::npos);
  CHECK(restore_err([](Json& j) { j.erase("skip"); }).find("'skip'") != std::string::npos);
  CHECK(restore_err([](Json& j) { j["epoch"] = "one"; }).find("'epoch'") != std::string::npos);
  CHECK(restore_err([](Json& j) { j["bogus"] = 1; }).find("'bogus'") != std::string::npos);
  CHECK(restore_err([](Json& j) { j["file"] = 9; }).find("'file'") != std::string::npos);
  CHECK(restore_err([](Json& j) { j["seed"] = 1; }).find("'seed'") != std::string::npos);
  // A well-formed cursor whose document is not where it says: an error from next_batch.
  Json moved = good;
  moved["offset"] = good["offset"].get<uint64_t>() + 1;
  loader.restore(moved);
  CHECK(tq::test::error_of([&] { loader.next_batch(1, ids, targets); }).find("sources changed") !=
        std::string::npos);
  loader.restore(good);  // still usable after rejected cursors
  CHECK(loader.cursor() == good);
}

TEST_CASE("loader: destruction while the producer is blocked or running is clean") {
  Corpus c(8);
  for (int64_t prefetch : {1, 2, 1000}) {
    auto o = c.opts(3, true);
    o.prefetch = prefetch;
    { TokenLoader l(c.tok, o, "t"); }
    TokenLoader l(c.tok, o, "t");
    tq::test::read_windows(l, 2);
  }
}

TEST_CASE("loader: throughput on an installed corpus (set TQ_BENCH_CORPUS, TQ_BENCH_TOKENIZER)") {
  const char* corpus = std::getenv("TQ_BENCH_CORPUS");      // e.g. 'data-cache/corpora/brown/train/*.txt'
  const char* tok_path = std::getenv("TQ_BENCH_TOKENIZER");  // a .model / tokenizer.json / dir
  if (corpus == nullptr || tok_path == nullptr) {
    MESSAGE("skipped: set TQ_BENCH_CORPUS and TQ_BENCH_TOKENIZER to measure");
    return;
  }
  std::shared_ptr<const tq::data::Tokenizer> tok = tq::data::load_tokenizer(tok_path);
  LoaderOptions o;
  o.sources = {corpus};
  o.seq_len = 256;
  const int64_t B = 16, steps = 200;
  for (bool shuffle : {false, true}) {
    o.shuffle = shuffle;
    const auto t0 = std::chrono::steady_clock::now();
    TokenLoader loader(tok, o, "bench");
    tq::Tensor ids, targets;
    for (int64_t i = 0; i < steps; ++i) loader.next_batch(B, ids, targets);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("shuffle " << shuffle << ": " << steps * B * o.seq_len << " tokens in " << s << " s = "
                       << static_cast<double>(steps * B * o.seq_len) / s << " tokens/s (B " << B
                       << ", seq_len 256, from construction)");
  }
}
