// Trains a SentencePiece vocabulary (our own small vocabularies for the "pretrained" model) through
// libsentencepiece's SentencePieceTrainer. Writes <model_prefix>.model and <model_prefix>.vocab.
//
//   train_sentencepiece({"corpus.txt"}, "runs/spm4k", 4096);     // BPE with byte fallback
//   auto tok = load_tokenizer("runs/spm4k.model");
//
// Defaults follow LLaMA's tokenizer: identity normalization, spaces kept (lossless round trips),
// digits split, character_coverage 1.0, unk 0 / bos 1 / eos 2 / no pad (the LLaMA layout), up to
// 2M sentences sampled with shuffling, 2 threads, trainer logging at warning level
// (minloglevel 1; pass {{"minloglevel", "0"}} for its progress output). `extra_args` adds or
// overrides any spm_train flag by name without the dashes, e.g. {{"input_sentence_size",
// "300000"}}.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tq::data {

// Throws tq::Error naming the failing input file or the trainer's message.
void train_sentencepiece(const std::vector<std::string>& input_files,
                         const std::string& model_prefix, int vocab_size,
                         const std::string& model_type = "bpe", bool byte_fallback = true,
                         const std::map<std::string, std::string>& extra_args = {});

}  // namespace tq::data
