// Byte-level BPE from a Hugging Face tokenizer.json (LLaMA-3, GPT-2 style), or from the GPT-2
// release files encoder.json + vocab.bpe.
//
// Supported: model.type "BPE" (vocab, merges as "a b" strings or ["a", "b"] pairs, ignore_merges);
// added_tokens matched verbatim before pre-tokenization, longest first; pre_tokenizer ByteLevel
// or Sequence of Split(Regex or String, behavior Isolated) followed by ByteLevel; decoder
// ByteLevel; normalizer null. Anything else is a tq::Error naming the field. The post_processor
// is not applied: BOS/EOS are added through encode(text, add_bos, add_eos).
// Regex splits use PCRE2 in UTF + UCP mode (so \p{L}, \p{N}, (?i:...) and lookahead behave as in
// the HF Rust implementation); input must be valid UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/json.h"
#include "data/tokenizer.h"

namespace tq::data {

class BpeTokenizer final : public Tokenizer {
 public:
  // Throws tq::Error "[bpe_tokenizer] <path>: field '<field>' ...".
  explicit BpeTokenizer(std::string path);
  // A parsed tokenizer.json; `source` names it in errors and path(). A tokenizer_config.json
  // next to `source` (if any) supplies bos/eos/pad names.
  BpeTokenizer(const Json& tokenizer_json, std::string source);
  // The original GPT-2 release files (encoder.json + vocab.bpe, "<|endoftext|>" = 50256).
  static std::unique_ptr<BpeTokenizer> from_gpt2_files(const std::string& encoder_json,
                                                       const std::string& vocab_bpe);
  ~BpeTokenizer() override;
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_bytes_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  int32_t unk_id() const override { return -1; }
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  const char* kind() const override { return "bpe"; }
  const std::string& path() const override { return path_; }

  int64_t num_merges() const { return static_cast<int64_t>(merges_.size()); }

 protected:
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const override;

 private:
  struct Split {
    void* code = nullptr;  // pcre2_code_8*
  };
  struct AddedToken {
    std::string content;
    int32_t id;
  };

  void encode_segment(std::string_view segment, std::vector<int32_t>& out) const;
  void bpe(std::string_view pre_token, std::vector<int32_t>& out) const;

  std::string path_;
  std::unordered_map<std::string, int32_t> vocab_;  // piece (byte-level form) -> id
  std::vector<std::string> pieces_;                 // id -> piece as stored
  std::vector<std::string> id_bytes_;               // id -> decoded bytes
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a<<32|b) -> (rank, id)
  int32_t byte_id_[256] = {};   // byte -> id of its byte-level symbol
  std::string byte_char_[256];  // byte -> UTF-8 of its byte-level symbol
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;
  std::vector<Split> splits_;      // applied in order, behavior Isolated
  std::vector<AddedToken> added_;  // longest first
  bool added_first_byte_[256] = {};
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;

  // Pre-token bytes -> ids. Bounded; cleared when full.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace tq::data
