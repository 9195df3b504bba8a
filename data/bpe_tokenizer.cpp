#include "data/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <queue>

#include "core/error.h"
#include "core/json.h"

namespace tq::data {
namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr size_t kCacheMaxEntries = size_t{1} << 18;

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one code point at s[i]; returns its length, 0 if the sequence is invalid UTF-8
// (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t utf8_next(std::string_view s, size_t i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len;
  uint32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1Fu, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0Fu, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
std::vector<uint32_t> bytes_to_unicode() {
  std::vector<uint32_t> map(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[static_cast<size_t>(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[static_cast<size_t>(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[static_cast<size_t>(b)] = true;
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) map[b] = direct[b] ? b : 256 + n++;
  return map;
}

// Per-thread PCRE2 match state; a JIT stack may not be shared between threads.
struct Matcher {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  Matcher() {
    data = pcre2_match_data_create(1, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    TQ_ASSERT(data && ctx && stack, "pcre2 allocation failed");
    pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~Matcher() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(data);
  }
};

Matcher& thread_matcher() {
  thread_local Matcher m;
  return m;
}

void* compile_regex(const std::string& pattern, bool literal, const std::string& ctx,
                    const std::string& field) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP;
  if (literal) opts |= PCRE2_LITERAL;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   opts, &err, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    TQ_THROW("[bpe_tokenizer] {}: field '{}': cannot compile regex at offset {}: {}", ctx, field,
             offset, reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is absent
  return code;
}

// Splits each piece at the regex matches, keeping both matches and the gaps between them
// (HF SplitDelimiterBehavior::Isolated).
void split_isolated(void* code_ptr, const std::vector<std::string_view>& in,
                    std::vector<std::string_view>& out) {
  auto* code = static_cast<pcre2_code*>(code_ptr);
  Matcher& m = thread_matcher();
  out.clear();
  for (std::string_view piece : in) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    size_t emitted = 0;
    size_t search = 0;
    while (search < piece.size()) {
      const int rc =
          pcre2_match(code, subject, piece.size(), search, PCRE2_NO_UTF_CHECK, m.data, m.ctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof(buf));
        TQ_THROW("[bpe_tokenizer] regex match failed: {}", reinterpret_cast<const char*>(buf));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.data);
      const size_t ms = ov[0], me = ov[1];
      if (me == ms) {  // empty match: step one code point, leaving it to the gap
        uint32_t cp;
        const size_t len = utf8_next(piece, ms, cp);
        search = ms + std::max<size_t>(len, 1);
        continue;
      }
      if (ms > emitted) out.push_back(piece.substr(emitted, ms - emitted));
      out.push_back(piece.substr(ms, me - ms));
      emitted = search = me;
    }
    if (emitted < piece.size()) out.push_back(piece.substr(emitted));
  }
}

std::string token_content(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::string path) : BpeTokenizer(read_json_file(path), path) {}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_gpt2_files(const std::string& encoder_json,
                                                            const std::string& vocab_bpe) {
  Json vocab = read_json_file(encoder_json);
  TQ_CHECK(vocab.is_object(), "[bpe_tokenizer] {}: expected an object {{piece: id}}", encoder_json);
  std::ifstream in(vocab_bpe, std::ios::binary);
  TQ_CHECK(in.good(), "[bpe_tokenizer] cannot open {}", vocab_bpe);
  Json merges = Json::array();
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
    merges.push_back(line);
  }
  Json added = Json::array();
  if (vocab.contains("<|endoftext|>")) {
    added.push_back(
        {{"id", vocab["<|endoftext|>"]}, {"content", "<|endoftext|>"}, {"special", true}});
  }
  const Json j = {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}}},
  };
  return std::make_unique<BpeTokenizer>(j, encoder_json + " + " + vocab_bpe);
}

BpeTokenizer::BpeTokenizer(const Json& j, std::string source) : path_(std::move(source)) {
  const std::string& ctx = path_;
  auto fail_field = [&](const std::string& field, const std::string& what) {
    TQ_THROW("[bpe_tokenizer] {}: field '{}' {}", ctx, field, what);
  };

  // ---- model ----
  const Json model = json_get<Json>(j, "model", ctx);
  TQ_CHECK(model.is_object(), "[bpe_tokenizer] {}: field 'model' must be an object", ctx);
  const std::string type = json_get_or<std::string>(model, "type", "BPE", ctx);
  if (type != "BPE") {
    fail_field("model.type", "is '" + type + "'; only 'BPE' (byte-level) is supported");
  }
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    fail_field("model.dropout", "must be null (BPE dropout is not supported)");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(k) && !model[k].is_null() && model[k] != "") {
      fail_field(std::string("model.") + k, "is not supported (must be null)");
    }
  }
  if (json_get_or<bool>(model, "byte_fallback", false, ctx)) {
    fail_field("model.byte_fallback",
               "is true; only byte-level BPE (byte_fallback false) is supported");
  }
  ignore_merges_ = json_get_or<bool>(model, "ignore_merges", false, ctx);

  const Json& vocab = json_get<Json>(model, "vocab", ctx);
  if (!vocab.is_object()) fail_field("model.vocab", "must be an object {piece: id}");
  int64_t max_id = -1;
  vocab_.reserve(vocab.size() * 2);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = json_as<int32_t>(it.value(), "model.vocab[\"" + it.key() + "\"]", ctx);
    if (id < 0) fail_field("model.vocab[\"" + it.key() + "\"]", "has a negative id");
    vocab_.emplace(it.key(), id);
    max_id = std::max<int64_t>(max_id, id);
  }
  const Json added = json_get_or<Json>(j, "added_tokens", Json::array(), ctx);
  if (!added.is_array()) fail_field("added_tokens", "must be an array");
  for (size_t i = 0; i < added.size(); ++i) {
    const std::string f = "added_tokens[" + std::to_string(i) + "]";
    const auto id = json_get<int32_t>(added[i], "id", ctx + " " + f);
    auto content = json_get<std::string>(added[i], "content", ctx + " " + f);
    if (id < 0) fail_field(f + ".id", "is negative");
    if (content.empty()) fail_field(f + ".content", "is empty");
    max_id = std::max<int64_t>(max_id, id);
    added_.push_back({std::move(content), id});
  }
  TQ_CHECK(max_id >= 0, "[bpe_tokenizer] {}: field 'model.vocab' is empty", ctx);
  pieces_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [piece, id] : vocab_) {
    if (!pieces_[static_cast<size_t>(id)].empty()) {
      fail_field("model.vocab", "maps two pieces to id " + std::to_string(id));
    }
    pieces_[static_cast<size_t>(id)] = piece;
  }
  for (const auto& a : added_) {
    pieces_[static_cast<size_t>(a.id)] = a.content;
    vocab_.emplace(a.content, a.id);
  }

  // Byte-level alphabet.
  const std::vector<uint32_t> b2u = bytes_to_unicode();
  std::unordered_map<uint32_t, unsigned char> u2b;
  for (uint32_t b = 0; b < 256; ++b) {
    append_utf8(byte_char_[b], b2u[b]);
    u2b[b2u[b]] = static_cast<unsigned char>(b);
    const auto it = vocab_.find(byte_char_[b]);
    if (it == vocab_.end()) {
      fail_field("model.vocab", fmt::format("lacks the byte-level symbol '{}' for byte 0x{:02x} — "
                                            "hint: only byte-level BPE vocabularies are supported",
                                            byte_char_[b], b));
    }
    byte_id_[b] = it->second;
  }
  // Decoded bytes per id (ByteLevel decoder); added tokens decode verbatim.
  id_bytes_.assign(pieces_.size(), std::string());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const std::string& p = pieces_[id];
    std::string bytes;
    size_t i = 0;
    bool ok = true;
    while (i < p.size()) {
      uint32_t cp;
      const size_t len = utf8_next(p, i, cp);
      const auto it = len ? u2b.find(cp) : u2b.end();
      if (it == u2b.end()) {
        ok = false;
        break;
      }
      bytes += static_cast<char>(it->second);
      i += len;
    }
    id_bytes_[id] = ok ? bytes : p;
  }
  for (const auto& a : added_) id_bytes_[static_cast<size_t>(a.id)] = a.content;

  // Merges: "a b" or ["a", "b"]; rank = position.
  const Json& merges = json_get<Json>(model, "merges", ctx);
  if (!merges.is_array()) fail_field("model.merges", "must be an array");
  merges_.reserve(merges.size() * 2);
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    const std::string f = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        fail_field(f, "is '" + s + "'; expected two pieces separated by one space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail_field(
          f, std::string("must be a string \"a b\" or a pair [\"a\", \"b\"], got ") + json_kind(m));
    }
    const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end()) {
      fail_field(f, "('" + a + "', '" + b + "') refers to a piece missing from model.vocab");
    }
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                         static_cast<uint32_t>(ib->second);
    merges_.emplace(key, std::make_pair(static_cast<int32_t>(i), iab->second));
  }

  // ---- normalizer ----
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    fail_field("normalizer.type", "is '" +
                                      json_get_or<std::string>(j["normalizer"], "type", "?", ctx) +
                                      "'; only a null normalizer is supported");
  }

  // ---- pre_tokenizer ----
  const Json pre = json_get_or<Json>(j, "pre_tokenizer", Json(), ctx);
  if (pre.is_null()) fail_field("pre_tokenizer", "is null; a ByteLevel pre_tokenizer is required");
  std::vector<std::pair<Json, std::string>> steps;  // (step, field name)
  const std::string pre_type = json_get<std::string>(pre, "type", ctx);
  if (pre_type == "Sequence") {
    const Json list = json_get<Json>(pre, "pretokenizers", ctx);
    if (!list.is_array()) fail_field("pre_tokenizer.pretokenizers", "must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      steps.emplace_back(list[i], "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]");
    }
  } else {
    steps.emplace_back(pre, "pre_tokenizer");
  }
  bool have_byte_level = false;
  for (size_t s = 0; s < steps.size(); ++s) {
    const Json& st = steps[s].first;
    const std::string& f = steps[s].second;
    const std::string t = json_get<std::string>(st, "type", ctx + " " + f);
    if (have_byte_level) fail_field(f + ".type", "'" + t + "' after ByteLevel is not supported");
    if (t == "Split") {
      const std::string behavior = json_get<std::string>(st, "behavior", ctx + " " + f);
      if (behavior != "Isolated") {
        fail_field(f + ".behavior", "is '" + behavior + "'; only 'Isolated' is supported");
      }
      if (json_get_or<bool>(st, "invert", false, ctx))
        fail_field(f + ".invert", "true is not supported");
      const Json pat = json_get<Json>(st, "pattern", ctx + " " + f);
      if (pat.contains("Regex")) {
        splits_.push_back({compile_regex(json_get<std::string>(pat, "Regex", ctx), false, ctx,
                                         f + ".pattern.Regex")});
      } else if (pat.contains("String")) {
        splits_.push_back({compile_regex(json_get<std::string>(pat, "String", ctx), true, ctx,
                                         f + ".pattern.String")});
      } else {
        fail_field(f + ".pattern", "must hold 'Regex' or 'String'");
      }
    } else if (t == "ByteLevel") {
      have_byte_level = true;
      add_prefix_space_ = json_get_or<bool>(st, "add_prefix_space", false, ctx);
      if (add_prefix_space_ && !splits_.empty()) {
        fail_field(f + ".add_prefix_space", "true after a Split is not supported");
      }
      if (json_get_or<bool>(st, "use_regex", true, ctx)) {
        splits_.push_back({compile_regex(kGpt2Pattern, false, ctx, f + " (GPT-2 regex)")});
      }
    } else {
      fail_field(f + ".type", "is '" + t + "'; supported: Sequence, Split, ByteLevel");
    }
  }
  if (!have_byte_level)
    fail_field("pre_tokenizer", "has no ByteLevel step; only byte-level BPE is supported");

  // ---- decoder ----
  const Json dec = json_get_or<Json>(j, "decoder", Json(), ctx);
  if (!dec.is_null()) {
    const std::string t = json_get<std::string>(dec, "type", ctx + " decoder");
    if (t != "ByteLevel")
      fail_field("decoder.type", "is '" + t + "'; only 'ByteLevel' is supported");
  }

  // ---- added tokens: longest first, so "<|a|>x" wins over a prefix "<|a|>" ----
  std::stable_sort(added_.begin(), added_.end(), [](const AddedToken& x, const AddedToken& y) {
    return x.content.size() > y.content.size();
  });
  for (const auto& a : added_) added_first_byte_[static_cast<unsigned char>(a.content[0])] = true;

  // ---- special ids: post_processor template, tokenizer_config.json, then well-known names ----
  const Json post = json_get_or<Json>(j, "post_processor", Json(), ctx);
  if (post.is_object() && post.value("type", "") == "TemplateProcessing" &&
      post.contains("single") && post["single"].is_array() && !post["single"].empty()) {
    const Json& first = post["single"][0];
    if (first.contains("SpecialToken") && first["SpecialToken"].contains("id")) {
      bos_id_ = piece_to_id(first["SpecialToken"]["id"].get<std::string>());
    }
  }
  const auto cfg_path = std::filesystem::path(path_).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(cfg_path, ec)) {
    const Json cfg = read_json_file(cfg_path.string());
    auto from_cfg = [&](const char* key, int32_t& id) {
      if (cfg.contains(key)) {
        const std::string c = token_content(cfg[key]);
        if (!c.empty() && piece_to_id(c) >= 0) id = piece_to_id(c);
      }
    };
    from_cfg("bos_token", bos_id_);
    from_cfg("eos_token", eos_id_);
    from_cfg("pad_token", pad_id_);
  }
  auto by_name = [&](int32_t& id, std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (id < 0) id = piece_to_id(n);
    }
  };
  by_name(bos_id_, {"<|begin_of_text|>", "<s>", "<|endoftext|>"});
  by_name(eos_id_, {"<|end_of_text|>", "</s>", "<|endoftext|>"});
  by_name(pad_id_, {"<|pad|>", "<pad>", "[PAD]"});
}

BpeTokenizer::~BpeTokenizer() {
  for (auto& s : splits_) pcre2_code_free(static_cast<pcre2_code*>(s.code));
}

std::string BpeTokenizer::id_to_piece(int32_t id) const {
  TQ_CHECK(id >= 0 && id < vocab_size(), "[bpe_tokenizer] {}: id {} out of range (vocab size {})",
           path_, id, vocab_size());
  return pieces_[static_cast<size_t>(id)];
}

int32_t BpeTokenizer::piece_to_id(std::string_view piece) const {
  const auto it = vocab_.find(std::string(piece));
  return it == vocab_.end() ? -1 : it->second;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    TQ_CHECK(id >= 0 && id < vocab_size(),
             "[bpe_tokenizer] {}: cannot decode id {} at position {} (vocab size {})", path_, id, i,
             vocab_size());
    out += id_bytes_[static_cast<size_t>(id)];
  }
  return out;
}

void BpeTokenizer::encode_ids(std::string_view text, std::vector<int32_t>& out) const {
  // Validate once so the regex can skip its own (per-call, hence quadratic) UTF check.
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    const size_t len = utf8_next(text, i, cp);
    TQ_CHECK(len > 0, "[bpe_tokenizer] {}: input is not valid UTF-8 at byte {} (byte 0x{:02x})",
             path_, i, static_cast<unsigned char>(text[i]));
    i += len;
  }
  size_t start = 0;
  size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    if (added_first_byte_[static_cast<unsigned char>(text[i])]) {
      for (const auto& a : added_) {
        if (text.compare(i, a.content.size(), a.content) == 0) {
          encode_segment(text.substr(start, i - start), out);
          out.push_back(a.id);
          i += a.content.size();
          start = i;
          matched = true;
          break;
        }
      }
    }
    if (!matched) ++i;
  }
  encode_segment(text.substr(start), out);
}

void BpeTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>& out) const {
  if (segment.empty()) return;
  std::string prefixed;
  if (add_prefix_space_ && segment[0] != ' ') {
    prefixed = " " + std::string(segment);
    segment = prefixed;
  }
  std::vector<std::string_view> a{segment}, b;
  for (const auto& s : splits_) {
    split_isolated(s.code, a, b);
    a.swap(b);
  }
  for (std::string_view p : a) bpe(p, out);
}

void BpeTokenizer::bpe(std::string_view tok, std::vector<int32_t>& out) const {
  if (tok.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(tok[0])]);
    return;
  }
  std::string key(tok);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> result;
  if (ignore_merges_) {  // HF: a pre-token that is itself a vocabulary entry is emitted whole
    std::string mapped;
    for (char c : tok) mapped += byte_char_[static_cast<unsigned char>(c)];
    const auto it = vocab_.find(mapped);
    if (it != vocab_.end()) result.push_back(it->second);
  }
  if (result.empty()) {
    // Merge by rank (ties: leftmost) over a linked list of symbols with a lazy min-heap:
    // O(n log n), so long pre-tokens (runs of spaces, long numbers split by digits) stay cheap.
    const int n = static_cast<int>(tok.size());
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    for (int k = 0; k < n; ++k) {
      ids[static_cast<size_t>(k)] =
          byte_id_[static_cast<unsigned char>(tok[static_cast<size_t>(k)])];
      prev[static_cast<size_t>(k)] = k - 1;
      next[static_cast<size_t>(k)] = k + 1 < n ? k + 1 : -1;
    }
    struct Cand {
      int32_t rank;
      int pos;
      int32_t left, right;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int l) {
      if (l < 0) return;
      const int r = next[static_cast<size_t>(l)];
      if (r < 0) return;
      const int32_t il = ids[static_cast<size_t>(l)], ir = ids[static_cast<size_t>(r)];
      const auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(il)) << 32) |
                                   static_cast<uint32_t>(ir));
      if (it != merges_.end()) heap.push({it->second.first, l, il, ir});
    };
    for (int k = 0; k + 1 < n; ++k) push(k);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const auto l = static_cast<size_t>(c.pos);
      if (ids[l] != c.left) continue;  // stale: left symbol changed or was removed (id -1)
      const int r = next[l];
      if (r < 0 || ids[static_cast<size_t>(r)] != c.right) continue;
      ids[l] = merges_
                   .find((static_cast<uint64_t>(static_cast<uint32_t>(c.left)) << 32) |
                         static_cast<uint32_t>(c.right))
                   ->second.second;
      const int rr = next[static_cast<size_t>(r)];
      ids[static_cast<size_t>(r)] = -1;
      next[l] = rr;
      if (rr >= 0) prev[static_cast<size_t>(rr)] = c.pos;
      push(prev[l]);
      push(c.pos);
    }
    for (int k = 0; k >= 0; k = next[static_cast<size_t>(k)])
      result.push_back(ids[static_cast<size_t>(k)]);
  }
  out.insert(out.end(), result.begin(), result.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();
  cache_.emplace(std::move(key), std::move(result));
}

}  // namespace tq::data
