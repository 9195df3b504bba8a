// SentencePiece tokenizer (.model files: LLaMA-1/2, and vocabularies made by train_sentencepiece)
// through Debian's libsentencepiece. BOS/EOS/UNK/PAD ids come from the model's trainer spec.
//
//   SentencePieceTokenizer tok("data-cache/tokenizers/llama2/tokenizer.model");
//   auto ids = tok.encode("Once upon a time");   // 9038 2501 263 931
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tq::data {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Throws tq::Error "[sentencepiece] cannot load <path>: <reason>".
  explicit SentencePieceTokenizer(std::string path);
  ~SentencePieceTokenizer() override;

  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t pad_id() const override { return pad_id_; }
  int32_t unk_id() const override { return unk_id_; }
  std::string id_to_piece(int32_t id) const override;
  int32_t piece_to_id(std::string_view piece) const override;
  const char* kind() const override { return "sentencepiece"; }
  const std::string& path() const override { return path_; }
  // Whether long inputs are encoded in chunks (see Note [SentencePiece chunking]).
  bool chunked() const { return chunked_; }
  // The ids from one libsentencepiece call, without chunking (the reference for the Note).
  std::vector<int32_t> encode_whole(std::string_view text) const;

 protected:
  void encode_ids(std::string_view text, std::vector<int32_t>& out) const override;

 private:
  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;
  int32_t unk_id_ = -1;
  bool chunked_ = false;  // See Note [SentencePiece chunking]
};

}  // namespace tq::data
