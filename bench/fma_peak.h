// Machine peak for the bench programs: in-register FMA throughput measured by microkernels that
// run independent dependency chains of vfmadd (f32) or vdpbf16ps (bf16 dot products) with no
// memory traffic. Each kernel lives in its own translation unit compiled with that ISA's flags;
// measure_peak() picks one from tq::cpu_features() and runs it on every OpenMP thread at once.
//
//   tq::bench::Peak p = tq::bench::measure_peak(tq::bench::PeakKind::f32, tq::num_threads());
//   std::printf("%.1f GFLOP/s (%s)\n", p.gflops, p.isa);
#pragma once

#include <cstdint>

namespace tq::bench {

// Per-ISA kernels: run `iters` iterations on the calling thread and return the FLOPs executed
// (2 per multiply-add). Call only when the CPU has the ISA.
double fma_kernel_avx2(int64_t iters);
double fma_kernel_avx512(int64_t iters);
double dpbf16_kernel_avx512(int64_t iters);

enum class PeakKind { f32, bf16 };

struct Peak {
  double gflops = 0.0;       // all threads together; 0 when no kernel fits this CPU
  const char* isa = "none";  // kernel used: "avx512", "avx2", "avx512_bf16" or "none"
};

// Best of a few ~0.15 s runs on `nthreads` OpenMP threads.
Peak measure_peak(PeakKind kind, int nthreads);

}  // namespace tq::bench
