// Packed ternary kernels on LLaMA-3.2-1B linear shapes [out × in] = 2048×2048 (q/o), 8192×2048
// (gate/up), 2048×8192 (down), 512×2048 (k/v): decode GEMV (T = 1) and prefill GEMM (T = 512) per
// kernel ISA, on 1 and 2 threads, medians over reps. GEMV cycles through enough copies of the weight
// (≥ 256 MiB) that it streams from DRAM as a whole model does, and is reported in GB/s against
// read_bandwidth_gbs measured in the same run; GEMM in int8 GOP/s (2 per multiply-add) against
// int8_dot_peak_gops of the best ISA, same run.
//
//   ./build/release/bench/bench_ternary [reps=5] [isa=all|scalar|avx2|avxvnni|avx512vnni] [max_threads=2]
// The scalar reference runs GEMV only (its GEMM would take minutes). Times are wall-clock medians; on
// 1 thread the same loops are also timed in thread CPU time ("cpu-time" columns), which leaves out time
// spent descheduled when the machine is shared (it does not remove cache or bandwidth sharing).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "quant/act_quant.h"
#include "quant/roofline.h"
#include "quant/ternary_pack.h"

namespace {

using tq::quant::KernelIsa;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt_num(double v, const char* f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

tq::quant::PackedTernary random_weight(int64_t rows, int64_t cols, tq::Rng& rng) {
  tq::Tensor codes = tq::Tensor::empty({rows, cols}, tq::DType::i8);
  int8_t* c = codes.data<int8_t>();
  for (int64_t k = 0; k < rows * cols; ++k) c[k] = static_cast<int8_t>(static_cast<int>(rng.below(3)) - 1);
  return tq::quant::pack_ternary(codes, tq::Tensor::uniform({rows, cols / 128}, rng, 0.01, 0.1),
                                 tq::Tensor::uniform({rows}, rng, -0.1, 0.1));
}

tq::quant::PackedTernary clone(const tq::quant::PackedTernary& w) {
  tq::quant::PackedTernary c = w;
  c.codes = w.codes.clone();
  c.scales = w.scales.clone();
  c.bias = w.bias.clone();
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    tq::init_logging("warn", "");
    const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
    const std::string only = argc > 2 ? argv[2] : "all";
    const int max_threads = argc > 3 ? std::max(1, std::atoi(argv[3])) : 2;
    std::printf("# bench_ternary — %s; features: %s; %d cores visible\n", tq::cpu_model_name().c_str(),
                tq::cpu_features_str(tq::cpu_features()).c_str(), omp_get_num_procs());
    std::vector<double> bw(max_threads + 1), peak(max_threads + 1);
    for (int th = 1; th <= max_threads; ++th) {
      bw[th] = tq::quant::read_bandwidth_gbs(th);
      peak[th] = tq::quant::int8_dot_peak_gops(th);
      std::printf("# roofline %d thread(s): read %.1f GB/s; int8 peak (%s) %.0f GOP/s", th, bw[th],
                  tq::quant::kernel_name(tq::quant::best_isa()), peak[th]);
      for (KernelIsa isa : tq::quant::available_isas()) {
        if (isa != KernelIsa::scalar && isa != tq::quant::best_isa()) {
          std::printf("; %s %.0f", tq::quant::isa_name(isa), tq::quant::int8_dot_peak_gops(th, isa));
        }
      }
      std::printf("\n");
    }
    std::printf("\n| kernel | shape out×in | thr | GEMV µs | GEMV GB/s | of read BW | cpu-time GB/s | GEMM T=512 ms | GOP/s | of int8 peak | cpu-time GOP/s (of peak) |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{2048, 2048}, {8192, 2048}, {2048, 8192}, {512, 2048}};
    tq::Rng rng(42);
    for (auto [rows, cols] : shapes) {
      const tq::quant::PackedTernary w = random_weight(rows, cols, rng);
      const size_t stream_bytes = size_t{256} << 20;
      std::vector<tq::quant::PackedTernary> copies;
      const size_t ncopies = std::max<size_t>(1, stream_bytes / w.bytes());
      for (size_t k = 0; k < ncopies; ++k) copies.push_back(clone(w));
      const int64_t T = 512;
      const tq::Tensor xf = tq::Tensor::randn({T, cols}, rng);
      tq::quant::QuantizedActs x1, xT;
      tq::quant::quantize_acts(xf.data<float>(), 1, cols, tq::quant::ActScale::per_token, x1);
      tq::quant::quantize_acts(xf.data<float>(), T, cols, tq::quant::ActScale::per_token, xT);
      std::vector<float> y(static_cast<size_t>(T * rows));
      for (KernelIsa isa : tq::quant::available_isas()) {
        if (only != "all" && only != tq::quant::isa_name(isa)) continue;
        for (int th = 1; th <= max_threads; ++th) {
          tq::set_num_threads(th);
          // GEMV over the copies (the scalar kernel: a 16 MiB subset).
          const size_t n = isa == KernelIsa::scalar ? std::max<size_t>(1, (size_t{16} << 20) / w.bytes()) : ncopies;
          std::vector<double> tv, cv;
          for (int r = 0; r < reps + 1; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = thread_cpu_seconds();
            for (size_t k = 0; k < n; ++k) tq::quant::ternary_gemm(copies[k], x1, y.data(), rows, isa);
            if (r > 0) tv.push_back(seconds_since(t0) / static_cast<double>(n));
            if (r > 0) cv.push_back((thread_cpu_seconds() - c0) / static_cast<double>(n));
          }
          const double gemv = median(tv);
          // 1 thread: the same loop timed in thread CPU time (time descheduled not counted).
          const double gemv_cpu = th == 1 ? median(cv) : 0.0;
          const double gbs = static_cast<double>(w.bytes() + static_cast<size_t>(cols)) / gemv * 1e-9;
          if (isa == KernelIsa::scalar) {
            std::printf("| %s | %lld×%lld | %d | %.1f | %.2f | %.3f | %s | – | – | – | – |\n", tq::quant::isa_name(isa),
                        static_cast<long long>(rows), static_cast<long long>(cols), th, gemv * 1e6, gbs, gbs / bw[th],
                        th == 1 ? fmt_num(gbs * gemv / gemv_cpu, "%.2f").c_str() : "–");
            continue;
          }
          std::vector<double> tg, cg;
          for (int r = 0; r < reps + 1; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = thread_cpu_seconds();
            tq::quant::ternary_gemm(w, xT, y.data(), rows, isa);
            if (r > 0) tg.push_back(seconds_since(t0));
            if (r > 0) cg.push_back(thread_cpu_seconds() - c0);
          }
          const double gemm = median(tg);
          const double gemm_cpu = th == 1 ? median(cg) : 0.0;
          const double gops = 2.0 * static_cast<double>(rows * cols * T) / gemm * 1e-9;
          const std::string cpu_gops =
              th == 1 ? fmt_num(gops * gemm / gemm_cpu, "%.0f") + " (" + fmt_num(gops * gemm / gemm_cpu / peak[th], "%.2f") + ")"
                      : "–";
          std::printf("| %s | %lld×%lld | %d | %.1f | %.2f | %.3f | %s | %.2f | %.0f | %.3f | %s |\n",
                      tq::quant::isa_name(isa), static_cast<long long>(rows), static_cast<long long>(cols), th,
                      gemv * 1e6, gbs, gbs / bw[th], th == 1 ? fmt_num(gbs * gemv / gemv_cpu, "%.2f").c_str() : "–",
                      gemm * 1e3, gops, gops / peak[th], cpu_gops.c_str());
          std::fflush(stdout);
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ternary: %s\n", e.what());
    return 1;
  }
}
