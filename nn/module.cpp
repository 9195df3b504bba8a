#include "nn/module.h"

#include <set>
#include <unordered_set>

namespace tq::nn {

using autograd::Var;

autograd::Var Module::register_parameter(const std::string& name, Var var) {
  TQ_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "[Module::register_parameter] bad name '{}' (non-empty, no dots)", name);
  TQ_CHECK(var.defined(), "[Module::register_parameter] {}: undefined Var", name);
  for (const auto& [n, p] : params_) {
    TQ_CHECK(n != name, "[Module::register_parameter] {} already registered in {}", name,
             type_name());
  }
  for (const auto& [n, c] : children_) {
    TQ_CHECK(n != name, "[Module::register_parameter] {} is already a child of {}", name,
             type_name());
  }
  params_.emplace_back(name, var);
  return var;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  TQ_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "[Module::register_module] bad name '{}' (non-empty, no dots)", name);
  TQ_CHECK(module != nullptr, "[Module::register_module] {}: null module", name);
  for (const auto& [n, c] : children_) {
    TQ_CHECK(n != name, "[Module::register_module] {} already registered in {}", name, type_name());
  }
  for (const auto& [n, p] : params_) {
    TQ_CHECK(n != name, "[Module::register_module] {} is already a parameter of {}", name,
             type_name());
  }
  children_.emplace_back(name, std::move(module));
}

const Module& Module::find_child(const std::string& name) const {
  for (const auto& [n, c] : children_) {
    if (n == name) return *c;
  }
  TQ_THROW("[Module] {} has no child '{}'", type_name(), name);
}

void Module::collect_parameters(const std::string& prefix,
                                std::vector<std::pair<std::string, Var>>& out) const {
  for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
  for (const auto& [n, c] : children_) c->collect_parameters(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> all;
  collect_parameters("", all);
  std::vector<std::pair<std::string, Var>> out;
  std::unordered_set<const autograd::VarImpl*> seen;
  for (auto& [n, p] : all) {
    if (seen.insert(p.impl()).second) out.emplace_back(std::move(n), std::move(p));
  }
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [n, p] : named_parameters()) out.push_back(p);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [n, p] : named_parameters()) out.emplace_back(n, p.value());
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict,
                             const std::string& source) {
  const auto params = named_parameters();
  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> known;
  for (const auto& [name, p] : params) {
    known.insert(name);
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& t = it->second;
    if (!t.defined() || t.shape() != p.shape() || !dtype_is_float(t.dtype())) {
      mismatched.push_back(fmt::format("{} (checkpoint {}, model {})", name,
                                       t.defined() ? t.str() : "undefined", p.value().str()));
    }
  }
  for (const auto& [name, t] : tensors) {
    if (known.count(name) == 0) unexpected.push_back(name);
  }
  const bool fail = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    std::string msg = fmt::format("[load_state_dict] {}:", source);
    auto list = [&msg](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg += fmt::format(" {} {} key(s): ", names.size(), what);
      for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
      msg += ";";
    };
    list("missing", strict ? missing : std::vector<std::string>{});
    list("unexpected", strict ? unexpected : std::vector<std::string>{});
    list("shape/dtype-mismatched", mismatched);
    bool lm_head_missing = false;
    for (const auto& n : missing) lm_head_missing = lm_head_missing || n == "lm_head.weight";
    bool lm_head_unexpected = false;
    for (const auto& n : unexpected)
      lm_head_unexpected = lm_head_unexpected || n == "lm_head.weight";
    if (strict && lm_head_missing) {
      msg += " — hint: set tie_word_embeddings if embed_tokens is shared with the LM head";
    } else if (strict && lm_head_unexpected) {
      msg += " — hint: the checkpoint has its own LM head; set tie_word_embeddings to false";
    } else {
      msg += " — hint: check that the config matches the checkpoint";
    }
    TQ_THROW("{}", msg);
  }
  for (const auto& [name, p] : params) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) continue;
    Tensor dst = p.value();
    if (dst.storage()->read_only()) {  // never write through into a mapped file
      dst = Tensor::empty(dst.shape(), dst.dtype());
      dst.copy_from(it->second);
      Var(p).set_value(dst);
    } else {
      dst.copy_from(it->second);
    }
  }
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, c] : children_) {
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  }
  return out;
}

Module& Module::submodule(const std::string& path) {
  Module* m = this;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    Module* next = nullptr;
    for (auto& [n, c] : m->children_) {
      if (n == part) next = c.get();
    }
    TQ_CHECK(next != nullptr, "[Module::submodule] no module '{}' (at '{}')", path, part);
    m = next;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return *m;
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  TQ_CHECK(module != nullptr, "[Module::replace_module] {}: null module", name);
  for (auto& [n, c] : children_) {
    if (n == name) {
      c = std::move(module);
      return;
    }
  }
  TQ_THROW("[Module::replace_module] {} has no child '{}'", type_name(), name);
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

void Module::init_parameters(Rng& rng, double stddev) {
  for (auto& [n, c] : children_) c->init_parameters(rng, stddev);
}

void ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(size()), std::move(module));
}

}  // namespace tq::nn
