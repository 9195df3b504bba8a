// GEMM throughput of tq::gemm (f32) and tq::gemm_bf16 on LLaMA-like Linear shapes, next to the
// machine's in-register FMA peak measured in the same run on the same number of threads.
// Linear layout: y[M, N] = x[M, K] * W^T with W stored [N, K] (trans_b). Each shape: warm-up
// (builds and caches the primitive), then the median of up to kMaxReps timed calls within a
// per-shape time budget.
//
//   ./build/bench/bench_gemm            # TQ_THREADS=n to pin the thread count
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/gemm.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace {

constexpr int kWarmup = 2;
constexpr int kMinReps = 3;
constexpr int kMaxReps = 9;
constexpr double kBudgetSeconds = 1.0;  // per shape and dtype, after warm-up

struct BenchShape {
  const char* name;
  int64_t M, N, K;
};

// Median seconds of one call of fn().
template <class F>
double median_seconds(const F& fn) {
  for (int i = 0; i < kWarmup; ++i) fn();
  std::vector<double> times;
  double spent = 0.0;
  while (static_cast<int>(times.size()) < kMaxReps &&
         (static_cast<int>(times.size()) < kMinReps || spent < kBudgetSeconds)) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    times.push_back(s);
    spent += s;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<float> randn(tq::Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = tq::f32_to_bf16(v[i]);
  return r;
}

}  // namespace

int main() {
  try {
    tq::init_logging("warn", "");
    tq::set_num_threads(0);
    const int nthreads = tq::num_threads();
    const tq::CpuFeatures& f = tq::cpu_features();
    const bool bf16 = f.avx512_bf16;

    std::printf("bench_gemm: %s, %d threads, features: %s\n", tq::cpu_model_name().c_str(),
                nthreads, tq::cpu_features_str(f).c_str());
    const tq::bench::Peak peak32 = tq::bench::measure_peak(tq::bench::PeakKind::f32, nthreads);
    std::printf("f32 FMA peak (%s microkernel, %d threads): %.1f GFLOP/s\n", peak32.isa, nthreads,
                peak32.gflops);
    tq::bench::Peak peak16;
    if (bf16) {
      peak16 = tq::bench::measure_peak(tq::bench::PeakKind::bf16, nthreads);
      std::printf("bf16 dot-product peak (%s microkernel, %d threads): %.1f GFLOP/s\n", peak16.isa,
                  nthreads, peak16.gflops);
    } else {
      std::printf("bf16: no AVX512-BF16, gemm_bf16 converts to f32 (not benchmarked)\n");
    }

    const BenchShape shapes[] = {
        {"llama qkvo  2048<-2048", 512, 2048, 2048},
        {"llama up    8192<-2048", 512, 8192, 2048},
        {"llama down  2048<-8192", 512, 2048, 8192},
        {"small attn   384<-384", 512, 384, 384},
        {"small up    1024<-384", 512, 1024, 384},
        {"small down   384<-1024", 512, 384, 1024},
        {"decode qkvo 2048<-2048", 1, 2048, 2048},
        {"decode up   8192<-2048", 1, 8192, 2048},
        {"decode down 2048<-8192", 1, 2048, 8192},
    };
    std::printf("\n%-24s %5s %5s %5s | %9s %8s %7s %7s", "shape (y = x W^T)", "M", "N", "K",
                "f32 ms", "GFLOP/s", "%peak", "W GB/s");
    if (bf16) std::printf(" | %9s %8s %7s %7s", "bf16 ms", "GFLOP/s", "%peak", "W GB/s");
    std::printf("\n");

    tq::Rng rng(42);
    for (const BenchShape& b : shapes) {
      const tq::GemmShape s = tq::gemm_shape(false, true, b.M, b.N, b.K);
      const std::vector<float> x = randn(rng, b.M * b.K), w = randn(rng, b.N * b.K);
      std::vector<float> y(static_cast<size_t>(b.M * b.N));
      const double flop = 2.0 * static_cast<double>(b.M * b.N * b.K);
      const double wbytes = static_cast<double>(b.N * b.K);  // elements of W, read once per call

      const double t32 = median_seconds(
          [&] { tq::gemm(s, 1.0f, x.data(), w.data(), 0.0f, y.data()); });
      std::printf("%-24s %5lld %5lld %5lld | %9.3f %8.1f %6.1f%% %7.1f", b.name,
                  static_cast<long long>(b.M), static_cast<long long>(b.N),
                  static_cast<long long>(b.K), t32 * 1e3, flop / t32 * 1e-9,
                  100.0 * flop / t32 * 1e-9 / peak32.gflops, 4.0 * wbytes / t32 * 1e-9);
      if (bf16) {
        const std::vector<uint16_t> xh = to_bf16(x), wh = to_bf16(w);
        const double t16 = median_seconds(
            [&] { tq::gemm_bf16(s, 1.0f, xh.data(), wh.data(), 0.0f, y.data()); });
        std::printf(" | %9.3f %8.1f %6.1f%% %7.1f", t16 * 1e3, flop / t16 * 1e-9,
                    100.0 * flop / t16 * 1e-9 / peak16.gflops, 2.0 * wbytes / t16 * 1e-9);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    std::printf("\n%%peak: f32 against the f32 FMA peak, bf16 against the bf16 dot-product peak.\n"
                "W GB/s: weight bytes / time (the bound that matters for M = 1 decode).\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
  }
}
