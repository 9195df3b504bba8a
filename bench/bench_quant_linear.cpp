// Forward + backward time of one QuantLinear (f32, x requires a gradient, so dX and dW are both
// computed) at 2048×2048 and 8192×2048 [out×in] with T tokens, for the methods none, absmean and
// tequila (group 128, λ 1e-3): median over reps, and the tequila/none and absmean/none ratios
// (target for tequila: ≤ 1.15).
//
//   ./build/bench/bench_quant_linear [T=512] [reps=15]
// TQ_THREADS=n pins the thread count.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "quant/quant.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median seconds of one fwd+bwd pass (after 2 warm-up passes).
double time_layer(tq::quant::QuantLinear& layer, tq::autograd::Var x, const tq::Tensor& g,
                  int reps) {
  std::vector<double> ts;
  for (int r = 0; r < reps + 2; ++r) {
    layer.zero_grad();
    x.zero_grad();
    auto t0 = std::chrono::steady_clock::now();
    {
      tq::autograd::Tape tape;
      tq::autograd::RecordScope rec(tape);
      tq::autograd::Var y = layer.forward(x);
      tape.backward(y, g);
    }
    const double dt = seconds_since(t0);
    if (r >= 2) ts.push_back(dt);
  }
  return median(ts);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    tq::init_logging("warn", "");
    tq::set_num_threads(0);
    const int64_t T = argc > 1 ? std::atoll(argv[1]) : 512;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 15;
    std::printf("bench_quant_linear: T=%lld reps=%d threads=%d (median fwd+bwd, f32, group 128)\n",
                static_cast<long long>(T), reps, tq::num_threads());
    const int64_t shapes[][2] = {{2048, 2048}, {8192, 2048}};  // [out, in]
    for (const auto& sh : shapes) {
      const int64_t out = sh[0], in = sh[1];
      tq::Rng rng(42);
      tq::autograd::Var x = tq::autograd::Var::parameter(tq::Tensor::randn({T, in}, rng));
      const tq::Tensor g = tq::Tensor::randn({T, out}, rng);
      const tq::Tensor w = tq::Tensor::randn({out, in}, rng, 0.02);
      {  // the quantization pass alone (codes, α, dead mask, c), for the overhead breakdown
        std::vector<double> ts;
        for (int r = 0; r < reps + 2; ++r) {
          auto t0 = std::chrono::steady_clock::now();
          const tq::quant::TernaryView v = tq::quant::quantize_ternary(
              w, tq::quant::Quantizer::absmean, tq::quant::Granularity::group, 128, 1e-3);
          if (r >= 2) ts.push_back(seconds_since(t0));
        }
        std::printf("  %5lldx%-5lld quantize_ternary alone %8.3f ms\n", static_cast<long long>(out),
                    static_cast<long long>(in), median(ts) * 1e3);
      }
      double t_none = 0;
      for (const char* method : {"none", "absmean", "tequila"}) {
        tq::quant::QuantConfig cfg;
        cfg.method = method;
        tq::quant::QuantLinear layer(in, out, cfg);
        tq::autograd::Var wv = layer.weight();  // a handle on the same parameter
        wv.set_value(w);
        const double t = time_layer(layer, x, g, reps);
        if (std::string(method) == "none") t_none = t;
        const double gflop = 3.0 * 2.0 * static_cast<double>(T * out * in) * 1e-9;
        std::printf("  %5lldx%-5lld %-8s %8.3f ms  %7.1f GFLOP/s  ratio vs none %.3f\n",
                    static_cast<long long>(out), static_cast<long long>(in), method, t * 1e3,
                    gflop / t, t / t_none);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_quant_linear: %s\n", e.what());
    return 1;
  }
  return 0;
}
