// Shared fixtures for the loader and shard tests: a byte-level test tokenizer (id = byte + 3,
// BOS 1, EOS 2), random documents, writers for .txt/.jsonl, and the independent packing reference.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "data/loader.h"
#include "data/tokenizer.h"

namespace tq::test {

class ByteTokenizer : public data::Tokenizer {
 public:
  explicit ByteTokenizer(bool specials = true, int32_t vocab = 259)
      : specials_(specials), vocab_(vocab) {}
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids) {
      if (id >= 3) s.push_back(static_cast<char>(id - 3));
    }
    return s;
  }
  int32_t vocab_size() const override { return vocab_; }
  int32_t bos_id() const override { return specials_ ? 1 : -1; }
  int32_t eos_id() const override { return specials_ ? 2 : -1; }
  int32_t pad_id() const override { return -1; }
  int32_t unk_id() const override { return -1; }
  std::string id_to_piece(int32_t id) const override { return std::to_string(id); }
  int32_t piece_to_id(std::string_view) const override { return -1; }
  const char* kind() const override { return "byte-test"; }
  const std::string& path() const override { return path_; }

 protected:
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const override {
    for (char c : text) out.push_back(static_cast<int32_t>(static_cast<unsigned char>(c)) + 3);
  }

 private:
  bool specials_;
  int32_t vocab_;
  std::string path_ = "<byte test tokenizer>";
};

// Random single-paragraph documents: lowercase words, 1..max_words words, no blank lines.
inline std::vector<std::string> random_docs(Rng& rng, int n, int max_words = 12) {
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) {
    std::string d;
    const int words = 1 + static_cast<int>(rng.below(static_cast<uint64_t>(max_words)));
    for (int w = 0; w < words; ++w) {
      if (w > 0) d += rng.below(5) == 0 ? "\n" : " ";
      const int len = 1 + static_cast<int>(rng.below(6));
      for (int k = 0; k < len; ++k) d.push_back(static_cast<char>('a' + rng.below(26)));
    }
    docs.push_back(d);
  }
  return docs;
}

inline void write_text(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  f << content;
}

// Paragraphs separated by 1-2 blank lines (and leading/trailing blank lines).
inline void write_txt(const std::string& path, const std::vector<std::string>& docs) {
  std::string s = "\n";
  for (size_t i = 0; i < docs.size(); ++i) s += docs[i] + (i % 2 ? "\n\n\n" : "\n\n");
  write_text(path, s);
}

inline void write_jsonl(const std::string& path, const std::vector<std::string>& docs,
                        const std::string& field = "text") {
  std::string s;
  for (const auto& d : docs) s += Json{{"id", 7}, {field, d}}.dump() + "\n";
  write_text(path, s);
}

// The independent reference: [BOS] bytes+3 [EOS] per document, concatenated, cut by the formula.
inline std::vector<int32_t> reference_stream(const std::vector<std::string>& docs,
                                             bool specials = true) {
  std::vector<int32_t> s;
  for (const auto& d : docs) {
    if (specials) s.push_back(1);
    for (char c : d) s.push_back(static_cast<int32_t>(static_cast<unsigned char>(c)) + 3);
    if (specials) s.push_back(2);
  }
  return s;
}
inline std::vector<std::vector<int32_t>> reference_windows(const std::vector<int32_t>& stream,
                                                           int64_t S) {
  std::vector<std::vector<int32_t>> w;
  for (int64_t k = 0; k * S + S < static_cast<int64_t>(stream.size()); ++k) {
    w.emplace_back(stream.begin() + k * S, stream.begin() + k * S + S + 1);
  }
  return w;
}

// Reads n windows as batches of B (n % B == 0) and rebuilds each full window from ids + targets,
// checking that targets are ids shifted by one.
inline std::vector<std::vector<int32_t>> read_windows(data::TokenLoader& loader, int64_t n,
                                                      int64_t B = 1) {
  const int64_t S = loader.options().seq_len;
  std::vector<std::vector<int32_t>> out;
  Tensor ids, targets;
  for (int64_t done = 0; done < n; done += B) {
    loader.next_batch(B, ids, targets);
    REQUIRE(ids.shape() == Shape{B, S});
    REQUIRE(targets.shape() == Shape{B, S});
    const int32_t* pi = ids.data<int32_t>();
    const int32_t* pt = targets.data<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int32_t> w(pi + b * S, pi + b * S + S);
      w.push_back(pt[b * S + S - 1]);
      for (int64_t t = 0; t + 1 < S; ++t) REQUIRE(pt[b * S + t] == pi[b * S + t + 1]);
      out.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace tq::test
