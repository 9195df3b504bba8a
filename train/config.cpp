#include "train/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"

namespace tq::train {
namespace {

// Reads one YAML document with the key path and line of every value at hand for errors.
class Reader {
 public:
  Reader(std::string source, std::set<std::string> overridden)
      : source_(std::move(source)), overridden_(std::move(overridden)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& path, const std::string& what) const {
    std::string where;
    if (overridden_.count(path)) {
      where = fmt::format("{} (--override {})", source_, path);
    } else if (node.IsDefined() && node.Mark().line >= 0) {
      where = fmt::format("{}:{}", source_, node.Mark().line + 1);
    } else {
      where = source_;
    }
    TQ_THROW("[config] {}: {}: {}", where, path, what);
  }

  static std::string shown(const YAML::Node& n) {
    if (n.IsNull()) return "null";
    if (n.IsScalar()) return "'" + n.Scalar() + "'";
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "nothing";
  }

  template <class T>
  T as(const YAML::Node& n, const std::string& path) const;

 private:
  std::string source_;
  std::set<std::string> overridden_;
};

bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 0);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  out = v;
  return true;
}

bool parse_double(const std::string& s, double& out) {
  if (s.empty()) return false;
  if (s == ".inf" || s == ".nan" || s == "-.inf") return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  out = v;
  return true;
}

template <>
int64_t Reader::as<int64_t>(const YAML::Node& n, const std::string& path) const {
  int64_t v = 0;
  if (!n.IsScalar() || n.Tag() == "!" || !parse_int(n.Scalar(), v)) fail(n, path, "expected an integer, got " + shown(n));
  return v;
}
template <>
double Reader::as<double>(const YAML::Node& n, const std::string& path) const {
  double v = 0;
  if (!n.IsScalar() || n.Tag() == "!" || !parse_double(n.Scalar(), v) || !std::isfinite(v))
    fail(n, path, "expected a finite number, got " + shown(n));
  return v;
}
template <>
bool Reader::as<bool>(const YAML::Node& n, const std::string& path) const {
  if (n.IsScalar() && n.Tag() != "!") {
    if (n.Scalar() == "true") return true;
    if (n.Scalar() == "false") return false;
  }
  fail(n, path, "expected true or false, got " + shown(n));
}
template <>
std::string Reader::as<std::string>(const YAML::Node& n, const std::string& path) const {
  if (!n.IsScalar()) fail(n, path, "expected a string, got " + shown(n));
  return n.Scalar();
}
template <>
std::vector<std::string> Reader::as<std::vector<std::string>>(const YAML::Node& n, const std::string& path) const {
  if (n.IsScalar() && n.Tag() != "!" ) {
    // A single glob is accepted for a list of strings.
    return {n.Scalar()};
  }
  if (!n.IsSequence()) fail(n, path, "expected a list of strings, got " + shown(n));
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) out.push_back(as<std::string>(n[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

// One mapping: typed getters record which keys were read; finish() rejects the rest.
class Section {
 public:
  Section(const Reader& r, YAML::Node node, std::string path, bool required)
      : r_(r), node_(std::move(node)), path_(std::move(path)) {
    if (!node_.IsDefined() || node_.IsNull()) {
      if (required) r_.fail(node_, path_, "missing required section");
      present_ = false;
      return;
    }
    if (!node_.IsMap()) r_.fail(node_, path_, "expected a mapping, got " + Reader::shown(node_));
  }
  bool present() const { return present_; }
  bool has(const std::string& key) const { return present_ && node_[key].IsDefined() && !node_[key].IsNull(); }
  YAML::Node node(const std::string& key) {
    used_.insert(key);
    return present_ ? YAML::Node(node_[key]) : YAML::Node();
  }
  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  template <class T>
  void get(const std::string& key, T& out) {
    used_.insert(key);
    if (!has(key)) return;
    out = r_.as<T>(node_[key], key_path(key));
  }
  template <class T>
  void require(const std::string& key, T& out) {
    used_.insert(key);
    if (!has(key)) r_.fail(node_, key_path(key), "missing required key");
    out = r_.as<T>(node_[key], key_path(key));
  }
  // Fails on the node of `key` (or the section when absent).
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    const YAML::Node n = has(key) ? YAML::Node(node_[key]) : node_;
    r_.fail(n, key_path(key), what);
  }
  void finish(const std::vector<std::string>& also_known = {}) const {
    if (!present_) return;
    for (const auto& kv : node_) {
      const std::string k = kv.first.Scalar();
      bool known = used_.count(k) != 0;
      for (const auto& a : also_known) known = known || a == k;
      if (!known) {
        std::string list;
        for (const auto& u : used_) list += (list.empty() ? "" : ", ") + u;
        r_.fail(kv.first, key_path(k), "unknown key (known here: " + list + ")");
      }
    }
  }

 private:
  const Reader& r_;
  YAML::Node node_;
  std::string path_;
  bool present_ = true;
  std::set<std::string> used_;
};

void check(bool ok, Section& s, const std::string& key, const std::string& what) {
  if (!ok) s.fail(key, what);
}

// "a.b[1]=value" → sets the node at that path (creating mappings) to YAML::Load(value).
void apply_override(YAML::Node root, const std::string& ov, std::set<std::string>& overridden) {
  const size_t eq = ov.find('=');
  TQ_CHECK(eq != std::string::npos && eq > 0, "[config] --override '{}': expected key.path=value", ov);
  const std::string path = ov.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(ov.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    TQ_THROW("[config] --override '{}': the value is not YAML: {}", ov, e.msg);
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) {
    TQ_CHECK(!p.empty(), "[config] --override '{}': empty key component", ov);
    parts.push_back(p);
  }
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!cur[parts[i]].IsDefined() || cur[parts[i]].IsNull()) cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    TQ_CHECK(cur[parts[i]].IsMap(), "[config] --override '{}': '{}' is not a mapping", ov, parts[i]);
    cur.reset(cur[parts[i]]);
  }
  cur[parts.back()] = value;
  overridden.insert(path);
}

const std::set<std::string> kMethods = {"none",    "absmean", "absmedian",     "twn", "minima",
                                        "tequila", "tequila_nomix", "lsq", "seq"};

}  // namespace

quant::QuantConfig QuantSection::to_quant_config() const {
  quant::QuantConfig q;
  q.method = method;
  q.granularity = quant::parse_granularity(granularity);
  q.group_size = group_size;
  q.lambda = lambda;
  q.minima_eps = minima_eps;
  q.minima_grad = minima_grad;
  q.scale_grad = scale_grad;
  q.layers = layers;
  return q;
}

int64_t ScheduleSection::resolved_warmup_steps(int64_t max_steps) const {
  if (warmup_ratio >= 0) return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(max_steps)));
  return warmup_steps;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream f(path, std::ios::binary);
  TQ_CHECK(f.good(), "[config] cannot open {}: {} — hint: tqtrain takes the path of a YAML config", path,
           std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path, overrides);
}

TrainConfig TrainConfig::parse(const std::string& yaml_text, const std::string& source,
                               const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    TQ_THROW("[config] {}:{}: not valid YAML: {}", source, e.mark.line + 1, e.msg);
  }
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  std::set<std::string> overridden;
  if (root.IsMap())
    for (const auto& ov : overrides) apply_override(root, ov, overridden);
  const Reader r(source, overridden);
  TrainConfig c;
  c.source = source;
  Section top(r, root, "", true);

  {  // model
    Section s(r, top.node("model"), "model", true);
    s.get("init", c.model.init);
    check(c.model.init == "scratch" || c.model.init == "hf", s, "init", "expected scratch or hf, got '" + c.model.init + "'");
    nn::LlamaConfig& m = c.model.shape;
    const std::vector<std::string> shape_keys = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                                 "rope_theta", "rms_norm_eps", "tie_word_embeddings", "bos_token_id",
                                                 "eos_token_id", "head_dim", "init_std"};
    if (c.model.init == "hf") {
      s.require("path", c.model.path);
      for (const auto& k : shape_keys)
        if (s.has(k)) s.fail(k, "shape fields are only for init: scratch (init: hf reads them from path/config.json)");
      s.finish(shape_keys);
    } else {
      if (s.has("path")) s.fail("path", "only for init: hf");
      s.node("path");
      s.require("vocab_size", m.vocab_size);
      s.require("hidden_size", m.hidden_size);
      s.require("intermediate_size", m.intermediate_size);
      s.require("num_hidden_layers", m.num_hidden_layers);
      s.require("num_attention_heads", m.num_attention_heads);
      m.num_key_value_heads = m.num_attention_heads;
      s.get("num_key_value_heads", m.num_key_value_heads);
      s.get("head_dim", m.head_dim);
      s.get("max_position_embeddings", m.max_position_embeddings);
      s.get("rope_theta", m.rope_theta);
      s.get("rms_norm_eps", m.rms_norm_eps);
      s.get("tie_word_embeddings", m.tie_word_embeddings);
      s.get("bos_token_id", m.bos_token_id);
      s.get("eos_token_id", m.eos_token_id);
      s.get("init_std", c.model.init_std);
      for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "max_position_embeddings"}) {
        int64_t v = 0;
        s.get(k, v);
        if (s.has(k)) check(v > 0, s, k, "must be positive, got " + std::to_string(v));
      }
      check(m.num_key_value_heads > 0, s, "num_key_value_heads", "must be positive");
      check(m.hidden_size % m.num_attention_heads == 0 || m.head_dim > 0, s, "num_attention_heads",
            fmt::format("must divide hidden_size {} (got {})", m.hidden_size, m.num_attention_heads));
      check(m.num_attention_heads % m.num_key_value_heads == 0, s, "num_key_value_heads",
            fmt::format("must divide num_attention_heads {} (got {})", m.num_attention_heads, m.num_key_value_heads));
      check(m.resolved_head_dim() % 2 == 0, s, "num_attention_heads",
            fmt::format("head_dim = hidden_size / num_attention_heads = {} must be even (RoPE)", m.resolved_head_dim()));
      check(m.rope_theta > 0, s, "rope_theta", "must be positive");
      check(m.rms_norm_eps > 0, s, "rms_norm_eps", "must be positive");
      check(c.model.init_std > 0, s, "init_std", "must be positive");
      m.eos_token_ids = {m.eos_token_id};
      s.finish();
    }
  }
  {  // quant
    Section s(r, top.node("quant"), "quant", false);
    s.get("method", c.quant.method);
    check(kMethods.count(c.quant.method) != 0, s, "method",
          "expected one of none, absmean, absmedian, twn, minima, tequila, tequila_nomix, lsq, seq, got '" + c.quant.method + "'");
    s.get("lambda", c.quant.lambda);
    check(c.quant.lambda >= 0, s, "lambda", "must be ≥ 0");
    s.get("granularity", c.quant.granularity);
    check(c.quant.granularity == "tensor" || c.quant.granularity == "channel" || c.quant.granularity == "group", s,
          "granularity", "expected tensor, channel or group, got '" + c.quant.granularity + "'");
    s.get("group_size", c.quant.group_size);
    check(c.quant.group_size > 0, s, "group_size", "must be positive");
    s.get("layers", c.quant.layers);
    for (const auto& l : c.quant.layers)
      check(l == "q_proj" || l == "k_proj" || l == "v_proj" || l == "o_proj" || l == "gate_proj" || l == "up_proj" ||
                l == "down_proj" || l == "lm_head",
            s, "layers", "unknown layer '" + l + "' (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj lm_head)");
    s.get("minima_eps", c.quant.minima_eps);
    s.get("minima_grad", c.quant.minima_grad);
    check(c.quant.minima_grad == "paper" || c.quant.minima_grad == "code", s, "minima_grad", "expected paper or code");
    s.get("scale_grad", c.quant.scale_grad);
    check(c.quant.scale_grad == "row" || c.quant.scale_grad == "tensor", s, "scale_grad", "expected row or tensor");
    check(!quant::method_is_learnable(c.quant.method) || c.quant.granularity == "channel", s, "granularity",
          "method " + c.quant.method + " learns one scale per output channel: granularity must be channel");
    if (c.model.init == "scratch" && c.quant.method != "none" && c.quant.granularity == "group") {
      const nn::LlamaConfig& m = c.model.shape;
      const int64_t G = c.quant.group_size;
      for (const auto& l : c.quant.layers) {
        const int64_t in = l == "down_proj" ? m.intermediate_size
                           : l == "o_proj"  ? m.num_attention_heads * m.resolved_head_dim()
                                            : m.hidden_size;
        check(in % G == 0, s, "group_size",
              fmt::format("must divide the input width {} of {} (and every other quantized layer)", in, l));
      }
    }
    s.finish();
  }
  {  // data
    Section s(r, top.node("data"), "data", true);
    s.require("train", c.data.train);
    check(!c.data.train.empty(), s, "train", "needs at least one glob");
    s.get("valid", c.data.valid);
    s.get("valid_fraction", c.data.valid_fraction);
    check(c.data.valid_fraction >= 0 && c.data.valid_fraction < 1, s, "valid_fraction", "must be in [0, 1)");
    if (!c.data.valid.empty() && c.data.valid_fraction > 0) s.fail("valid_fraction", "give data.valid or data.valid_fraction, not both");
    s.get("seq_len", c.data.seq_len);
    check(c.data.seq_len > 0, s, "seq_len", "must be positive");
    if (c.model.init == "scratch")
      check(c.data.seq_len <= c.model.shape.max_position_embeddings, s, "seq_len",
            fmt::format("{} exceeds model.max_position_embeddings {}", c.data.seq_len, c.model.shape.max_position_embeddings));
    s.require("tokenizer", c.data.tokenizer);
    s.get("jsonl_field", c.data.jsonl_field);
    s.get("shuffle", c.data.shuffle);
    s.get("shuffle_block", c.data.shuffle_block);
    check(c.data.shuffle_block > 0, s, "shuffle_block", "must be positive");
    s.get("on_bad_data", c.data.on_bad_data);
    check(c.data.on_bad_data == "skip" || c.data.on_bad_data == "stop", s, "on_bad_data", "expected skip or stop");
    if (s.has("tokenizer_train")) {
      Section t(r, s.node("tokenizer_train"), "data.tokenizer_train", true);
      c.data.tokenizer_train.enabled = true;
      t.require("vocab_size", c.data.tokenizer_train.vocab_size);
      check(c.data.tokenizer_train.vocab_size >= 16, t, "vocab_size", "must be at least 16");
      t.get("model_type", c.data.tokenizer_train.model_type);
      check(c.data.tokenizer_train.model_type == "bpe" || c.data.tokenizer_train.model_type == "unigram", t,
            "model_type", "expected bpe or unigram");
      t.get("input_sentence_size", c.data.tokenizer_train.input_sentence_size);
      check(c.data.tokenizer_train.input_sentence_size > 0, t, "input_sentence_size", "must be positive");
      if (c.model.init == "scratch" && c.data.tokenizer_train.vocab_size > c.model.shape.vocab_size)
        t.fail("vocab_size", fmt::format("{} exceeds model.vocab_size {}", c.data.tokenizer_train.vocab_size,
                                         c.model.shape.vocab_size));
      t.get("byte_fallback", c.data.tokenizer_train.byte_fallback);
      if (c.data.tokenizer_train.byte_fallback && c.data.tokenizer_train.vocab_size < 260)
        t.fail("vocab_size", "byte_fallback needs vocab_size ≥ 260 (256 byte pieces + unk/bos/eos); use "
                             "byte_fallback: false for smaller vocabularies");
      t.finish();
    } else {
      s.node("tokenizer_train");
    }
    s.finish();
  }
  {  // optim
    Section s(r, top.node("optim"), "optim", false);
    s.get("name", c.optim.name);
    check(c.optim.name == "adamw", s, "name", "expected adamw, got '" + c.optim.name + "'");
    s.get("lr", c.optim.lr);
    check(c.optim.lr > 0, s, "lr", fmt::format("must be > 0, got {}", c.optim.lr));
    if (s.has("betas")) {
      const YAML::Node b = s.node("betas");
      if (!b.IsSequence() || b.size() != 2) r.fail(b, "optim.betas", "expected a list of two numbers, got " + Reader::shown(b));
      c.optim.beta1 = r.as<double>(b[0], "optim.betas[0]");
      c.optim.beta2 = r.as<double>(b[1], "optim.betas[1]");
      if (!(c.optim.beta1 >= 0 && c.optim.beta1 < 1)) r.fail(b[0], "optim.betas[0]", "must be in [0, 1)");
      if (!(c.optim.beta2 >= 0 && c.optim.beta2 < 1)) r.fail(b[1], "optim.betas[1]", "must be in [0, 1)");
    } else {
      s.node("betas");
    }
    s.get("eps", c.optim.eps);
    check(c.optim.eps > 0, s, "eps", "must be > 0");
    s.get("weight_decay", c.optim.weight_decay);
    check(c.optim.weight_decay >= 0, s, "weight_decay", "must be ≥ 0");
    s.get("grad_clip", c.optim.grad_clip);
    check(c.optim.grad_clip >= 0, s, "grad_clip", "must be ≥ 0 (0 disables clipping)");
    s.finish();
  }
  {  // train (before schedule: warmup_ratio needs max_steps)
    Section s(r, top.node("train"), "train", true);
    s.get("micro_batch", c.train.micro_batch);
    check(c.train.micro_batch > 0, s, "micro_batch", "must be positive");
    s.get("grad_accum", c.train.grad_accum);
    check(c.train.grad_accum > 0, s, "grad_accum", "must be positive");
    s.require("max_steps", c.train.max_steps);
    check(c.train.max_steps > 0, s, "max_steps", "must be positive");
    int64_t seed = 42;
    s.get("seed", seed);
    check(seed >= 0, s, "seed", "must be ≥ 0");
    c.train.seed = static_cast<uint64_t>(seed);
    if (s.has("threads")) {
      const YAML::Node t = s.node("threads");
      if (t.IsScalar() && t.Scalar() == "auto") {
        c.train.threads = 0;
      } else {
        const int64_t n = r.as<int64_t>(t, "train.threads");
        if (n < 0 || n > 4096) r.fail(t, "train.threads", "expected auto or a thread count ≥ 0");
        c.train.threads = static_cast<int>(n);
      }
    } else {
      s.node("threads");
    }
    s.get("max_bad_steps", c.train.max_bad_steps);
    check(c.train.max_bad_steps > 0, s, "max_bad_steps", "must be positive");
    s.finish();
  }
  {  // schedule
    Section s(r, top.node("schedule"), "schedule", false);
    s.get("name", c.schedule.name);
    check(c.schedule.name == "constant" || c.schedule.name == "cosine" || c.schedule.name == "wsd", s, "name",
          "expected constant, cosine or wsd, got '" + c.schedule.name + "'");
    s.get("warmup_steps", c.schedule.warmup_steps);
    s.get("warmup_ratio", c.schedule.warmup_ratio);
    if (s.has("warmup_steps") && s.has("warmup_ratio")) s.fail("warmup_ratio", "give warmup_steps or warmup_ratio, not both");
    check(c.schedule.warmup_steps >= 0, s, "warmup_steps", "must be ≥ 0");
    if (s.has("warmup_ratio")) check(c.schedule.warmup_ratio >= 0 && c.schedule.warmup_ratio <= 1, s, "warmup_ratio", "must be in [0, 1]");
    check(c.schedule.resolved_warmup_steps(c.train.max_steps) <= c.train.max_steps, s, "warmup_steps",
          "exceeds train.max_steps");
    s.get("decay_steps", c.schedule.decay_steps);
    check(c.schedule.decay_steps >= 0, s, "decay_steps", "must be ≥ 0");
    if (c.schedule.name == "wsd") check(c.schedule.decay_steps > 0, s, "decay_steps", "wsd needs decay_steps > 0");
    s.get("min_lr_ratio", c.schedule.min_lr_ratio);
    check(c.schedule.min_lr_ratio >= 0 && c.schedule.min_lr_ratio <= 1, s, "min_lr_ratio", "must be in [0, 1]");
    s.finish();
  }
  {  // eval
    Section s(r, top.node("eval"), "eval", false);
    s.get("every", c.eval.every);
    check(c.eval.every >= 0, s, "every", "must be ≥ 0");
    s.get("batches", c.eval.batches);
    check(c.eval.batches > 0, s, "batches", "must be positive");
    s.get("tasks", c.eval.tasks);
    s.finish();
  }
  {  // checkpoint
    Section s(r, top.node("checkpoint"), "checkpoint", true);
    s.require("dir", c.checkpoint.dir);
    check(!c.checkpoint.dir.empty(), s, "dir", "must not be empty");
    s.get("every", c.checkpoint.every);
    check(c.checkpoint.every >= 0, s, "every", "must be ≥ 0 (0: only at the end)");
    s.get("keep", c.checkpoint.keep);
    check(c.checkpoint.keep >= 1, s, "keep", "must be ≥ 1");
    s.finish();
  }
  {  // log
    Section s(r, top.node("log"), "log", false);
    s.get("every", c.log.every);
    check(c.log.every > 0, s, "every", "must be positive");
    s.get("metrics", c.log.metrics);
    if (c.log.metrics.empty()) c.log.metrics = c.checkpoint.dir + "/metrics.jsonl";
    s.get("diagnostics_every", c.log.diagnostics_every);
    check(c.log.diagnostics_every >= 0, s, "diagnostics_every", "must be ≥ 0");
    s.finish();
  }
  top.finish();
  return c;
}

Json TrainConfig::to_json() const {
  Json j;
  Json m = {{"init", model.init}};
  if (model.init == "hf") {
    m["path"] = model.path;
  } else {
    const auto& s = model.shape;
    m.update({{"vocab_size", s.vocab_size}, {"hidden_size", s.hidden_size}, {"intermediate_size", s.intermediate_size},
              {"num_hidden_layers", s.num_hidden_layers}, {"num_attention_heads", s.num_attention_heads},
              {"num_key_value_heads", s.num_key_value_heads}, {"head_dim", s.head_dim},
              {"max_position_embeddings", s.max_position_embeddings}, {"rope_theta", s.rope_theta},
              {"rms_norm_eps", s.rms_norm_eps}, {"tie_word_embeddings", s.tie_word_embeddings},
              {"bos_token_id", s.bos_token_id}, {"eos_token_id", s.eos_token_id}, {"init_std", model.init_std}});
  }
  j["model"] = m;
  j["quant"] = {{"method", quant.method},         {"lambda", quant.lambda},         {"granularity", quant.granularity},
                {"group_size", quant.group_size}, {"layers", quant.layers},         {"minima_eps", quant.minima_eps},
                {"minima_grad", quant.minima_grad},
                {"scale_grad", quant.scale_grad}};
  Json d = {{"train", data.train},
            {"valid", data.valid},
            {"valid_fraction", data.valid_fraction},
            {"seq_len", data.seq_len},
            {"tokenizer", data.tokenizer},
            {"jsonl_field", data.jsonl_field},
            {"shuffle", data.shuffle},
            {"shuffle_block", data.shuffle_block},
            {"on_bad_data", data.on_bad_data}};
  if (data.tokenizer_train.enabled)
    d["tokenizer_train"] = {{"vocab_size", data.tokenizer_train.vocab_size},
                            {"model_type", data.tokenizer_train.model_type},
                            {"input_sentence_size", data.tokenizer_train.input_sentence_size},
                            {"byte_fallback", data.tokenizer_train.byte_fallback}};
  j["data"] = d;
  j["optim"] = {{"name", optim.name},
                {"lr", optim.lr},
                {"betas", {optim.beta1, optim.beta2}},
                {"eps", optim.eps},
                {"weight_decay", optim.weight_decay},
                {"grad_clip", optim.grad_clip}};
  Json sc = {{"name", schedule.name}, {"decay_steps", schedule.decay_steps}, {"min_lr_ratio", schedule.min_lr_ratio}};
  if (schedule.warmup_ratio >= 0) sc["warmup_ratio"] = schedule.warmup_ratio; else sc["warmup_steps"] = schedule.warmup_steps;
  j["schedule"] = sc;
  j["train"] = {{"micro_batch", train.micro_batch}, {"grad_accum", train.grad_accum}, {"max_steps", train.max_steps},
                {"seed", train.seed},               {"threads", train.threads},       {"max_bad_steps", train.max_bad_steps}};
  j["eval"] = {{"every", eval.every}, {"batches", eval.batches}, {"tasks", eval.tasks}};
  j["checkpoint"] = {{"dir", checkpoint.dir}, {"every", checkpoint.every}, {"keep", checkpoint.keep}};
  j["log"] = {{"every", log.every}, {"metrics", log.metrics}, {"diagnostics_every", log.diagnostics_every}};
  return j;
}

namespace {
void emit(YAML::Emitter& e, const Json& j) {
  if (j.is_object()) {
    e << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      e << YAML::Key << it.key() << YAML::Value;
      emit(e, it.value());
    }
    e << YAML::EndMap;
  } else if (j.is_array()) {
    e << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : j) emit(e, v);
    e << YAML::EndSeq;
  } else if (j.is_string()) {
    e << YAML::DoubleQuoted << j.get<std::string>();
  } else if (j.is_boolean()) {
    e << (j.get<bool>() ? "true" : "false");
  } else if (j.is_number_unsigned()) {
    e << j.get<uint64_t>();
  } else if (j.is_number_integer()) {
    e << j.get<int64_t>();
  } else if (j.is_number_float()) {
    e << fmt::format("{}", j.get<double>());  // shortest round-trip form
  } else {
    e << YAML::Null;
  }
}
}  // namespace

std::string json_to_yaml(const Json& j) {
  YAML::Emitter e;
  emit(e, j);
  return std::string(e.c_str()) + "\n";
}

std::string TrainConfig::resolved_config_yaml() const {
  return "# resolved by tqtrain from " + source + "\n" + json_to_yaml(to_json());
}

std::string TrainConfig::hash() const {
  Json j = to_json();
  Json t = {{"micro_batch", train.micro_batch}, {"grad_accum", train.grad_accum}, {"seed", train.seed}};
  Json h = {{"model", j["model"]}, {"quant", j["quant"]}, {"data", j["data"]}, {"optim", j["optim"]},
            {"schedule", j["schedule"]}, {"train", t}};
  const std::string s = h.dump();
  uint64_t x = 1469598103934665603ull;
  for (unsigned char ch : s) {
    x ^= ch;
    x *= 1099511628211ull;
  }
  return fmt::format("{:016x}", x);
}

}  // namespace tq::train
