#include "infer/mc_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace tq::infer {

namespace {

bool is_py_space(unsigned char c) {  // ASCII part of Python's str.isspace()
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1f);
}

// Index of the first maximum, as numpy.argmax.
int64_t first_argmax(const std::vector<double>& x) {
  int64_t best = 0;
  for (size_t i = 1; i < x.size(); ++i)
    if (x[i] > x[static_cast<size_t>(best)]) best = static_cast<int64_t>(i);
  return best;
}

double mean(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return x.empty() ? 0.0 : s / static_cast<double>(x.size());
}

}  // namespace

McTask load_mc_task(const std::string& path, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  TQ_CHECK(in.good(), "[mc_eval] cannot open task file {}", path);
  McTask task;
  task.path = path;
  task.name = std::filesystem::path(path).stem().string();
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    const Json j = parse_json(line, where);
    TQ_CHECK(j.is_object(), "[mc_eval] {}: expected a JSON object {{\"context\", \"choices\", \"gold\"}}, got {}",
             where, json_kind(j));
    McDoc d;
    d.line = lineno;
    d.context = json_get<std::string>(j, "context", where);
    d.choices = json_get<std::vector<std::string>>(j, "choices", where);
    TQ_CHECK(!d.choices.empty(), "[mc_eval] {}: 'choices' is empty", where);
    d.gold = json_get<int64_t>(j, "gold", where);
    TQ_CHECK(d.gold >= 0 && d.gold < static_cast<int64_t>(d.choices.size()),
             "[mc_eval] {}: 'gold' is {} but there are {} choices (0-based index expected)", where, d.gold,
             d.choices.size());
    task.docs.push_back(std::move(d));
  }
  TQ_CHECK(!task.docs.empty(), "[mc_eval] {} has no docs", path);
  if (limit > 0 && static_cast<int64_t>(task.docs.size()) > limit) task.docs.resize(static_cast<size_t>(limit));
  return task;
}

EncodedPair encode_pair(const data::Tokenizer& tok, std::string_view context, std::string_view continuation,
                        bool add_bos) {
  EncodedPair p;
  if (context.empty()) {  // TemplateLM.loglikelihood: prefix token as the context
    const int32_t prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
    TQ_CHECK(prefix >= 0, "[mc_eval] empty context and the tokenizer {} has neither BOS nor EOS", tok.path());
    p.context = {prefix};
    p.continuation = tok.encode(continuation, add_bos && tok.bos_id() >= 0);
    return p;
  }
  size_t cut = context.size();
  while (cut > 0 && is_py_space(static_cast<unsigned char>(context[cut - 1]))) --cut;
  std::string ctx(context.substr(0, cut));
  std::string cont = std::string(context.substr(cut)) + std::string(continuation);
  const bool bos = add_bos && tok.bos_id() >= 0;
  const std::vector<int32_t> whole = tok.encode(ctx + cont, bos);
  p.context = tok.encode(ctx, bos);
  const size_t n = std::min(p.context.size(), whole.size());
  p.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return p;
}

LogLikelihood loglikelihood(LanguageModel& lm, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& continuation) {
  TQ_CHECK(!context.empty(), "[mc_eval] loglikelihood needs a non-empty context");
  LogLikelihood r;
  r.greedy = true;
  if (continuation.empty()) return r;  // the harness scores an empty continuation as 0
  const int64_t max_len = lm.max_context();
  TQ_CHECK(static_cast<int64_t>(continuation.size()) <= max_len,
           "[mc_eval] continuation of {} tokens does not fit the model's context {}", continuation.size(), max_len);
  // inp = (context + continuation)[-(max_len + 1):][:-1]
  std::vector<int32_t> all(context);
  all.insert(all.end(), continuation.begin(), continuation.end());
  const size_t start = all.size() > static_cast<size_t>(max_len + 1) ? all.size() - static_cast<size_t>(max_len + 1) : 0;
  std::vector<int32_t> inp(all.begin() + static_cast<std::ptrdiff_t>(start), all.end() - 1);
  const int64_t T = static_cast<int64_t>(inp.size()), V = lm.vocab_size();
  const int64_t C = static_cast<int64_t>(continuation.size());
  std::vector<float> logits(static_cast<size_t>(T * V));
  lm.reset();
  lm.forward(inp.data(), T, logits.data(), /*all_logits=*/true);
  for (int64_t i = 0; i < C; ++i) {
    const float* row = logits.data() + (T - C + i) * V;  // predicts continuation[i]
    double mx = -std::numeric_limits<double>::infinity();
    int64_t best = 0;
    for (int64_t v = 0; v < V; ++v)
      if (row[v] > mx) {
        mx = row[v];
        best = v;
      }
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - mx);
    const int32_t target = continuation[static_cast<size_t>(i)];
    r.logprob += static_cast<double>(row[target]) - mx - std::log(s);
    if (best != target) r.greedy = false;
  }
  return r;
}

int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

double mean_stderr(const std::vector<double>& x) {
  const size_t n = x.size();
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  const double mu = mean(x);
  double ss = 0;
  for (double v : x) ss += (v - mu) * (v - mu);
  return std::sqrt(ss / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
}

McTaskResult evaluate_mc_task(LanguageModel& lm, const data::Tokenizer& tok, const McTask& task,
                              const McOptions& o, const std::function<void(int64_t, int64_t)>& progress) {
  McTaskResult r;
  r.name = task.name;
  r.path = task.path;
  r.n_docs_total = static_cast<int64_t>(task.docs.size());
  const int64_t n = o.limit > 0 ? std::min(o.limit, r.n_docs_total) : r.n_docs_total;
  std::vector<double> accs, norms;
  for (int64_t di = 0; di < n; ++di) {
    const McDoc& d = task.docs[static_cast<size_t>(di)];
    McDocResult dr;
    std::vector<double> normed;
    for (size_t c = 0; c < d.choices.size(); ++c) {
      const EncodedPair p = encode_pair(tok, d.context, o.target_delimiter + d.choices[c], o.add_bos);
      double ll = 0;
      try {
        ll = loglikelihood(lm, p.context, p.continuation).logprob;
      } catch (const Error& e) {
        TQ_THROW("[mc_eval] {}:{} choice {}: {}", task.path, d.line, c, e.what());
      }
      dr.loglikelihoods.push_back(ll);
      // float(len(choice)): an empty choice divides by zero in numpy (inf/nan); keep it at -inf here.
      const int64_t len = utf8_length(d.choices[c]);
      normed.push_back(len > 0 ? ll / static_cast<double>(len) : -std::numeric_limits<double>::infinity());
    }
    dr.pred = first_argmax(dr.loglikelihoods);
    dr.pred_norm = first_argmax(normed);
    dr.acc = dr.pred == d.gold ? 1.0 : 0.0;
    dr.acc_norm = dr.pred_norm == d.gold ? 1.0 : 0.0;
    accs.push_back(dr.acc);
    norms.push_back(dr.acc_norm);
    r.docs.push_back(std::move(dr));
    if (progress) progress(di + 1, n);
  }
  r.acc = mean(accs);
  r.acc_norm = mean(norms);
  r.acc_stderr = mean_stderr(accs);
  r.acc_norm_stderr = mean_stderr(norms);
  return r;
}

Json mc_results_json(const std::vector<McTaskResult>& results, const McOptions& o, const std::string& model_name,
                     const std::string& model_args) {
  auto num_or_na = [](double x) { return std::isnan(x) ? Json("N/A") : Json(x); };
  Json j;
  j["results"] = Json::object();
  j["group_subtasks"] = Json::object();
  j["configs"] = Json::object();
  j["versions"] = Json::object();
  j["n-shot"] = Json::object();
  j["higher_is_better"] = Json::object();
  j["n-samples"] = Json::object();
  for (const McTaskResult& r : results) {
    j["results"][r.name] = Json{{"alias", r.name},
                                {"acc,none", r.acc},
                                {"acc_stderr,none", num_or_na(r.acc_stderr)},
                                {"acc_norm,none", r.acc_norm},
                                {"acc_norm_stderr,none", num_or_na(r.acc_norm_stderr)}};
    j["group_subtasks"][r.name] = Json::array();
    j["configs"][r.name] = Json{
        {"task", r.name},
        {"dataset_path", r.path},
        {"output_type", "multiple_choice"},
        {"doc_to_text", "{{context}}"},
        {"doc_to_choice", "{{choices}}"},
        {"doc_to_target", "{{gold}}"},
        {"target_delimiter", o.target_delimiter},
        {"num_fewshot", 0},
        {"metric_list", Json::array({Json{{"metric", "acc"}, {"aggregation", "mean"}, {"higher_is_better", true}},
                                     Json{{"metric", "acc_norm"}, {"aggregation", "mean"}, {"higher_is_better", true}}})},
        {"metadata", Json{{"version", 1.0}}}};
    j["versions"][r.name] = 1.0;
    j["n-shot"][r.name] = 0;
    j["higher_is_better"][r.name] = Json{{"acc", true}, {"acc_norm", true}};
    j["n-samples"][r.name] = Json{{"original", r.n_docs_total}, {"effective", static_cast<int64_t>(r.docs.size())}};
  }
  j["config"] = Json{{"model", model_name},
                     {"model_args", model_args},
                     {"batch_size", 1},
                     {"limit", o.limit > 0 ? Json(o.limit) : Json(nullptr)},
                     {"bootstrap_iters", 0},
                     {"add_bos_token", o.add_bos}};
  j["date"] = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count()) / 1000.0;
  return j;
}

}  // namespace tq::infer
