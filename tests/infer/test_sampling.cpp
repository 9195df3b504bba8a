// infer/sampling: the kept sets and probabilities of temperature / top-k / top-p against distributions
// computed by hand here, greedy = argmax, seeded reproducibility, a chi-square check of sampled
// frequencies, and streaming generation that never splits a UTF-8 character.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "infer/sampling.h"
#include "tests/infer/toy_models.h"
#include "tests/test_util.h"

using namespace tq;
using infer::SamplingOptions;

namespace {

std::vector<double> softmax(const std::vector<double>& z) {
  double mx = -INFINITY, s = 0;
  for (double x : z) mx = std::max(mx, x);
  std::vector<double> p;
  for (double x : z) s += std::exp(x - mx);
  for (double x : z) p.push_back(std::exp(x - mx) / s);
  return p;
}

void check_dist(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
}

}  // namespace

TEST_CASE("sampling: greedy is argmax, lowest id on ties") {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  CHECK(infer::argmax(l.data(), 5) == 1);
  SamplingOptions o;
  o.temperature = 0;
  check_dist(infer::sampling_distribution(l.data(), 5, o), {0, 1, 0, 0, 0});
  infer::Sampler s(o);
  for (int i = 0; i < 5; ++i) CHECK(s.sample(l.data(), 5) == 1);
}

TEST_CASE("sampling: temperature, top-k and top-p match hand-computed distributions") {
  const std::vector<float> l = {1.0f, 4.0f, 3.0f, 2.0f};
  SamplingOptions o;
  // Temperature 2: softmax(l / 2).
  o.temperature = 2.0;
  check_dist(infer::sampling_distribution(l.data(), 4, o), softmax({0.5, 2.0, 1.5, 1.0}));
  // top-k 2 at T = 1: only ids 1 and 2 remain, renormalised: e^4/(e^4+e^3), e^3/(e^4+e^3).
  o.temperature = 1.0;
  o.top_k = 2;
  const double a = std::exp(4.0) / (std::exp(4.0) + std::exp(3.0));
  check_dist(infer::sampling_distribution(l.data(), 4, o), {0, a, 1 - a, 0});
  // top-p on probabilities (0.5, 0.3, 0.15, 0.05): p = 0.7 keeps {0.5, 0.3}; p = 0.85 keeps three.
  o.top_k = 0;
  const std::vector<float> lp = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  o.top_p = 0.7;
  check_dist(infer::sampling_distribution(lp.data(), 4, o), {0, 0.5 / 0.8, 0, 0.3 / 0.8});
  o.top_p = 0.85;
  check_dist(infer::sampling_distribution(lp.data(), 4, o), {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95});
  o.top_p = 0.2;  // the top token alone already crosses: it survives
  check_dist(infer::sampling_distribution(lp.data(), 4, o), {0, 1, 0, 0});
  // top-k 3 then top-p 0.7 over the renormalised three: (0.5, 0.3, 0.15)/0.95 -> cumsum 0.526, 0.842.
  o.top_k = 3;
  o.top_p = 0.7;
  check_dist(infer::sampling_distribution(lp.data(), 4, o), {0, 0.5 / 0.8, 0, 0.3 / 0.8});
  // Temperature is applied before top-p: T = 0.5 squares the probabilities -> (0.25, .09, .0225, .0025)/.365.
  o.top_k = 0;
  o.top_p = 0.9;
  o.temperature = 0.5;
  const double z = 0.25 + 0.09 + 0.0225 + 0.0025;
  // cumsum: 0.685, 0.932 >= 0.9 -> keep two.
  (void)z;
  check_dist(infer::sampling_distribution(lp.data(), 4, o), {0, 0.25 / 0.34, 0, 0.09 / 0.34});
}

TEST_CASE("sampling: repetition penalty divides positive and multiplies negative logits of seen tokens") {
  const std::vector<float> l = {2.0f, -1.0f, 1.0f};
  SamplingOptions o;
  o.repetition_penalty = 2.0;
  check_dist(infer::sampling_distribution(l.data(), 3, o, {0, 1}), softmax({1.0, -2.0, 1.0}));
  check_dist(infer::sampling_distribution(l.data(), 3, o, {}), softmax({2.0, -1.0, 1.0}));
}

TEST_CASE("sampling: options are validated") {
  SamplingOptions o;
  o.top_p = 0;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("top_p"), Error);
  o = {};
  o.temperature = -1;
  CHECK_THROWS_WITH_AS(infer::Sampler{o}, doctest::Contains("temperature"), Error);
  o = {};
  o.top_k = -2;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("top_k"), Error);
}

TEST_CASE("sampling: a fixed seed reproduces the draws; another seed does not") {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(std::sin(static_cast<double>(i)));
  SamplingOptions o;
  o.seed = 42;
  auto draws = [&](uint64_t seed) {
    o.seed = seed;
    infer::Sampler s(o);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.sample(l.data(), 50));
    return out;
  };
  CHECK(draws(42) == draws(42));
  CHECK(draws(42) != draws(43));
}

TEST_CASE("sampling: temperature sampling frequencies pass a chi-square test") {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f, -1.0f, 0.5f};
  SamplingOptions o;
  o.temperature = 0.7;
  o.seed = 7;
  const std::vector<double> p = softmax({0.0 / 0.7, 1.0 / 0.7, 2.0 / 0.7, -1.0 / 0.7, 0.5 / 0.7});
  infer::Sampler s(o);
  const int N = 20000;
  std::vector<int> count(5, 0);
  for (int i = 0; i < N; ++i) ++count[static_cast<size_t>(s.sample(l.data(), 5))];
  double chi2 = 0;
  for (size_t v = 0; v < 5; ++v) {
    const double e = N * p[v];
    chi2 += (count[v] - e) * (count[v] - e) / e;
  }
  // 4 degrees of freedom: P(chi2 > 23.5) < 1e-4. A wrong temperature (e.g. 1.0) gives chi2 in the hundreds.
  CHECK(chi2 < 23.5);
}

TEST_CASE("sampling: utf8_complete_prefix holds back an incomplete character only") {
  CHECK(infer::utf8_complete_prefix("abc") == 3);
  CHECK(infer::utf8_complete_prefix("a\xC3") == 1);
  CHECK(infer::utf8_complete_prefix("a\xC3\xA9") == 3);
  CHECK(infer::utf8_complete_prefix("\xE2\x82") == 0);
  CHECK(infer::utf8_complete_prefix("x\xE2\x82\xAC") == 4);
  CHECK(infer::utf8_complete_prefix("\xF0\x9F\x98") == 0);
  CHECK(infer::utf8_complete_prefix("\xF0\x9F\x98\x80") == 4);
  CHECK(infer::utf8_complete_prefix("a\x80") == 2);  // stray continuation byte: passed through
  CHECK(infer::utf8_complete_prefix("") == 0);
}

TEST_CASE("generate: streams whole UTF-8 characters and stops at EOS, max tokens or a full context") {
  test::ByteTokenizer tok;
  const std::string want = "h\xC3\xA9\xE2\x82\xAC!";  // "hé€!" as single-byte tokens
  std::vector<int32_t> script;
  for (char c : want) script.push_back(static_cast<unsigned char>(c));
  test::ScriptLM lm(script, tok.vocab_size(), tok.eos_id());
  infer::SamplingOptions o;
  o.temperature = 0;
  std::vector<std::string> pieces;
  const infer::GenerateResult r = infer::generate(lm, tok, "ab", o, [&](std::string_view s) { pieces.emplace_back(s); });
  CHECK(r.stop_reason == "eos");
  CHECK(r.text == want);
  CHECK(r.tokens == script);
  CHECK(r.prompt_ids == std::vector<int32_t>{256, 'a', 'b'});
  std::string joined;
  for (const auto& p : pieces) {
    CHECK(infer::utf8_complete_prefix(p) == p.size());  // no piece ends inside a character
    joined += p;
  }
  CHECK(joined == want);
  CHECK(pieces == std::vector<std::string>{"h", "\xC3\xA9", "\xE2\x82\xAC", "!"});

  // A SentencePiece-like decoder that shows unfinished bytes as U+FFFD: the stream is the same.
  test::ByteTokenizer sp_like(false, /*replace_partial=*/true);
  CHECK(sp_like.decode({'h', 0xE2, 0x82}) == "h\xEF\xBF\xBD\xEF\xBF\xBD");
  pieces.clear();
  const infer::GenerateResult r2 = infer::generate(lm, sp_like, "ab", o, [&](std::string_view s) { pieces.emplace_back(s); });
  CHECK(r2.text == want);
  CHECK(pieces == std::vector<std::string>{"h", "\xC3\xA9", "\xE2\x82\xAC", "!"});

  o.max_tokens = 3;
  CHECK(infer::generate(lm, tok, "ab", o).stop_reason == "max_tokens");
  CHECK(infer::generate(lm, tok, "ab", o).tokens.size() == 3);
  o.max_tokens = 100;
  o.stop_at_eos = false;
  test::ScriptLM small(script, tok.vocab_size(), tok.eos_id(), /*max_ctx=*/6);
  const infer::GenerateResult c = infer::generate(small, tok, "ab", o);
  CHECK(c.stop_reason == "context");
  CHECK(c.tokens.size() == 4);  // 3 prompt tokens + 3 fed back = 6, the 4th is sampled from the last logits
  test::ScriptLM tiny(script, tok.vocab_size(), tok.eos_id(), /*max_ctx=*/3);
  CHECK_THROWS_WITH_AS(infer::generate(tiny, tok, "ab", o), doctest::Contains("context holds 3"), Error);
}
