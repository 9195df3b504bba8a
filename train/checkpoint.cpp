#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace tq::train {
namespace {

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TQ_CHECK(fd >= 0, "[checkpoint] cannot open directory {} to fsync it: {}", dir, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  TQ_CHECK(rc == 0 || err == EINVAL, "[checkpoint] cannot fsync directory {}: {}", dir, std::strerror(err));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  TQ_CHECK(f.good(), "[checkpoint] cannot open {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void copy_tokenizer(const std::string& src, const std::string& dir) {
  if (src.empty()) return;
  std::vector<fs::path> files;
  if (fs::is_directory(src)) {
    for (const char* n : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
      if (fs::exists(fs::path(src) / n)) files.push_back(fs::path(src) / n);
  } else {
    TQ_CHECK(fs::exists(src), "[checkpoint] tokenizer {} does not exist", src);
    files.push_back(src);
  }
  for (const auto& f : files) {
    // A SentencePiece model is stored as tokenizer.model whatever its name, so the checkpoint is an HF dir.
    std::string name = f.filename().string();
    if (f.extension() == ".model") name = "tokenizer.model";
    write_file_atomic((fs::path(dir) / name).string(), read_file(f.string()));
  }
}

}  // namespace

Json TrainerState::to_json() const {
  Json ps = Json::object();
  for (const auto& [n, s] : param_steps) ps[n] = s;
  return {{"format", "tequila-trainer-state"},
          {"version", 1},
          {"step", step},
          {"tokens", tokens},
          {"bad_steps", bad_steps},
          {"total_bad_steps", total_bad_steps},
          {"rng", rng},
          {"data_cursor", data_cursor},
          {"config_hash", config_hash},
          {"library_version", library_version},
          {"elapsed_s", elapsed_s},
          {"param_steps", ps}};
}

TrainerState TrainerState::from_json(const Json& j, const std::string& source) {
  json_check_keys(j,
                  {"format", "version", "step", "tokens", "bad_steps", "total_bad_steps", "rng", "data_cursor",
                   "config_hash", "library_version", "elapsed_s", "param_steps"},
                  source);
  TQ_CHECK(json_get<std::string>(j, "format", source) == "tequila-trainer-state",
           "[{}] field 'format': expected \"tequila-trainer-state\"", source);
  TQ_CHECK(json_get<int64_t>(j, "version", source) == 1, "[{}] field 'version': only version 1 is supported",
           source);
  TrainerState s;
  s.step = json_get<int64_t>(j, "step", source);
  TQ_CHECK(s.step >= 0, "[{}] field 'step': must be ≥ 0, got {}", source, s.step);
  s.tokens = json_get<int64_t>(j, "tokens", source);
  TQ_CHECK(s.tokens >= 0, "[{}] field 'tokens': must be ≥ 0", source);
  s.bad_steps = json_get<int64_t>(j, "bad_steps", source);
  s.total_bad_steps = json_get<int64_t>(j, "total_bad_steps", source);
  s.rng = json_get<std::string>(j, "rng", source);
  TQ_CHECK(j.contains("data_cursor"), "[{}] missing field 'data_cursor'", source);
  s.data_cursor = j["data_cursor"];
  s.config_hash = json_get<std::string>(j, "config_hash", source);
  s.library_version = json_get<std::string>(j, "library_version", source);
  s.elapsed_s = json_get<double>(j, "elapsed_s", source);
  const Json ps = json_get<Json>(j, "param_steps", source);
  TQ_CHECK(ps.is_object(), "[{}] field 'param_steps': expected object, got {}", source, json_kind(ps));
  for (auto it = ps.begin(); it != ps.end(); ++it)
    s.param_steps.emplace_back(it.key(), json_as<int64_t>(it.value(), "param_steps." + it.key(), source));
  return s;
}

std::string checkpoint_name(int64_t step) { return fmt::format("step-{:06d}", step); }

Json quantization_config_json(const quant::QuantConfig& q) {
  return {{"quant_method", "tequila"},
          {"method", q.method},
          {"bits", 1.58},
          {"granularity", quant::granularity_name(q.granularity)},
          {"group_size", q.group_size},
          {"lambda", q.lambda},
          {"modules_to_quantize", q.layers}};
}

std::string save_checkpoint(const std::string& root, const nn::LlamaForCausalLM& model, const AdamW& opt,
                            const TrainerState& state, const CheckpointOptions& opts) {
  fs::create_directories(root);
  // Left-overs of interrupted saves.
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());

  const std::string name = checkpoint_name(state.step);
  const std::string tmp = (fs::path(root) / fmt::format(".tmp-{}-{}", name, ::getpid())).string();
  const std::string final_dir = (fs::path(root) / name).string();
  fs::create_directories(tmp);
  auto done = [&](const char* file) {
    if (opts.after_file) opts.after_file(file);
  };
  try {
    nn::save_llama(model, tmp);  // model.safetensors + config.json
    done("model.safetensors");
    Json cfg = model.config().to_json();
    if (opts.quant && opts.quant->method != "none") cfg["quantization_config"] = quantization_config_json(*opts.quant);
    write_json_file((fs::path(tmp) / "config.json").string(), cfg);
    done("config.json");
    save_safetensors((fs::path(tmp) / "optimizer.safetensors").string(), opt.state_tensors(),
                     {{"format", "tequila-adamw"}});
    done("optimizer.safetensors");
    TrainerState st = state;
    st.param_steps.clear();
    for (size_t i = 0; i < opt.params().size(); ++i) st.param_steps.emplace_back(opt.params()[i].first, opt.steps()[i]);
    write_json_file((fs::path(tmp) / "trainer_state.json").string(), st.to_json());
    done("trainer_state.json");
    copy_tokenizer(opts.tokenizer, tmp);
    done("tokenizer");
    if (!opts.resolved_config_yaml.empty()) {
      write_file_atomic((fs::path(tmp) / "config.resolved.yaml").string(), opts.resolved_config_yaml);
      done("config.resolved.yaml");
    }
    fsync_dir(tmp);
    if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a re-save of the same step
    fs::rename(tmp, final_dir);
    fsync_dir(root);
    done("rename");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  write_file_atomic((fs::path(root) / "latest").string(), name + "\n");
  done("latest");

  // Keep the newest `keep` step directories (the one just written always survives).
  std::vector<std::string> steps;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step-", 0) == 0) steps.push_back(n);
  }
  std::sort(steps.begin(), steps.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  const int64_t excess = static_cast<int64_t>(steps.size()) - std::max<int64_t>(opts.keep, 1);
  for (int64_t i = 0; i < excess; ++i)
    if (steps[static_cast<size_t>(i)] != name) fs::remove_all(fs::path(root) / steps[static_cast<size_t>(i)]);
  return final_dir;
}

std::string latest_checkpoint(const std::string& root) {
  const fs::path p = fs::path(root) / "latest";
  if (!fs::exists(p)) return "";
  std::string name = read_file(p.string());
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  TQ_CHECK(!name.empty() && name.find('/') == std::string::npos,
           "[checkpoint] {}: expected the name of a checkpoint directory, got '{}'", p.string(), name);
  const fs::path dir = fs::path(root) / name;
  TQ_CHECK(fs::exists(dir / "trainer_state.json"),
           "[checkpoint] {} names {}, which is not a complete checkpoint (no trainer_state.json)", p.string(),
           dir.string());
  return dir.string();
}

std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(fs::path(path) / "trainer_state.json")) return path;
  const std::string l = latest_checkpoint(path);
  TQ_CHECK(!l.empty(), "[checkpoint] {} is neither a checkpoint directory (trainer_state.json) nor a run directory "
           "with a 'latest' file", path);
  return l;
}

TrainerState load_checkpoint(const std::string& dir, nn::LlamaForCausalLM& model, AdamW& opt) {
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  const TrainerState st = TrainerState::from_json(read_json_file(state_path), state_path);

  // config.json must describe the model we built.
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  const nn::LlamaConfig saved = nn::LlamaConfig::from_json(read_json_file(cfg_path), cfg_path);
  const nn::LlamaConfig& cur = model.config();
  auto same = [&](const char* field, int64_t a, int64_t b) {
    TQ_CHECK(a == b, "[checkpoint] {}: field '{}' is {} but the model being trained has {}", cfg_path, field, a, b);
  };
  same("vocab_size", saved.vocab_size, cur.vocab_size);
  same("hidden_size", saved.hidden_size, cur.hidden_size);
  same("intermediate_size", saved.intermediate_size, cur.intermediate_size);
  same("num_hidden_layers", saved.num_hidden_layers, cur.num_hidden_layers);
  same("num_attention_heads", saved.num_attention_heads, cur.num_attention_heads);
  same("num_key_value_heads", saved.resolved_kv_heads(), cur.resolved_kv_heads());

  const std::string model_path = (fs::path(dir) / "model.safetensors").string();
  {
    const SafetensorsFile f = SafetensorsFile::open(model_path);
    std::map<std::string, Tensor> tensors;
    for (const auto& n : f.names()) tensors[n] = f.get(n);
    model.load_state_dict(tensors, /*strict=*/true, model_path);
  }
  const std::string opt_path = (fs::path(dir) / "optimizer.safetensors").string();
  {
    const SafetensorsFile f = SafetensorsFile::open(opt_path);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : f.names()) tensors.emplace_back(n, f.get(n).clone());
    std::map<std::string, int64_t> by_name(st.param_steps.begin(), st.param_steps.end());
    std::vector<int64_t> steps;
    for (const auto& [n, v] : opt.params()) {
      const auto it = by_name.find(n);
      TQ_CHECK(it != by_name.end(), "[checkpoint] {}: field 'param_steps' has no entry for parameter '{}'", state_path, n);
      steps.push_back(it->second);
    }
    TQ_CHECK(by_name.size() == opt.params().size(),
             "[checkpoint] {}: field 'param_steps' lists {} parameters, the model has {}", state_path, by_name.size(),
             opt.params().size());
    opt.load_state(tensors, steps, opt_path);
  }
  return st;
}

}  // namespace tq::train
