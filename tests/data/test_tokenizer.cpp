// Tokenizers: golden ids for the real LLaMA-2 (SentencePiece) and LLaMA-3 (byte-level BPE)
// vocabularies, round trips, SentencePiece training and error messages. Tests that need the
// fetched assets (scripts/fetch-tokenizers.sh) find them via TQ_TOKENIZER_DIR or
// <source>/data-cache/tokenizers and are skipped with a message when absent.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "data/bpe_tokenizer.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/spm_trainer.h"
#include "data/tokenizer.h"
#include "tests/test_util.h"

using tq::data::load_tokenizer;
using tq::data::Tokenizer;

namespace {

std::string tokenizer_dir() {
  if (const char* e = std::getenv("TQ_TOKENIZER_DIR"); e != nullptr && *e) return e;
  return tq::test::source_path("data-cache/tokenizers");
}

// The asset path, or "" (and a MESSAGE) when it has not been fetched.
std::string asset(const std::string& rel) {
  const std::string p = tokenizer_dir() + "/" + rel;
  if (!std::filesystem::exists(p)) {
    MESSAGE("skipped: " << p
                        << " not found — run scripts/fetch-tokenizers.sh or set TQ_TOKENIZER_DIR");
    return "";
  }
  return p;
}

const std::vector<std::string>& round_trip_texts() {
  static const std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily.",
      "Grüße, 世界! naïve café — emoji 🙂 and tabs\t\n  spaces",
      "مرحبا بالعالم، كيف حالك؟",
      "नमस्ते दुनिया, आप कैसे हैं?",
      "   leading and trailing spaces   \n\n\n",
      "Rare scripts need byte fallback: 𓀀𓀁 ꙮ ᚠᚢᚦ 🦀🧬 \x01\x7f",
      "I'm sure they've said it's 12345 dollars, DON'T you?",
      "",
  };
  return texts;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

// ~40 KB of mixed text: long enough to be encoded in chunks.
std::string long_text() {
  std::string t;
  for (int i = 0; t.size() < 40000; ++i) {
    t += round_trip_texts()[static_cast<size_t>(i) % 7] + (i % 3 ? " " : "\n") +
         "x=" + std::to_string(i * 31) + " a.b c";
  }
  return t;
}

// See Note [SentencePiece chunking]: chunked encoding equals one libsentencepiece call.
void check_chunking_exact(const Tokenizer& tok) {
  const auto& sp = dynamic_cast<const tq::data::SentencePieceTokenizer&>(tok);
  CHECK(sp.chunked());
  const std::string t = long_text();
  CHECK(tok.encode(t) == sp.encode_whole(t));
  CHECK(tok.decode(tok.encode(t)) == t);
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::ostringstream os;
  for (size_t i = 0; i < ids.size(); ++i) os << (i ? " " : "") << ids[i];
  return os.str();
}

}  // namespace

TEST_CASE("llama2 sentencepiece: golden ids and round trips") {
  const std::string path = asset("llama2/tokenizer.model");
  if (path.empty()) return;
  auto tok = load_tokenizer(tokenizer_dir() + "/llama2");
  CHECK(std::string(tok->kind()) == "sentencepiece");
  CHECK(tok->vocab_size() == 32000);
  CHECK(tok->unk_id() == 0);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->pad_id() == -1);
  CHECK(tok->piece_to_id("▁the") == 278);
  CHECK(tok->id_to_piece(278) == "▁the");
  CHECK(tok->piece_to_id("<0x0A>") == 13);
  CHECK(tok->piece_to_id("no-such-piece-xyz") == -1);
  CHECK(tok->piece_to_id("<unk>") == 0);

  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const std::vector<int32_t> golden = {9038, 2501, 263,  931,  29892, 727,  471,
                                       263,  2217, 7826, 4257, 365,   2354, 29889};
  CHECK(ids_str(tok->encode(text)) == ids_str(golden));
  std::vector<int32_t> with = golden;
  with.insert(with.begin(), 1);
  with.push_back(2);
  CHECK(ids_str(tok->encode(text, true, true)) == ids_str(with));
  CHECK(tok->decode(with) == text);
  for (const auto& t : round_trip_texts()) {
    INFO("text: " << t);
    CHECK(tok->decode(tok->encode(t)) == t);
  }
  // Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes <0xF0> ....
  const auto ids = tok->encode("𓀀");
  bool has_byte = false;
  for (int32_t id : ids) has_byte |= tok->id_to_piece(id).rfind("<0x", 0) == 0;
  CHECK(has_byte);
  check_chunking_exact(*tok);
  CHECK(tq::test::error_of([&] { tok->decode({32000}); }).find("32000") != std::string::npos);
}

TEST_CASE("llama3 bpe: golden ids and round trips") {
  const std::string path = asset("llama3/tokenizer.json");
  if (path.empty()) return;
  auto tok = load_tokenizer(tokenizer_dir() + "/llama3");
  CHECK(std::string(tok->kind()) == "bpe");
  CHECK(tok->vocab_size() == 128256);
  CHECK(tok->bos_id() == 128000);
  CHECK(tok->eos_id() == 128001);
  CHECK(tok->unk_id() == -1);
  CHECK(tok->piece_to_id("<|begin_of_text|>") == 128000);
  CHECK(tok->id_to_piece(128001) == "<|end_of_text|>");
  CHECK(tok->piece_to_id("no-such-piece-xyz") == -1);
  CHECK(dynamic_cast<const tq::data::BpeTokenizer&>(*tok).num_merges() == 280147);

  const std::string text = "Once upon a time, there was a little girl named Lily.";
  CHECK(ids_str(tok->encode(text, true, true)) ==
        "128000 12805 5304 264 892 11 1070 574 264 2697 3828 7086 48390 13 128001");

  // Generated with llama3-tokenizer-js@1.2.0 (an independent implementation):
  //   npm pack llama3-tokenizer-js@1.2.0 && tar xzf llama3-tokenizer-js-1.2.0.tgz
  //   node -e 'const t=require("./package/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs");
  //            console.log(t.llama3Tokenizer.encode(TEXT,{bos:false,eos:false}).join(" "))'
  struct Golden {
    const char* text;
    const char* ids;
  };
  const Golden goldens[] = {
      {"Grüße, 世界! naïve café — emoji 🙂 and tabs\t\n  spaces",
       "6600 2448 24352 11 127365 0 95980 588 53050 2001 43465 28584 323 23204 1602 220 12908"},
      {"مرحبا بالعالم", "101244 30925 103645 100700 24102 101952"},
      {"नमस्ते दुनिया", "61196 88344 79468 100365 35470 100291 101391 100322 24810"},
      {"I'm sure they've said it's 12345 dollars, DON'T you?",
       "40 2846 2771 814 3077 1071 433 596 220 4513 1774 11441 11 45373 17773 499 30"},
      {"   leading spaces\n\n\ntrailing   ", "256 6522 12908 1432 376 14612 262"},
      {"def f(x):\n    return x**2  # comment\r\n",
       "755 282 2120 997 262 471 865 334 17 220 674 4068 319"},
      {"HE'S GONE, we'LL see. 1234567 3.14159 1,000,000",
       "1837 13575 480 5338 11 584 6 4178 1518 13 220 4513 10961 22 220 18 13 9335 2946 220 16 11 "
       "931 11 931"},
      {"tab\there\r\nCRLF line\n\n  \n x", "6323 197 6881 319 34 81758 1584 271 2355 865"},
      {"\u00a0non-breaking\u2003em-space\u3000ideographic",
       "4194 6414 55407 116503 336 29047 23249 95107"},
      {"👨\u200d👩\u200d👧\u200d👦 family, \U0001f1ef\U0001f1f5 flag, é vs e\u0301",
       "9468 239 101 102470 9468 239 102 102470 9468 239 100 102470 9468 239 99 3070 11 11410 229 "
       "107 9468 229 113 5292 11 4046 6296 384 54939"},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "70540 70540 70540 70540 70540 70540 70540 70540"},
      {"Привет, мир! Ελληνικά. 한국어 텍스트. 日本語のテキスト。",
       "54745 28089 8341 11 115388 0 121029 102434 13 104008 32179 10997 45204 54289 13 105180 "
       "102158 16144 57933 62903 71634 1811"},
      {"    def __init__(self):\n        self.x = {\"k\": [1, 2]}  # ok?!\n",
       "262 711 1328 2381 3889 726 997 286 659 2036 284 5324 74 794 510 16 11 220 17 14316 220 674 "
       "5509 30 4999"},
  };
  for (const auto& g : goldens) {
    INFO("text: " << g.text);
    CHECK(ids_str(tok->encode(g.text)) == g.ids);
  }

  for (const auto& t : round_trip_texts()) {
    INFO("text: " << t);
    CHECK(tok->decode(tok->encode(t)) == t);
  }
  // Special tokens in the input are matched verbatim, before pre-tokenization.
  const auto sp = tok->encode("a<|end_of_text|>b<|begin_of_text|>");
  CHECK(ids_str(sp) == ids_str({tok->piece_to_id("a"), 128001, tok->piece_to_id("b"), 128000}));
  CHECK(tok->decode(sp) == "a<|end_of_text|>b<|begin_of_text|>");
  // A long run of one character (no quadratic blow-up, still a round trip).
  const std::string spaces(20000, ' ');
  CHECK(tok->decode(tok->encode(spaces)) == spaces);
  const std::string digits(20000, '7');
  CHECK(tok->decode(tok->encode(digits)) == digits);
  // Invalid UTF-8 is an error naming the byte.
  CHECK(tq::test::error_of([&] { tok->encode("ab\xff"); }).find("not valid UTF-8 at byte 2") !=
        std::string::npos);
  CHECK(tq::test::error_of([&] { tok->decode({-1}); }).find("cannot decode id -1") !=
        std::string::npos);
}

// Opt-in: TQ_TOKENIZER_BENCH=1 [TQ_TOKENIZER_BENCH_FILE=some.txt] test_data -tc="*speed*".
TEST_CASE("tokenizer encoding speed" *
          doctest::skip(std::getenv("TQ_TOKENIZER_BENCH") == nullptr)) {
  std::string text;
  if (const char* f = std::getenv("TQ_TOKENIZER_BENCH_FILE"); f != nullptr && *f) {
    std::ifstream in(f, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    const auto& texts = round_trip_texts();
    for (int i = 0; text.size() < (8u << 20); ++i) {
      text +=
          texts[static_cast<size_t>(i) % 5] + " sentence number " + std::to_string(i * 7919) + ". ";
    }
  }
  for (const char* rel : {"llama3/tokenizer.json", "llama2/tokenizer.model"}) {
    const std::string path = asset(rel);
    if (path.empty()) continue;
    auto tok = load_tokenizer(path);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok->encode(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(std::string(rel) << ": " << static_cast<double>(text.size()) / 1e6 / s << " MB/s over "
                             << static_cast<double>(text.size()) / 1e6 << " MB, " << ids.size()
                             << " tokens");
    CHECK(tok->decode(ids) == text);
  }
}

TEST_CASE("gpt2 encoder.json + vocab.bpe: golden ids") {
  if (asset("gpt2/encoder.json").empty() || asset("gpt2/vocab.bpe").empty()) return;
  auto tok = load_tokenizer(tokenizer_dir() + "/gpt2");
  CHECK(tok->vocab_size() == 50257);
  CHECK(tok->bos_id() == 50256);
  CHECK(tok->eos_id() == 50256);
  // Golden ids from gpt-3-encoder@1.1.4 (docs: /work/shared/assets.md).
  CHECK(ids_str(tok->encode("Once upon a time, there was a little girl named Lily.")) ==
        "7454 2402 257 640 11 612 373 257 1310 2576 3706 20037 13");
  for (const auto& t : round_trip_texts()) {
    INFO("text: " << t);
    CHECK(tok->decode(tok->encode(t)) == t);
  }
  CHECK(tok->decode(tok->encode("a<|endoftext|>b", false, true)) == "a<|endoftext|>b<|endoftext|>");
}

TEST_CASE("gpt2-style tokenizer.json: pair merges, ByteLevel regex, <|endoftext|>") {
  // A tiny hand-written byte-level vocabulary: 256 byte symbols, then merges in pair form.
  tq::test::TempDir dir("bpe");
  tq::Json vocab = tq::Json::object();
  // bytes_to_unicode order is irrelevant here; ids come from the byte-level characters.
  std::vector<std::string> chars;
  {
    auto enc = [](uint32_t cp) {
      std::string s;
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      return s;
    };
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      chars.push_back(enc(direct ? b : 256 + n++));
    }
  }
  for (uint32_t b = 0; b < 256; ++b) vocab[chars[b]] = static_cast<int>(b);
  const std::string sp = chars[' '];  // "Ġ"
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab[sp + "w"] = 260;
  vocab["<|endoftext|>"] = 261;
  tq::Json j = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 261}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", tq::Json::array({tq::Json::array({"h", "e"}), tq::Json::array({"l", "l"}),
                                    tq::Json::array({"he", "ll"}), tq::Json::array({"hell", "o"}),
                                    tq::Json::array({sp, "w"})})}}},
  };
  const std::string path = dir.file("tokenizer.json");
  tq::write_json_file(path, j);
  auto tok = load_tokenizer(dir.path.string());
  CHECK(tok->vocab_size() == 262);
  CHECK(tok->bos_id() == 261);
  CHECK(tok->eos_id() == 261);
  const auto ids = tok->encode("hello world<|endoftext|>hello");
  CHECK(ids_str(ids) == ids_str({259, 260, 'o', 'r', 'l', 'd', 261, 259}));
  CHECK(tok->decode(ids) == "hello world<|endoftext|>hello");
  for (const auto& t : round_trip_texts()) {
    INFO("text: " << t);
    CHECK(tok->decode(tok->encode(t)) == t);
  }

  SUBCASE("string-form merges give the same result") {
    j["model"]["merges"] = tq::Json::array({"h e", "l l", "he ll", "hell o", sp + " w"});
    tq::write_json_file(path, j);
    auto t2 = load_tokenizer(path);
    CHECK(ids_str(t2->encode("hello world")) == ids_str({259, 260, 'o', 'r', 'l', 'd'}));
  }
  SUBCASE("unsupported model type names the field") {
    j["model"]["type"] = "WordPiece";
    tq::write_json_file(path, j);
    const std::string e = tq::test::error_of([&] { load_tokenizer(path); });
    CHECK(e.find("model.type") != std::string::npos);
    CHECK(e.find("WordPiece") != std::string::npos);
    CHECK(e.find(path) != std::string::npos);
  }
  SUBCASE("unsupported pre_tokenizer names the field") {
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "Whitespace"}}, {{"type", "ByteLevel"}}}}};
    tq::write_json_file(path, j);
    const std::string e = tq::test::error_of([&] { load_tokenizer(path); });
    CHECK(e.find("pre_tokenizer.pretokenizers[0].type") != std::string::npos);
  }
  SUBCASE("bad merge names the index") {
    j["model"]["merges"] = tq::Json::array({"h e", "x"});
    tq::write_json_file(path, j);
    CHECK(tq::test::error_of([&] { load_tokenizer(path); }).find("model.merges[1]") !=
          std::string::npos);
  }
  SUBCASE("bad regex names the field") {
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"use_regex", false}}}}};
    tq::write_json_file(path, j);
    CHECK(tq::test::error_of([&] {
            load_tokenizer(path);
          }).find("pre_tokenizer.pretokenizers[0].pattern.Regex") != std::string::npos);
  }
}

TEST_CASE("load_tokenizer errors") {
  tq::test::TempDir dir("tokerr");
  CHECK(tq::test::error_of([&] {
          load_tokenizer(dir.file("missing.json"));
        }).find("missing.json") != std::string::npos);
  CHECK(tq::test::error_of([&] {
          load_tokenizer(dir.path.string());
        }).find("neither tokenizer.json") != std::string::npos);
  const std::string corrupt = dir.file("tokenizer.model");
  write_file(corrupt, "this is not a protobuf \x01\x02\x03");
  const std::string e = tq::test::error_of([&] { load_tokenizer(corrupt); });
  CHECK(e.find("[sentencepiece] cannot load") != std::string::npos);
  CHECK(e.find(corrupt) != std::string::npos);
  write_file(dir.file("x.txt"), "hello");
  CHECK(tq::test::error_of([&] { load_tokenizer(dir.file("x.txt")); }).find("extension") !=
        std::string::npos);
  write_file(dir.file("bad.json"), "{\"model\": 3}");
  CHECK(tq::test::error_of([&] { load_tokenizer(dir.file("bad.json")); }).find("'model'") !=
        std::string::npos);
}

TEST_CASE("train_sentencepiece: a small BPE vocabulary round-trips") {
  tq::test::TempDir dir("spm");
  // ~300 KB of generated sentences with a fixed seed.
  const char* subjects[] = {"the cat",     "a little girl", "the old king",  "my friend",
                            "a small dog", "the teacher",   "our neighbour", "the red fox"};
  const char* verbs[] = {"saw", "liked", "found", "followed", "painted", "remembered", "carried"};
  const char* objects[] = {"a bright star", "the river",     "an apple",   "the garden",
                           "a blue book",   "the tall tree", "some bread", "the quiet village"};
  const char* tails[] = {".", " yesterday.",      " in the morning.", " near the house!",
                         "?", " with great care."};
  tq::Rng rng = tq::test::make_rng(77);
  std::string corpus;
  while (corpus.size() < 300000) {
    auto pick = [&](size_t n) { return static_cast<size_t>(rng.next_u64() % n); };
    std::string s = std::string(subjects[pick(8)]) + " " + verbs[pick(7)] + " " + objects[pick(8)] +
                    tails[pick(6)] + " " + std::to_string(pick(1000)) + "\n";
    s[0] = static_cast<char>(s[0] - 'a' + 'A');
    corpus += s;
  }
  const std::string input = dir.file("corpus.txt");
  write_file(input, corpus);
  const std::string prefix = dir.file("spm512");
  tq::data::train_sentencepiece({input}, prefix, 512, "bpe", true, {{"minloglevel", "2"}});
  auto tok = load_tokenizer(prefix + ".model");
  CHECK(tok->vocab_size() == 512);
  CHECK(tok->unk_id() == 0);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->pad_id() == -1);
  CHECK(tok->piece_to_id("<0x41>") >= 3);  // byte fallback pieces exist
  const std::string line = "The old king painted the quiet village yesterday. 123";
  const auto ids = tok->encode(line, true, true);
  CHECK(ids.front() == 1);
  CHECK(ids.back() == 2);
  CHECK(ids.size() < line.size() / 2);  // the vocabulary actually merged something
  CHECK(tok->decode(ids) == line);
  check_chunking_exact(*tok);
  for (const auto& t : round_trip_texts()) {
    INFO("text: " << t);
    CHECK(tok->decode(tok->encode(t)) == t);  // unseen characters go through byte fallback
  }

  CHECK(tq::test::error_of([&] {
          tq::data::train_sentencepiece({dir.file("nope.txt")}, prefix, 512);
        }).find("nope.txt") != std::string::npos);
  CHECK(tq::test::error_of([&] {
          tq::data::train_sentencepiece({input}, prefix, 512, "bogus");
        }).find("model_type") != std::string::npos);
  CHECK(tq::test::error_of([&] {
          tq::data::train_sentencepiece({input}, dir.file("nodir/x"), 512);
        }).find("does not exist") != std::string::npos);
}
