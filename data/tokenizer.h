// Tokenizers: one abstract interface over HF byte-level BPE (tokenizer.json, LLaMA-3 / GPT-2) and
// SentencePiece (.model, LLaMA-1/2 and our own trained vocabularies).
//
//   auto tok = tq::data::load_tokenizer("data-cache/tokenizers/llama3");  // dir or file
//   std::vector<int32_t> ids = tok->encode("Hello world", /*add_bos=*/true);
//   std::string text = tok->decode(ids);
//
// encode/decode are const and thread-safe. BOS/EOS are only added when asked for (the HF
// post_processor template is not applied implicitly). Errors are tq::Error naming file and field.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tq::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text (UTF-8) to ids; add_bos/add_eos prepend bos_id()/append eos_id() (error if the
  // tokenizer has none).
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool add_eos = false) const;
  // Ids to text; special/control tokens decode to their literal content (BPE) or to nothing
  // (SentencePiece control ids such as BOS/EOS). Ids out of range are an error.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual int32_t pad_id() const = 0;  // -1 if none
  virtual int32_t unk_id() const = 0;  // -1 if none
  // The vocabulary entry as stored (byte-level "Ġthe" for BPE, "▁the" for SentencePiece).
  virtual std::string id_to_piece(int32_t id) const = 0;
  // -1 if the piece is not in the vocabulary.
  virtual int32_t piece_to_id(std::string_view piece) const = 0;
  // "bpe" or "sentencepiece".
  virtual const char* kind() const = 0;
  // The file it was loaded from.
  virtual const std::string& path() const = 0;

 protected:
  // Plain ids, no BOS/EOS.
  virtual void encode_ids(std::string_view text, std::vector<int32_t>& out) const = 0;
};

// A directory holds tokenizer.json (preferred), tokenizer.model, or GPT-2's encoder.json +
// vocab.bpe; a file is chosen by extension (.json -> HF BPE, .model -> SentencePiece).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path_or_dir);

}  // namespace tq::data
