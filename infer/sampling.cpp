#include "infer/sampling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace tq::infer {

void SamplingOptions::validate() const {
  TQ_CHECK(std::isfinite(temperature) && temperature >= 0,
           "[sampling] temperature must be >= 0 (0 = greedy), got {}", temperature);
  TQ_CHECK(top_k >= 0, "[sampling] top_k must be >= 0 (0 = off), got {}", top_k);
  TQ_CHECK(top_p > 0 && top_p <= 1, "[sampling] top_p must be in (0, 1] (1 = off), got {}", top_p);
  TQ_CHECK(repetition_penalty > 0 && std::isfinite(repetition_penalty),
           "[sampling] repetition_penalty must be > 0 (1 = off), got {}", repetition_penalty);
  TQ_CHECK(max_tokens >= 0, "[sampling] max_tokens must be >= 0, got {}", max_tokens);
}

int32_t argmax(const float* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best]) best = v;
  return static_cast<int32_t>(best);
}

std::vector<double> sampling_distribution(const float* logits, int64_t V, const SamplingOptions& o,
                                          const std::vector<int32_t>& history) {
  TQ_CHECK(V >= 1, "[sampling] empty vocabulary");
  std::vector<double> z(logits, logits + V);
  if (o.repetition_penalty != 1.0) {
    std::vector<bool> seen(static_cast<size_t>(V), false);
    for (int32_t id : history)
      if (id >= 0 && id < V) seen[static_cast<size_t>(id)] = true;
    for (int64_t v = 0; v < V; ++v) {
      double& x = z[static_cast<size_t>(v)];
      if (seen[static_cast<size_t>(v)]) x = x > 0 ? x / o.repetition_penalty : x * o.repetition_penalty;
    }
  }
  std::vector<double> p(static_cast<size_t>(V), 0.0);
  if (o.temperature == 0) {
    size_t best = 0;
    for (size_t v = 1; v < z.size(); ++v)
      if (z[v] > z[best]) best = v;
    p[best] = 1.0;
    return p;
  }
  // Most likely first; ties by lower id so the kept set is deterministic.
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return z[static_cast<size_t>(a)] > z[static_cast<size_t>(b)]; });
  size_t keep = static_cast<size_t>(V);
  if (o.top_k > 0) keep = std::min(keep, static_cast<size_t>(o.top_k));
  const double zmax = z[static_cast<size_t>(order[0])];
  std::vector<double> e(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    e[i] = std::exp((z[static_cast<size_t>(order[i])] - zmax) / o.temperature);
    sum += e[i];
  }
  if (o.top_p < 1.0) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += e[n] / sum;
      ++n;
      if (cum >= o.top_p) break;
    }
    keep = n;
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += e[i];
  }
  for (size_t i = 0; i < keep; ++i) p[static_cast<size_t>(order[i])] = e[i] / sum;
  return p;
}

Sampler::Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) { o_.validate(); }

int32_t Sampler::sample(const float* logits, int64_t V, const std::vector<int32_t>& history) {
  if (o_.temperature == 0 && o_.repetition_penalty == 1.0) return argmax(logits, V);
  const std::vector<double> p = sampling_distribution(logits, V, o_, history);
  const double u = rng_.uniform();
  double cum = 0;
  int64_t last = -1;
  for (int64_t v = 0; v < V; ++v) {
    const double pv = p[static_cast<size_t>(v)];
    if (pv <= 0) continue;
    cum += pv;
    last = v;
    if (u < cum) return static_cast<int32_t>(v);
  }
  return static_cast<int32_t>(last);  // u just below 1 with rounding in cum
}

size_t utf8_complete_prefix(std::string_view s) {
  const size_t n = s.size();
  // Look back at most 3 bytes for the lead byte of the last character.
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t need = 1;
    if ((c & 0xE0) == 0xC0) need = 2;
    else if ((c & 0xF0) == 0xE0) need = 3;
    else if ((c & 0xF8) == 0xF0) need = 4;
    return back < need ? n - back : n;
  }
  return n;  // only continuation bytes at the end: invalid, pass through
}

GenerateResult generate(LanguageModel& lm, const data::Tokenizer& tok, const std::string& prompt,
                        const SamplingOptions& o, const std::function<void(std::string_view)>& on_text) {
  Sampler sampler(o);
  GenerateResult r;
  r.prompt_ids = tok.encode(prompt, o.add_bos && tok.bos_id() >= 0, false);
  TQ_CHECK(!r.prompt_ids.empty(),
           "[generate] the prompt is empty and the tokenizer has no BOS token to start from — hint: give a prompt");
  const int64_t n = static_cast<int64_t>(r.prompt_ids.size());
  TQ_CHECK(n < lm.max_context(), "[generate] the prompt has {} tokens; the model's context holds {} — hint: "
           "shorten the prompt", n, lm.max_context());
  std::vector<int32_t> stop = o.eos_ids;
  if (tok.eos_id() >= 0) stop.push_back(tok.eos_id());
  const int64_t V = lm.vocab_size();
  std::vector<float> logits(static_cast<size_t>(V));
  using Clock = std::chrono::steady_clock;

  lm.reset();
  auto t0 = Clock::now();
  lm.forward(r.prompt_ids.data(), n, logits.data(), /*all_logits=*/false);
  r.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  const std::string prompt_text = tok.decode(r.prompt_ids);
  std::vector<int32_t> all = r.prompt_ids;
  size_t emitted = 0;  // bytes of the generated text passed to on_text
  auto emit = [&](bool final) {
    const std::string full = tok.decode(all);
    // The generated text starts where the prompt's decode stops matching (normally its whole length).
    size_t start = 0;
    while (start < prompt_text.size() && start < full.size() && full[start] == prompt_text[start]) ++start;
    const std::string gen = full.substr(start);
    size_t upto = final ? gen.size() : utf8_complete_prefix(gen);
    // SentencePiece decodes the bytes of an unfinished character as U+FFFD each: hold those back too.
    while (!final && upto >= 3 && gen.compare(upto - 3, 3, "\xEF\xBF\xBD") == 0) upto -= 3;
    if (upto > emitted) {
      const std::string_view piece = std::string_view(gen).substr(emitted, upto - emitted);
      r.text.append(piece);
      if (on_text) on_text(piece);
      emitted = upto;
    }
  };

  r.stop_reason = "max_tokens";
  t0 = Clock::now();
  for (int64_t i = 0; i < o.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits.data(), V, all);
    if (o.stop_at_eos && std::find(stop.begin(), stop.end(), next) != stop.end()) {
      r.stop_reason = "eos";
      break;
    }
    r.tokens.push_back(next);
    all.push_back(next);
    emit(false);
    if (i + 1 == o.max_tokens) break;
    if (lm.position() >= lm.max_context()) {
      r.stop_reason = "context";
      break;
    }
    lm.forward(&next, 1, logits.data(), /*all_logits=*/false);
  }
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  emit(true);
  return r;
}

}  // namespace tq::infer
