// Token shards: the byte layout of docs/formats.md, validation errors naming the file, and a
// loader over a shard yielding exactly the windows of the text it was written from.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "data/document_stream.h"
#include "data/loader.h"
#include "data/shard.h"
#include "tests/data/data_fixtures.h"
#include "tests/test_util.h"

using tq::data::LoaderOptions;
using tq::data::ShardFile;
using tq::data::ShardWriter;
using tq::data::TokenLoader;
using tq::test::ByteTokenizer;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
template <class T>
T get_le(const std::vector<uint8_t>& b, size_t off) {
  T v{};
  for (size_t i = 0; i < sizeof(T); ++i) {
    v = static_cast<T>(v | static_cast<T>(static_cast<T>(b[off + i]) << (8 * i)));
  }
  return v;
}
// FNV-1a 64, written out again here as the independent reference.
uint64_t fnv_ref(const std::vector<uint8_t>& b, size_t from) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = from; i < b.size(); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

}  // namespace

TEST_CASE("shard: writer output has the documented layout and reads back") {
  tq::test::TempDir dir("shard");
  auto rng = tq::test::make_rng(11);
  std::vector<int32_t> tokens(300000);  // more than one 256K flush
  for (auto& t : tokens) t = static_cast<int32_t>(rng.below(1000));
  const std::string path = dir.file("a.tqshard");
  {
    ShardWriter w(path, 1000, 1, 2);
    w.append(tokens.data(), 1000);
    w.append(std::vector<int32_t>(tokens.begin() + 1000, tokens.end()));
    CHECK(!std::filesystem::exists(path));  // only the temp file exists before commit
    w.commit();
  }
  const auto b = read_bytes(path);
  REQUIRE(b.size() == 64 + 4 * tokens.size());
  CHECK(std::memcmp(b.data(), "TQSHARD\0", 8) == 0);
  CHECK(get_le<uint32_t>(b, 8) == 1);      // version
  CHECK(get_le<uint32_t>(b, 12) == 4);     // token width
  CHECK(get_le<uint32_t>(b, 16) == 1000);  // vocab
  CHECK(get_le<uint32_t>(b, 20) == 1);     // bos
  CHECK(get_le<uint32_t>(b, 24) == 2);     // eos
  CHECK(get_le<uint32_t>(b, 28) == 0);     // reserved
  CHECK(get_le<uint64_t>(b, 32) == tokens.size());
  CHECK(get_le<uint64_t>(b, 40) == fnv_ref(b, 64));
  for (size_t i = 48; i < 64; ++i) CHECK(b[i] == 0);
  for (size_t i = 0; i < tokens.size(); i += 997) {
    REQUIRE(get_le<uint32_t>(b, 64 + 4 * i) == static_cast<uint32_t>(tokens[i]));
  }
  const auto shard = ShardFile::open(path);
  CHECK(shard->num_tokens() == tokens.size());
  CHECK(shard->header().vocab_size == 1000);
  CHECK(std::equal(tokens.begin(), tokens.end(), shard->tokens(),
                   [](int32_t a, uint32_t c) { return static_cast<uint32_t>(a) == c; }));
  // No commit: nothing is left behind.
  {
    ShardWriter w(dir.file("b.tqshard"), 10, -1, -1);
    w.append({1, 2, 3});
  }
  CHECK(!std::filesystem::exists(dir.file("b.tqshard")));
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path), {}) == 1);
  ShardWriter w(dir.file("c.tqshard"), 10, -1, -1);
  CHECK(tq::test::error_of([&] { w.append({3, 10}); }).find("outside the vocabulary") !=
        std::string::npos);
}

TEST_CASE("shard: truncated or corrupt shards are errors naming the file") {
  tq::test::TempDir dir("shard_bad");
  const std::string good = dir.file("good.tqshard");
  {
    ShardWriter w(good, 50, 1, 2);
    w.append({1, 5, 6, 7, 2, 1, 9, 2});
    w.commit();
  }
  const auto bytes = read_bytes(good);
  auto check = [&](const std::string& name, auto edit, const std::string& what) {
    auto b = bytes;
    edit(b);
    const std::string p = dir.file(name);
    write_bytes(p, b);
    const std::string e = tq::test::error_of([&] { ShardFile::open(p); });
    CAPTURE(e);
    CHECK(e.find(p) != std::string::npos);
    CHECK(e.find(what) != std::string::npos);
  };
  check("trunc.tqshard", [](auto& b) { b.resize(b.size() - 4); }, "does not match the header");
  check("trunc2.tqshard", [](auto& b) { b.resize(b.size() - 1); }, "does not match the header");
  check("long.tqshard", [](auto& b) { b.push_back(0); }, "does not match the header");
  check("head.tqshard", [](auto& b) { b.resize(30); }, "truncated");
  check("magic.tqshard", [](auto& b) { b[0] = 'X'; }, "bad magic");
  check("version.tqshard", [](auto& b) { b[8] = 2; }, "version 2");
  check("width.tqshard", [](auto& b) { b[12] = 2; }, "token width 2");
  check("sum.tqshard", [](auto& b) { b[64 + 4 * 3] ^= 1; }, "checksum");
  check("count.tqshard", [](auto& b) { b[32] = 200; }, "does not match the header");
  check("range.tqshard",
        [](auto& b) {
          b[64 + 4 * 2] = 60;  // token 60 >= vocab 50, with a recomputed checksum
          const uint64_t h = fnv_ref(b, 64);
          for (int i = 0; i < 8; ++i) b[40 + i] = static_cast<uint8_t>(h >> (8 * i));
        },
        "outside the vocabulary");
  CHECK(tq::test::error_of([&] { ShardFile::open(dir.file("missing.tqshard")); })
            .find("missing.tqshard") != std::string::npos);

  // Through the loader: stop names the file; skip counts the shard and goes on with the rest.
  auto tok = std::make_shared<ByteTokenizer>();
  tq::test::write_txt(dir.file("z.txt"), {"some text here"});
  LoaderOptions o;
  o.sources = {dir.file("magic.tqshard"), dir.file("z.txt")};
  o.seq_len = 3;
  o.shuffle = false;
  o.on_bad_data = "stop";
  tq::Tensor ids, targets;
  {
    TokenLoader l(tok, o, "t");
    const std::string e = tq::test::error_of([&] { l.next_batch(1, ids, targets); });
    CHECK(e.find("magic.tqshard: bad magic") != std::string::npos);
  }
  o.sources = {good, dir.file("z.txt")};  // good.tqshard has vocab 50, the tokenizer 259
  {
    TokenLoader l(tok, o, "t");
    const std::string e = tq::test::error_of([&] { l.next_batch(1, ids, targets); });
    CHECK(e.find("good.tqshard: shard vocab size 50 differs from the tokenizer's 259") !=
          std::string::npos);
  }
  o.on_bad_data = "skip";
  TokenLoader l(tok, o, "t");
  const auto ref =
      tq::test::reference_windows(tq::test::reference_stream({"some text here"}), 3);
  CHECK(tq::test::read_windows(l, static_cast<int64_t>(ref.size())) == ref);
  CHECK(l.stats().bad_records >= 1);
}

TEST_CASE("shard: a loader over a written shard equals the text path, shuffled and resumed") {
  tq::test::TempDir dir("shard_loader");
  auto rng = tq::test::make_rng(12);
  const auto docs = tq::test::random_docs(rng, 60);
  for (bool specials : {true, false}) {
    CAPTURE(specials);
    auto tok = std::make_shared<ByteTokenizer>(specials);
    tq::test::write_txt(dir.file("t.txt"), docs);
    const std::string shard = dir.file(specials ? "s.tqshard" : "bare.tqshard");
    {
      ShardWriter w(shard, tok->vocab_size(), tok->bos_id(), tok->eos_id());
      for (const auto& d : docs) w.append(tok->encode(d, specials, specials));
      w.commit();
    }
    // The shard's documents are the text's documents.
    if (specials) {
      tq::data::DocumentStream s({shard}, nullptr, {});
      tq::data::Document d;
      size_t n = 0;
      while (s.next(d)) {
        REQUIRE(n < docs.size());
        CHECK(tok->decode(d.tokens) == docs[n]);
        CHECK(d.pos.index == static_cast<int64_t>(n));
        ++n;
      }
      CHECK(n == docs.size());
    }
    for (bool shuffle : {false, true}) {
      LoaderOptions o;
      o.seq_len = 5;
      o.shuffle = shuffle;
      o.shuffle_block = 7;
      o.sources = {dir.file("t.txt")};
      TokenLoader text(tok, o, "t");
      o.sources = {shard};
      TokenLoader from_shard(nullptr, o, "t");
      const auto n = static_cast<int64_t>(
          tq::test::reference_windows(tq::test::reference_stream(docs, specials), 5).size());
      const auto a = tq::test::read_windows(text, n + 9);
      CHECK(tq::test::read_windows(from_shard, n + 9) == a);
      // Resume inside the shard.
      TokenLoader r(nullptr, o, "t");
      tq::test::read_windows(r, 11);
      const auto cur = r.cursor();
      TokenLoader r2(nullptr, o, "t");
      r2.restore(cur);
      CHECK(tq::test::read_windows(r2, 12) == std::vector<std::vector<int32_t>>(a.begin() + 11, a.begin() + 23));
    }
  }
}
