#include "data/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "data/bpe_tokenizer.h"
#include "data/sentencepiece_tokenizer.h"

namespace tq::data {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_bos) {
    TQ_CHECK(bos_id() >= 0, "[tokenizer] add_bos requested but {} has no BOS token", path());
    ids.push_back(bos_id());
  }
  encode_ids(text, ids);
  if (add_eos) {
    TQ_CHECK(eos_id() >= 0, "[tokenizer] add_eos requested but {} has no EOS token", path());
    ids.push_back(eos_id());
  }
  return ids;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path_or_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path_or_dir);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) {
      return std::make_unique<BpeTokenizer>((p / "tokenizer.json").string());
    }
    if (fs::exists(p / "tokenizer.model", ec)) {
      return std::make_unique<SentencePieceTokenizer>((p / "tokenizer.model").string());
    }
    if (fs::exists(p / "encoder.json", ec) && fs::exists(p / "vocab.bpe", ec)) {
      return BpeTokenizer::from_gpt2_files((p / "encoder.json").string(),
                                           (p / "vocab.bpe").string());
    }
    TQ_THROW(
        "[load_tokenizer] directory {} has neither tokenizer.json nor tokenizer.model (nor GPT-2 "
        "encoder.json + vocab.bpe) — hint: run scripts/fetch-tokenizers.sh",
        path_or_dir);
  }
  TQ_CHECK(fs::exists(p, ec), "[load_tokenizer] no such file or directory: {}", path_or_dir);
  const std::string ext = p.extension().string();
  if (ext == ".json") return std::make_unique<BpeTokenizer>(path_or_dir);
  if (ext == ".model") return std::make_unique<SentencePieceTokenizer>(path_or_dir);
  TQ_THROW(
      "[load_tokenizer] cannot tell the tokenizer type of {} from its extension '{}' — hint: "
      "expected .json (HF tokenizer.json) or .model (SentencePiece)",
      path_or_dir, ext);
}

}  // namespace tq::data
