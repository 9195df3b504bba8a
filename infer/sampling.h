// Token sampling and streaming text generation over an infer::LanguageModel.
//
//   SamplingOptions o;  o.temperature = 0.8;  o.top_k = 40;  o.top_p = 0.95;  o.seed = 1;
//   GenerateResult r = generate(*lm, *tok, "Once upon a time", o,
//                               [](std::string_view piece) { std::fwrite(piece.data(), 1, piece.size(), stdout); });
//
// Order of the logit processors (as HF transformers' warpers): repetition penalty (off by default) →
// temperature → top-k → top-p → draw with core/rng.h. temperature == 0 is greedy (argmax, lowest id on
// ties). top-p keeps the smallest set of most likely tokens whose probability reaches top_p (the token
// that crosses the threshold is kept; at least one token always survives).
// Streaming: the text emitted is the decode of prompt+generated ids minus the decode of the prompt, cut
// at the last complete UTF-8 character (trailing U+FFFD held back too: SentencePiece's decode of an
// unfinished byte sequence), so a character split across byte tokens is emitted whole.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "data/tokenizer.h"
#include "infer/language_model.h"

namespace tq::infer {

struct SamplingOptions {
  double temperature = 1.0;         // 0: greedy
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off; (0, 1]
  double repetition_penalty = 1.0;  // 1: off; CTRL/HF rule over every token in the context
  uint64_t seed = 0;
  int64_t max_tokens = 128;         // tokens generated at most (EOS not counted)
  bool stop_at_eos = true;
  bool add_bos = true;              // prepend the tokenizer's BOS to the prompt when it has one
  std::vector<int32_t> eos_ids;     // extra stop ids (config.json eos_token_id list); tokenizer EOS always
  void validate() const;            // throws tq::Error naming the option
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int64_t V);

// The distribution the sampler draws from, [V], after repetition penalty, temperature, top-k and
// top-p, renormalised (zeros outside the kept set). Greedy (temperature 0): one-hot at argmax.
std::vector<double> sampling_distribution(const float* logits /*[V]*/, int64_t V, const SamplingOptions& o,
                                          const std::vector<int32_t>& history = {});

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o);  // validates; Rng seeded with o.seed
  int32_t sample(const float* logits /*[V]*/, int64_t V, const std::vector<int32_t>& history = {});

 private:
  SamplingOptions o_;
  Rng rng_;
};

// Length of the longest prefix of s that ends on a UTF-8 character boundary: an incomplete multi-byte
// sequence at the end is held back (invalid bytes are not held back; they are passed through).
size_t utf8_complete_prefix(std::string_view s);

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string text;             // everything streamed to on_text
  std::string stop_reason;      // "eos" | "max_tokens" | "context"
  double prefill_seconds = 0, decode_seconds = 0;
};

// Encodes the prompt, prefills it, samples until EOS (when stop_at_eos), max_tokens or a full context,
// and calls on_text with each newly complete piece of text. lm is reset first.
GenerateResult generate(LanguageModel& lm, const data::Tokenizer& tok, const std::string& prompt,
                        const SamplingOptions& o,
                        const std::function<void(std::string_view)>& on_text = {});

}  // namespace tq::infer
