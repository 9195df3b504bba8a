// Runtime choice and multi-threaded timing of the FMA-peak kernels (baseline flags only).
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "bench/fma_peak.h"
#include "core/cpu.h"

namespace tq::bench {

#ifndef TQ_BENCH_HAVE_BF16_PEAK
double dpbf16_kernel_avx512(int64_t) { return 0.0; }  // compiler lacks -mavx512bf16
#endif

namespace {

using Kernel = double (*)(int64_t);

// Seconds for every thread to run `iters` iterations (started together), and the FLOPs done.
double timed_run(Kernel kernel, int nthreads, int64_t iters, double* flops) {
  double total = 0.0;
  double t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(nthreads) reduction(+ : total)
  {
#pragma omp barrier
#pragma omp master
    t0 = omp_get_wtime();
    total += kernel(iters);
#pragma omp barrier
#pragma omp master
    t1 = omp_get_wtime();
  }
  *flops = total;
  return t1 - t0;
}

}  // namespace

Peak measure_peak(PeakKind kind, int nthreads) {
  const CpuFeatures& f = cpu_features();
  Peak p;
  Kernel kernel = nullptr;
  if (kind == PeakKind::bf16) {
#ifdef TQ_BENCH_HAVE_BF16_PEAK
    if (f.avx512_bf16) {
      kernel = dpbf16_kernel_avx512;
      p.isa = "avx512_bf16";
    }
#endif
  } else if (f.avx512f) {
    kernel = fma_kernel_avx512;
    p.isa = "avx512";
  } else if (f.avx2 && f.fma) {
    kernel = fma_kernel_avx2;
    p.isa = "avx2";
  }
  if (kernel == nullptr) return p;
  // Calibrate to ~0.15 s per run, then keep the best of three (peak: noise only slows it down).
  double flops = 0.0;
  int64_t iters = 1 << 16;
  double secs = timed_run(kernel, nthreads, iters, &flops);
  while (secs < 0.02) {
    iters *= 4;
    secs = timed_run(kernel, nthreads, iters, &flops);
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * 0.15 / secs));
  for (int rep = 0; rep < 3; ++rep) {
    secs = timed_run(kernel, nthreads, iters, &flops);
    p.gflops = std::max(p.gflops, flops / secs * 1e-9);
  }
  return p;
}

}  // namespace tq::bench
