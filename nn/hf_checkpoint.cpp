#include "nn/hf_checkpoint.h"

#include <filesystem>
#include <set>

#include "core/json.h"

namespace tq::nn {

namespace fs = std::filesystem;

namespace {

void add_file_tensors(const SafetensorsFile& f, const std::vector<std::string>& names,
                      std::map<std::string, Tensor>& out) {
  for (const std::string& name : names) {
    const TensorInfo& info = f.info(name);
    TQ_CHECK(info.dtype.has_value() && dtype_is_float(*info.dtype),
             "[load_llama] {}: tensor '{}' has dtype {}; weights must be F32, BF16, F16 or F64",
             f.path(), name, info.st_dtype);
    TQ_CHECK(out.count(name) == 0, "[load_llama] {}: tensor '{}' appears in more than one file",
             f.path(), name);
    out.emplace(name, f.get(name));
  }
}

}  // namespace

HfWeights read_hf_weights(const std::string& dir) {
  HfWeights w;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  if (fs::exists(single_path)) {  // HF prefers the single file too
    const SafetensorsFile f = SafetensorsFile::open(single_path.string());
    add_file_tensors(f, f.names(), w.tensors);
    w.files.push_back(single_path.string());
  } else if (fs::exists(index_path)) {
    const std::string ip = index_path.string();
    const Json index = read_json_file(ip);
    const Json map = json_get<Json>(index, "weight_map", ip);
    TQ_CHECK(map.is_object(), "[load_llama] {}: 'weight_map' must be an object, got {}", ip,
             json_kind(map));
    std::map<std::string, std::vector<std::string>> by_file;  // shard -> tensor names
    for (auto it = map.begin(); it != map.end(); ++it) {
      const auto shard = json_as<std::string>(it.value(), "weight_map." + it.key(), ip);
      TQ_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "..",
               "[load_llama] {}: tensor '{}' maps to bad shard name '{}'", ip, it.key(), shard);
      by_file[shard].push_back(it.key());
    }
    TQ_CHECK(!by_file.empty(), "[load_llama] {}: empty weight_map", ip);
    for (const auto& [shard, names] : by_file) {
      const std::string path = (fs::path(dir) / shard).string();
      TQ_CHECK(fs::exists(path), "[load_llama] {}: shard {} listed in the index does not exist", ip,
               path);
    }
    for (const auto& [shard, names] : by_file) {
      const std::string path = (fs::path(dir) / shard).string();
      const SafetensorsFile f = SafetensorsFile::open(path);
      for (const std::string& name : names) {
        TQ_CHECK(f.contains(name),
                 "[load_llama] {}: index {} puts tensor '{}' here but it is absent", path, ip,
                 name);
      }
      std::set<std::string> listed(names.begin(), names.end());
      for (const std::string& name : f.names()) {
        TQ_CHECK(listed.count(name) != 0,
                 "[load_llama] {}: tensor '{}' is not listed for this shard in {}", path, name, ip);
      }
      add_file_tensors(f, names, w.tensors);
      w.files.push_back(path);
    }
  } else {
    TQ_THROW(
        "[load_llama] {}: neither model.safetensors nor model.safetensors.index.json found — "
        "hint: point at the HF checkpoint directory (the one holding config.json)",
        dir);
  }
  return w;
}

std::unique_ptr<LlamaForCausalLM> load_llama(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  TQ_CHECK(fs::exists(cfg_path),
           "[load_llama] {} does not exist — hint: point at the HF checkpoint "
           "directory",
           cfg_path);
  const LlamaConfig cfg = LlamaConfig::from_json(read_json_file(cfg_path), cfg_path);
  HfWeights w = read_hf_weights(dir);
  for (auto it = w.tensors.begin(); it != w.tensors.end();) {
    const std::string& n = it->first;
    const std::string suffix = ".rotary_emb.inv_freq";
    const bool inv_freq = n.size() >= suffix.size() &&
                          n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    const bool tied_head = cfg.tie_word_embeddings && n == "lm_head.weight";
    it = (inv_freq || tied_head) ? w.tensors.erase(it) : std::next(it);
  }
  auto model = std::make_unique<LlamaForCausalLM>(cfg);
  std::string source = w.files.size() == 1
                           ? w.files.front()
                           : (fs::path(dir) / "model.safetensors.index.json").string();
  model->load_state_dict(w.tensors, /*strict=*/true, source);
  return model;
}

void save_llama(const LlamaForCausalLM& model, const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : model.state_dict()) tensors.emplace_back(name, t.to(DType::f32));
  save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  write_json_file((fs::path(dir) / "config.json").string(), model.config().to_json());
}

}  // namespace tq::nn
