// Multiple-choice evaluation scored as lm-evaluation-harness scores `output_type: multiple_choice`
// tasks, so numbers sit next to the harness's (details and deviations: docs/tqinfer.md).
//
//   McTask task = load_mc_task("tasks/cloze.jsonl");       // {"context", "choices", "gold"} per line
//   McTaskResult r = evaluate_mc_task(*lm, *tok, task, McOptions{});
//   write_json_file("results.json", mc_results_json({r}, McOptions{}, "tqinfer --fp ..."));
//
// Per doc and choice: request (context, target_delimiter + choice); tokens split as the harness's
// TemplateLM::_encode_pair (trailing whitespace of the context moves to the continuation; encode
// context+continuation whole and split at the context's token count; no BOS unless add_bos; an empty
// context becomes [BOS, or EOS when there is no BOS]); loglikelihood = Σ log p(continuation tokens),
// input left-truncated to max_context + 1 tokens as the harness does.
// acc = [argmax_i ll_i == gold]; acc_norm = [argmax_i ll_i / len(choice_i) == gold] with len in
// Unicode code points of the choice without the delimiter (Python len(str)); argmax takes the first
// maximum (numpy). stderr = sample std (n - 1) / sqrt(n) (the harness's mean_stderr).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "data/tokenizer.h"
#include "infer/language_model.h"

namespace tq::infer {

struct McDoc {
  std::string context;
  std::vector<std::string> choices;
  int64_t gold = 0;
  int64_t line = 0;  // 1-based line in the file
};

struct McTask {
  std::string name;  // file stem ("arc_easy" for tasks/arc_easy.jsonl)
  std::string path;
  std::vector<McDoc> docs;
};

// Reads a jsonl task. Blank lines are skipped; anything else that is not an object with a string
// "context", a non-empty array of strings "choices" and an integer "gold" in range is a tq::Error
// naming path:line. limit > 0 keeps the first `limit` docs.
McTask load_mc_task(const std::string& path, int64_t limit = 0);

struct McOptions {
  std::string target_delimiter = " ";  // the harness's default for multiple_choice tasks
  bool add_bos = false;                // the harness's default (HFLM add_bos_token=False)
  int64_t limit = 0;                   // recorded in the results' config
};

struct EncodedPair {
  std::vector<int32_t> context, continuation;
};
EncodedPair encode_pair(const data::Tokenizer& tok, std::string_view context, std::string_view continuation,
                        bool add_bos);

// Σ log p(continuation[i] | context, continuation[<i]) under lm (reset first), and whether every
// continuation token was the argmax (the harness's is_greedy).
struct LogLikelihood {
  double logprob = 0;
  bool greedy = false;
};
LogLikelihood loglikelihood(LanguageModel& lm, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& continuation);

// Code points in a UTF-8 string (what Python's len() gives for the decoded str).
int64_t utf8_length(std::string_view s);
// Sample standard deviation (n - 1) / sqrt(n); NaN for n < 2.
double mean_stderr(const std::vector<double>& x);

struct McDocResult {
  std::vector<double> loglikelihoods;  // per choice
  int64_t pred = 0, pred_norm = 0;
  double acc = 0, acc_norm = 0;
};
struct McTaskResult {
  std::string name, path;
  int64_t n_docs_total = 0;  // docs in the file (before --limit)
  std::vector<McDocResult> docs;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;
};

// progress(done, total) after each doc when given.
McTaskResult evaluate_mc_task(LanguageModel& lm, const data::Tokenizer& tok, const McTask& task,
                              const McOptions& o, const std::function<void(int64_t, int64_t)>& progress = {});

// The harness's results layout: results / group_subtasks / configs / versions / n-shot /
// higher_is_better / n-samples / config / date. model_name goes to config.model.
Json mc_results_json(const std::vector<McTaskResult>& results, const McOptions& o, const std::string& model_name,
                     const std::string& model_args = "");

}  // namespace tq::infer
