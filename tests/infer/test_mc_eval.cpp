// infer/mc_eval against a unigram toy model whose log-probabilities are known in closed form: the
// harness's _encode_pair split, acc from summed continuation log-probs, acc_norm normalised by the
// choice's length in characters (not bytes, not tokens), mean_stderr, the results layout, and errors
// that name file:line for bad jsonl.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "infer/mc_eval.h"
#include "tests/infer/toy_models.h"
#include "tests/test_util.h"

using namespace tq;

namespace {

// p(' ') = 0.2, p('a') = 0.5, p('b') = 0.1, p(0xC3) = p(0xA9) = 0.05 ('é' is C3 A9), and the remaining
// 0.1 spread evenly over the other 254 ids.
test::UnigramLM make_unigram() {
  std::vector<float> u(259, static_cast<float>(std::log(0.1 / 254)));
  u[' '] = static_cast<float>(std::log(0.2));
  u['a'] = static_cast<float>(std::log(0.5));
  u['b'] = static_cast<float>(std::log(0.1));
  u[0xC3] = static_cast<float>(std::log(0.05));
  u[0xA9] = static_cast<float>(std::log(0.05));
  return test::UnigramLM(u);
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("mc_eval: encode_pair follows the harness's _encode_pair") {
  test::ByteTokenizer tok(/*merge_ab=*/true);
  // Trailing whitespace of the context moves to the continuation.
  infer::EncodedPair p = infer::encode_pair(tok, "xy \n", "z", false);
  CHECK(p.context == std::vector<int32_t>{'x', 'y'});
  CHECK(p.continuation == std::vector<int32_t>{' ', '\n', 'z'});
  // Whole string encoded, split at the context's token count: "xa"+"bc" -> [x, AB, c]; context [x, a]
  // has 2 tokens, so the continuation is [c] (not encode("bc") = [b, c]).
  p = infer::encode_pair(tok, "xa", "bc", false);
  CHECK(p.context == std::vector<int32_t>{'x', 'a'});
  CHECK(p.continuation == std::vector<int32_t>{'c'});
  // add_bos prefixes both encodings; an empty context becomes [BOS].
  p = infer::encode_pair(tok, "q", " a", true);
  CHECK(p.context == std::vector<int32_t>{256, 'q'});
  CHECK(p.continuation == std::vector<int32_t>{' ', 'a'});
  p = infer::encode_pair(tok, "", "a", false);
  CHECK(p.context == std::vector<int32_t>{256});
  CHECK(p.continuation == std::vector<int32_t>{'a'});
}

TEST_CASE("mc_eval: loglikelihood sums the continuation's log-probs and truncates on the left") {
  test::UnigramLM lm = make_unigram();
  const infer::LogLikelihood ll = infer::loglikelihood(lm, {'q', ':'}, {' ', 'a', 'a'});
  CHECK(ll.logprob == doctest::Approx(std::log(0.2) + 2 * std::log(0.5)).epsilon(1e-6));
  CHECK_FALSE(ll.greedy);  // ' ' is not the argmax ('a' is)
  CHECK(infer::loglikelihood(lm, {'q'}, {'a', 'a'}).greedy);
  // A context longer than the model holds is cut from the left: max_context 4, 6 + 2 tokens -> 4 fed.
  test::UnigramLM small(std::vector<float>(259, 0.0f), 4);
  CHECK(infer::loglikelihood(small, {1, 2, 3, 4, 5, 6}, {7, 8}).logprob == doctest::Approx(2 * std::log(1.0 / 259)));
  CHECK(small.position() == 4);
}

TEST_CASE("mc_eval: acc, acc_norm (by characters) and stderr equal a hand computation") {
  test::TempDir dir("mc_eval");
  // Doc 1: ll(" aaaa") = ln .2 + 4 ln .5 = -4.382 < ll(" b") = ln .2 + ln .1 = -3.912 -> acc picks 1 (wrong);
  //        per character: -1.095 vs -3.912 -> acc_norm picks 0 (right).
  // Doc 2: ll(" éa") = ln .2 + 2 ln .05 + ln .5 = -8.294 > ll(" bbb") = -8.517 -> acc picks 0 (wrong);
  //        per character (é is 1 char, 2 bytes): -4.147 vs -2.839 -> picks 1 (right); per byte it
  //        would be -2.765 vs -2.839 -> 0 (wrong), so this doc tells characters from bytes.
  // Doc 3: " a" vs " b", gold 0: both right.  Doc 4: " b" vs " a", gold 0: both wrong.
  write(dir.file("toy.jsonl"),
        "{\"context\": \"Q:\", \"choices\": [\"aaaa\", \"b\"], \"gold\": 0}\n"
        "\n"
        "{\"context\": \"Q:\", \"choices\": [\"\xC3\xA9" "a\", \"bbb\"], \"gold\": 1}\n"
        "{\"context\": \"Q:\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n"
        "{\"context\": \"Q:\", \"choices\": [\"b\", \"a\"], \"gold\": 0}\n");
  const infer::McTask task = infer::load_mc_task(dir.file("toy.jsonl"));
  CHECK(task.name == "toy");
  REQUIRE(task.docs.size() == 4);
  CHECK(task.docs[1].line == 3);
  test::ByteTokenizer tok;
  test::UnigramLM lm = make_unigram();
  const infer::McTaskResult r = infer::evaluate_mc_task(lm, tok, task, infer::McOptions{});
  REQUIRE(r.docs.size() == 4);
  CHECK(r.docs[0].loglikelihoods[0] == doctest::Approx(std::log(0.2) + 4 * std::log(0.5)).epsilon(1e-6));
  CHECK(r.docs[1].loglikelihoods[0] == doctest::Approx(std::log(0.2) + 2 * std::log(0.05) + std::log(0.5)).epsilon(1e-6));
  CHECK(r.docs[0].pred == 1);
  CHECK(r.docs[0].pred_norm == 0);
  CHECK(r.docs[1].pred == 0);
  CHECK(r.docs[1].pred_norm == 1);
  // acc = mean(0, 0, 1, 0) = 0.25; acc_norm = mean(1, 1, 1, 0) = 0.75; both have sample std 0.5, so
  // stderr = 0.5 / sqrt(4) = 0.25.
  CHECK(r.acc == doctest::Approx(0.25));
  CHECK(r.acc_norm == doctest::Approx(0.75));
  CHECK(r.acc_stderr == doctest::Approx(0.25));
  CHECK(r.acc_norm_stderr == doctest::Approx(0.25));

  const Json j = infer::mc_results_json({r}, infer::McOptions{}, "tqinfer");
  CHECK(j["results"]["toy"]["acc,none"].get<double>() == doctest::Approx(0.25));
  CHECK(j["results"]["toy"]["acc_norm_stderr,none"].get<double>() == doctest::Approx(0.25));
  CHECK(j["n-samples"]["toy"]["effective"].get<int64_t>() == 4);
  CHECK(j["configs"]["toy"]["output_type"] == "multiple_choice");
  CHECK(j["higher_is_better"]["toy"]["acc_norm"] == true);

  // --limit: the first two docs only (acc 0, acc_norm 1; stderr 0).
  infer::McOptions o;
  o.limit = 2;
  const infer::McTaskResult l = infer::evaluate_mc_task(lm, tok, task, o);
  CHECK(l.docs.size() == 2);
  CHECK(l.acc == 0.0);
  CHECK(l.acc_norm == 1.0);
  CHECK(infer::mc_results_json({l}, o, "m")["n-samples"]["toy"]["original"].get<int64_t>() == 4);
}

TEST_CASE("mc_eval: mean_stderr and utf8_length") {
  CHECK(infer::mean_stderr({1, 2, 3, 4}) == doctest::Approx(std::sqrt(5.0 / 3.0) / 2.0));
  CHECK(std::isnan(infer::mean_stderr({1})));
  CHECK(infer::utf8_length("abc") == 3);
  CHECK(infer::utf8_length("\xC3\xA9t\xC3\xA9") == 3);
  CHECK(infer::utf8_length("\xF0\x9F\x98\x80") == 1);
}

TEST_CASE("mc_eval: bad jsonl lines are errors naming file:line") {
  test::TempDir dir("mc_eval_bad");
  const std::string good = "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n";
  write(dir.file("a.jsonl"), good + "{\"context\": \"c\", \"choices\": [\"a\"], \"gold\": 3}\n");
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("a.jsonl")), doctest::Contains("a.jsonl:2"), Error);
  write(dir.file("b.jsonl"), good + good + "{\"context\": \"c\", \"choices\": [\"a\"], \"gold\": }\n");
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("b.jsonl")), doctest::Contains("b.jsonl:3"), Error);
  write(dir.file("c.jsonl"), "{\"context\": \"c\", \"gold\": 0}\n");
  const std::string e = test::error_of([&] { infer::load_mc_task(dir.file("c.jsonl")); });
  CHECK(e.find("c.jsonl:1") != std::string::npos);
  CHECK(e.find("choices") != std::string::npos);
  write(dir.file("d.jsonl"), "{\"context\": 5, \"choices\": [\"a\"], \"gold\": 0}\n");
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("d.jsonl")), doctest::Contains("context"), Error);
  write(dir.file("e.jsonl"), "[1, 2]\n");
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("e.jsonl")), doctest::Contains("e.jsonl:1"), Error);
  write(dir.file("f.jsonl"), "\n\n");
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("f.jsonl")), doctest::Contains("no docs"), Error);
  CHECK_THROWS_WITH_AS(infer::load_mc_task(dir.file("missing.jsonl")), doctest::Contains("missing.jsonl"), Error);
}
