// Basic ops and fused RMSNorm/SwiGLU against the PyTorch fixtures in tests/reference/data, written by
// tests/reference/gen_reference.py (inputs f32; reference outputs/gradients computed by torch in f64;
// gradients are of sum(y * grad_y)). Every case runs twice:
//   f32 path: rtol 1e-4, atol 2e-5 (float32 rounding through a few reductions)
//   f64 path (inputs widened): rtol 1e-9, atol 1e-10 (only summation order differs from torch)
// (Fused attention, RoPE and cross-entropy have their own golden tests beside their op tests.)
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <string>

#include "autograd/ops.h"
#include "autograd/rms_norm.h"
#include "autograd/swiglu.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::autograd;

namespace {

struct Golden {
  std::string file;
  std::vector<std::string> inputs;      // float inputs, in the order fn takes them
  std::vector<std::string> grads;       // expected gradient of each input ("" = none)
  std::function<Var(const std::vector<Var>&, const SafetensorsFile&)> fn;
};

void run_golden(const Golden& c) {
  const SafetensorsFile f = SafetensorsFile::open(test::source_path("tests/reference/data/" + c.file));
  for (DType dt : {DType::f32, DType::f64}) {
    const double rtol = dt == DType::f32 ? 1e-4 : 1e-9, atol = dt == DType::f32 ? 2e-5 : 1e-10;
    INFO(c.file << " in " << dtype_name(dt));
    std::vector<Var> vs;
    for (const std::string& n : c.inputs) vs.push_back(Var::parameter(f.get(n).to(dt).clone(), n));
    Tape tape;
    RecordScope rec(tape);
    const Var y = c.fn(vs, f);
    TQ_CHECK_CLOSE(y.value(), f.get("y"), rtol, atol);
    tape.backward(y, f.get("grad_y").to(dt));
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      if (c.grads[i].empty()) continue;
      INFO("gradient " << c.grads[i]);
      REQUIRE(vs[i].has_grad());
      TQ_CHECK_CLOSE(vs[i].grad(), f.get(c.grads[i]), rtol, atol);
    }
  }
}

double meta(const SafetensorsFile& f, const std::string& key) { return std::stod(f.metadata().at(key)); }

}  // namespace

TEST_CASE("torch golden: rms_norm") {
  for (const char* file : {"rms_norm.safetensors", "rms_norm_eps1e-6.safetensors"}) {
    run_golden({file, {"x", "w"}, {"grad_x", "grad_w"},
                [](const std::vector<Var>& v, const SafetensorsFile& f) { return rms_norm(v[0], v[1], meta(f, "eps")); }});
  }
}

TEST_CASE("torch golden: swiglu, silu, linear, softmax, log_softmax, embedding") {
  run_golden({"swiglu.safetensors", {"gate", "up"}, {"grad_gate", "grad_up"},
              [](const std::vector<Var>& v, const SafetensorsFile&) { return swiglu(v[0], v[1]); }});
  run_golden({"silu.safetensors", {"x"}, {"grad_x"},
              [](const std::vector<Var>& v, const SafetensorsFile&) { return silu(v[0]); }});
  run_golden({"linear.safetensors", {"x", "w"}, {"grad_x", "grad_w"},
              [](const std::vector<Var>& v, const SafetensorsFile&) { return linear(v[0], v[1]); }});
  run_golden({"softmax.safetensors", {"x"}, {"grad_x"},
              [](const std::vector<Var>& v, const SafetensorsFile&) { return softmax(v[0]); }});
  run_golden({"log_softmax.safetensors", {"x"}, {"grad_x"},
              [](const std::vector<Var>& v, const SafetensorsFile&) { return log_softmax(v[0]); }});
  run_golden({"embedding.safetensors", {"weight"}, {"grad_weight"},
              [](const std::vector<Var>& v, const SafetensorsFile& f) { return embedding(v[0], f.get("ids")); }});
}
