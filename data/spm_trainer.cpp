#include "data/spm_trainer.h"

#include <sentencepiece_trainer.h>

#include <filesystem>
#include <unordered_map>

#include "core/error.h"

namespace tq::data {

void train_sentencepiece(const std::vector<std::string>& input_files,
                         const std::string& model_prefix, int vocab_size,
                         const std::string& model_type, bool byte_fallback,
                         const std::map<std::string, std::string>& extra_args) {
  namespace fs = std::filesystem;
  TQ_CHECK(!input_files.empty(), "[train_sentencepiece] no input files");
  TQ_CHECK(!model_prefix.empty(), "[train_sentencepiece] empty model_prefix");
  TQ_CHECK(vocab_size > 0, "[train_sentencepiece] vocab_size must be positive, got {}", vocab_size);
  TQ_CHECK(model_type == "bpe" || model_type == "unigram" || model_type == "char" ||
               model_type == "word",
           "[train_sentencepiece] unknown model_type '{}' (known: bpe, unigram, char, word)",
           model_type);
  TQ_CHECK(!byte_fallback || vocab_size >= 260,
           "[train_sentencepiece] vocab_size {} too small for byte_fallback (256 byte pieces + "
           "unk/bos/eos) — hint: use vocab_size >= 512",
           vocab_size);
  std::string inputs;
  for (const auto& f : input_files) {
    std::error_code ec;
    TQ_CHECK(fs::is_regular_file(f, ec), "[train_sentencepiece] input file {} does not exist", f);
    TQ_CHECK(fs::file_size(f, ec) > 0, "[train_sentencepiece] input file {} is empty", f);
    // The trainer splits --input on commas.
    TQ_CHECK(f.find(',') == std::string::npos,
             "[train_sentencepiece] input file name {} contains a comma, which the trainer cannot "
             "take",
             f);
    if (!inputs.empty()) inputs += ',';
    inputs += f;
  }
  const fs::path parent = fs::path(model_prefix).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    TQ_CHECK(fs::is_directory(parent, ec),
             "[train_sentencepiece] directory {} of model_prefix {} does not exist",
             parent.string(), model_prefix);
  }

  std::unordered_map<std::string, std::string> args = {
      {"input", inputs},
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", model_type},
      {"byte_fallback", byte_fallback ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", "8192"},
      {"num_threads", "2"},
      // LLaMA's settings: lossless (no normalization, spaces kept), digits split.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      // The library logs at debug only; libsentencepiece's INFO chatter is off unless asked for.
      {"minloglevel", "1"},
  };
  for (const auto& [k, v] : extra_args) args[k] = v;

  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  TQ_CHECK(status.ok(),
           "[train_sentencepiece] training {} (vocab_size {}, model_type {}) failed: {}",
           model_prefix, vocab_size, model_type, status.ToString());
}

}  // namespace tq::data
