// Module: a registry of named parameters and child modules, in the spirit of torch::nn::Module.
// Names are dotted paths built from registration names, so a LLaMA built from these modules yields
// exactly the HF keys (`model.layers.0.self_attn.q_proj.weight`).
//
//   class Mlp : public Module {
//     Mlp() { up_ = register_module("up_proj", std::make_shared<Linear>(C, F)); }
//   };
//   for (auto& [name, p] : model.named_parameters()) ...;
//   model.load_state_dict(tensors, /*strict=*/true, "model.safetensors");
//
// Parameters are autograd::Var leaves; a Var registered twice (tied weights) is listed once, under
// the first name reached (PyTorch's remove_duplicate). Children live in shared_ptrs so a parent can
// swap one for another of a derived type (Linear -> QuantLinear) with replace_module().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/var.h"
#include "core/error.h"

namespace tq {
class Rng;
}

namespace tq::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual const char* type_name() const { return "Module"; }

  // Depth-first, in registration order: own parameters first, then each child's.
  std::vector<std::pair<std::string, autograd::Var>> named_parameters() const;
  std::vector<autograd::Var> parameters() const;
  int64_t num_parameters() const;  // total elements
  // The parameters' values (shared with the model, not copies), in named_parameters() order.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Copies (converting dtype to the parameter's) every entry into the matching parameter. Checks
  // everything first and reports all missing keys, unexpected keys and shape/dtype mismatches in
  // one tq::Error naming `source`; nothing is modified when it throws. With strict = false missing
  // and unexpected keys are ignored, but mismatched shapes are still errors.
  void load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict = true,
                       const std::string& source = "state_dict");

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }
  // All descendants (this one first, named ""), depth-first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // The descendant at a dotted path ("model.layers.3.mlp"); throws naming the path when absent.
  Module& submodule(const std::string& path);
  // Replaces the direct child `name` (which must exist). Parents look children up by name at
  // forward time, so the new module is used from the next call on.
  void replace_module(const std::string& name, std::shared_ptr<Module> module);

  void zero_grad();
  // Fills parameters with their initial values: recurses into children by default; leaf modules
  // override (Linear/Embedding: normal(0, stddev), RMSNorm: ones).
  virtual void init_parameters(Rng& rng, double stddev);

 protected:
  autograd::Var register_parameter(const std::string& name, autograd::Var var);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // The direct child `name` as an M (dynamic_cast; a wrong type is an error).
  template <class M>
  const M& child(const std::string& name) const {
    const auto* m = dynamic_cast<const M*>(&find_child(name));
    TQ_CHECK(m != nullptr, "[Module] child '{}' of {} is a {}, not the expected type", name,
             type_name(), find_child(name).type_name());
    return *m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  const Module& find_child(const std::string& name) const;
  void collect_parameters(const std::string& prefix,
                          std::vector<std::pair<std::string, autograd::Var>>& out) const;

  std::vector<std::pair<std::string, autograd::Var>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Children named "0", "1", ... (torch.nn.ModuleList), so layer names come out as `layers.N.*`.
class ModuleList : public Module {
 public:
  const char* type_name() const override { return "ModuleList"; }
  void push_back(std::shared_ptr<Module> module);
  int64_t size() const { return static_cast<int64_t>(named_children().size()); }
  template <class M>
  const M& at(int64_t i) const {
    return child<M>(std::to_string(i));
  }
};

}  // namespace tq::nn
