// Toy tokenizer and language models for the infer/ tests, with closed-form behaviour:
//   ByteTokenizer: id = byte (0..255), BOS 256, EOS 257; optional merge of "ab" into id 258.
//   UnigramLM: logits are the same vector at every position, so log p(token) = u[token] - logsumexp(u).
//   ScriptLM: logits one-hot (+10) on script[position - prompt_len], then EOS (id eos).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/tokenizer.h"
#include "infer/language_model.h"
#include "nn/llama_config.h"

namespace tq::test {

// The engine tests' tiny LLaMA: 2 layers, C 128, F 256, H 4, Hkv 2, V 256, context 64, untied head;
// every quantized input width is a multiple of the packed format's 128-group.
inline nn::LlamaConfig tiny_engine_config() {
  nn::LlamaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.rope_theta = 10000;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = false;
  return c;
}

class ByteTokenizer : public data::Tokenizer {
 public:
  // replace_partial: decode an unfinished trailing UTF-8 sequence as one U+FFFD per byte (SentencePiece).
  explicit ByteTokenizer(bool merge_ab = false, bool replace_partial = false)
      : merge_ab_(merge_ab), replace_partial_(replace_partial) {}
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids) {
      if (id < 256) s.push_back(static_cast<char>(id));
      else if (id == 258) s += "ab";
    }
    if (replace_partial_) {
      size_t p = s.size();  // start of an unfinished sequence at the end, if any
      for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
        const auto c = static_cast<unsigned char>(s[s.size() - back]);
        if ((c & 0xC0) == 0x80) continue;
        const size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        if (back < need) p = s.size() - back;
        break;
      }
      std::string out = s.substr(0, p);
      for (size_t i = p; i < s.size(); ++i) out += "\xEF\xBF\xBD";
      s = out;
    }
    return s;
  }
  int32_t vocab_size() const override { return 259; }
  int32_t bos_id() const override { return 256; }
  int32_t eos_id() const override { return 257; }
  int32_t pad_id() const override { return -1; }
  int32_t unk_id() const override { return -1; }
  std::string id_to_piece(int32_t id) const override { return decode({id}); }
  int32_t piece_to_id(std::string_view) const override { return -1; }
  const char* kind() const override { return "bytes"; }
  const std::string& path() const override { return path_; }

 protected:
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const override {
    for (size_t i = 0; i < text.size(); ++i) {
      if (merge_ab_ && text[i] == 'a' && i + 1 < text.size() && text[i + 1] == 'b') {
        out.push_back(258);
        ++i;
      } else {
        out.push_back(static_cast<unsigned char>(text[i]));
      }
    }
  }

 private:
  bool merge_ab_, replace_partial_;
  std::string path_ = "<bytes>";
};

class UnigramLM : public infer::LanguageModel {
 public:
  explicit UnigramLM(std::vector<float> logits, int64_t max_ctx = 1024) : u_(std::move(logits)), max_(max_ctx) {}
  int32_t vocab_size() const override { return static_cast<int32_t>(u_.size()); }
  int64_t max_context() const override { return max_; }
  int64_t position() const override { return pos_; }
  void reset() override { pos_ = 0; }
  void forward(const int32_t*, int64_t n, float* logits, bool all_logits) override {
    TQ_CHECK(pos_ + n <= max_, "[UnigramLM] context overflow");
    pos_ += n;
    const int64_t rows = all_logits ? n : 1;
    for (int64_t r = 0; r < rows; ++r)
      for (size_t v = 0; v < u_.size(); ++v) logits[r * static_cast<int64_t>(u_.size()) + static_cast<int64_t>(v)] = u_[v];
    ++calls;
  }
  std::string describe() const override { return "unigram"; }
  double log_prob(int32_t id) const {  // closed form
    double mx = -INFINITY, s = 0;
    for (float x : u_) mx = std::max(mx, static_cast<double>(x));
    for (float x : u_) s += std::exp(static_cast<double>(x) - mx);
    return static_cast<double>(u_[static_cast<size_t>(id)]) - mx - std::log(s);
  }
  int64_t calls = 0;

 private:
  std::vector<float> u_;
  int64_t max_, pos_ = 0;
};

class ScriptLM : public infer::LanguageModel {
 public:
  ScriptLM(std::vector<int32_t> script, int32_t V, int32_t eos, int64_t max_ctx = 1024)
      : script_(std::move(script)), V_(V), eos_(eos), max_(max_ctx) {}
  int32_t vocab_size() const override { return V_; }
  int64_t max_context() const override { return max_; }
  int64_t position() const override { return pos_; }
  void reset() override { pos_ = 0; prompt_ = -1; }
  void forward(const int32_t*, int64_t n, float* logits, bool all_logits) override {
    TQ_CHECK(pos_ + n <= max_, "[ScriptLM] context overflow");
    if (prompt_ < 0) prompt_ = n;
    pos_ += n;
    TQ_CHECK(!all_logits, "[ScriptLM] only last-position logits");
    const int64_t k = pos_ - prompt_;
    const int32_t next = k < static_cast<int64_t>(script_.size()) ? script_[static_cast<size_t>(k)] : eos_;
    for (int32_t v = 0; v < V_; ++v) logits[v] = v == next ? 10.0f : 0.0f;
  }
  std::string describe() const override { return "script"; }

 private:
  std::vector<int32_t> script_;
  int32_t V_, eos_;
  int64_t max_, pos_ = 0, prompt_ = -1;
};

}  // namespace tq::test
