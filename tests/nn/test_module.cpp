// Tests nn/module.cpp: dotted names, ModuleList numbering, tied-parameter de-duplication,
// load_state_dict's single error listing every problem, and replace_module.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>

#include "nn/layers.h"
#include "nn/module.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::nn;
using tq::test::error_of;

namespace {

struct Block : Module {
  Block() {
    register_module("proj", std::make_shared<Linear>(3, 4));
    register_module("norm", std::make_shared<RMSNorm>(4, 1e-5));
  }
};

struct Net : Module {
  Net() {
    register_parameter("scale", autograd::Var::parameter(Tensor::ones({2}), "scale"));
    auto list = std::make_shared<ModuleList>();
    list->push_back(std::make_shared<Block>());
    list->push_back(std::make_shared<Block>());
    register_module("blocks", list);
  }
};

std::vector<std::string> names_of(const Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, p] : m.named_parameters()) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("named_parameters: dotted names in registration order, ModuleList children 0, 1, ...") {
  Net net;
  const std::vector<std::string> want = {"scale", "blocks.0.proj.weight", "blocks.0.norm.weight",
                                         "blocks.1.proj.weight", "blocks.1.norm.weight"};
  CHECK(names_of(net) == want);
  CHECK(net.num_parameters() == 2 + 2 * (12 + 4));
  const auto sd = net.state_dict();
  REQUIRE(sd.size() == want.size());
  CHECK(sd[1].second.shape() == Shape{4, 3});
  CHECK(&net.submodule("blocks.1.norm") == net.named_modules().back().second);
  CHECK(error_of([&] { net.submodule("blocks.2"); }).find("blocks.2") != std::string::npos);
}

TEST_CASE("named_parameters lists a shared Var once, under its first name") {
  struct Tied : Module {
    Tied() {
      auto w = autograd::Var::parameter(Tensor::zeros({2, 2}), "w");
      register_parameter("a", w);
      register_parameter("b", w);
    }
  } tied;
  CHECK(names_of(tied) == std::vector<std::string>{"a"});
}

TEST_CASE("registering a duplicate or dotted name is an error") {
  struct Bad : Module {
    void dup() {
      register_parameter("w", autograd::Var::parameter(Tensor::zeros({1})));
      register_parameter("w", autograd::Var::parameter(Tensor::zeros({1})));
    }
    void dotted() { register_module("a.b", std::make_shared<Linear>(1, 1)); }
  };
  Bad b;
  CHECK(error_of([&] { b.dup(); }).find("already registered") != std::string::npos);
  CHECK(error_of([&] { b.dotted(); }).find("a.b") != std::string::npos);
}

TEST_CASE("load_state_dict copies values and converts dtype") {
  Net net;
  std::map<std::string, Tensor> sd;
  for (const auto& [n, t] : net.state_dict()) sd[n] = Tensor::full(t.shape(), 0.5, DType::bf16);
  net.load_state_dict(sd, true, "test");
  for (const auto& [n, t] : net.state_dict()) {
    CHECK(t.dtype() == DType::f32);
    CHECK(t.flat(0) == 0.5);
  }
}

TEST_CASE("load_state_dict reports missing, unexpected and mismatched keys in one error") {
  Net net;
  std::map<std::string, Tensor> sd;
  for (const auto& [n, t] : net.state_dict()) sd[n] = Tensor::full(t.shape(), 2.0);
  sd.erase("blocks.0.norm.weight");
  sd.erase("scale");
  sd["blocks.7.proj.weight"] = Tensor::zeros({4, 3});
  sd["blocks.1.proj.weight"] = Tensor::zeros({3, 4});
  const std::string err = error_of([&] { net.load_state_dict(sd, true, "ckpt.safetensors"); });
  INFO(err);
  CHECK(err.find("[load_state_dict] ckpt.safetensors") != std::string::npos);
  CHECK(err.find("2 missing key(s): scale, blocks.0.norm.weight") != std::string::npos);
  CHECK(err.find("1 unexpected key(s): blocks.7.proj.weight") != std::string::npos);
  CHECK(err.find("blocks.1.proj.weight (checkpoint f32[3, 4], model f32[4, 3])") !=
        std::string::npos);
  // Nothing was modified.
  CHECK(net.state_dict()[1].second.flat(0) == 0.0);

  // Non-strict: missing/unexpected are ignored, a shape mismatch is still an error.
  CHECK(error_of([&] { net.load_state_dict(sd, false, "x"); }).find("blocks.1.proj.weight") !=
        std::string::npos);
  sd["blocks.1.proj.weight"] = Tensor::full({4, 3}, 2.0);
  net.load_state_dict(sd, false, "x");
  CHECK(net.state_dict()[1].second.flat(0) == 2.0);
  CHECK(net.state_dict()[0].second.flat(0) == 1.0);  // "scale" was missing: untouched
}

TEST_CASE("load_state_dict never writes through into read-only (mapped) storage") {
  Linear lin(2, 2);
  // A read-only borrowed buffer standing in for a zero-copy safetensors view.
  static float ro[4] = {1, 2, 3, 4};
  auto storage = Storage::borrow(ro, sizeof ro, nullptr, /*read_only=*/true);
  Tensor view(storage, {2, 2}, {2, 1}, 0, DType::f32);
  autograd::Var w = lin.weight();
  w.set_value(view);
  lin.load_state_dict({{"weight", Tensor::zeros({2, 2})}}, true, "rw");
  CHECK(lin.weight().value().flat(3) == 0.0);
  CHECK_FALSE(lin.weight().value().storage()->read_only());
  CHECK(ro[3] == 4.0f);
}

TEST_CASE("replace_module swaps a child that parents look up by name") {
  struct Doubler : Linear {
    Doubler() : Linear(3, 4) {}
    autograd::Var forward(const autograd::Var& x) const override {
      return autograd::Var::constant(Tensor::full({x.size(0), 4}, 2.0));
    }
  };
  Block b;
  b.replace_module("proj", std::make_shared<Doubler>());
  const auto& proj = dynamic_cast<const Linear&>(b.submodule("proj"));
  CHECK(proj.forward(autograd::Var::constant(Tensor::zeros({1, 3}))).value().flat(0) == 2.0);
  CHECK(error_of([&] { b.replace_module("nope", std::make_shared<Doubler>()); }).find("nope") !=
        std::string::npos);
}
