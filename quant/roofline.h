// Machine rooflines measured in-process, for the ternary kernel benches and `tqinfer bench`:
// streaming-read bandwidth (what decode GEMV can reach) and int8 dot-product throughput (what prefill
// GEMM can reach). Both run on `threads` OpenMP threads at once and take the median of several reps.
//
//   double bw = read_bandwidth_gbs(2);        // GB/s (1e9 bytes/s), 256 MiB buffer
//   double peak = int8_dot_peak_gops(2);      // GOP/s, 2 ops per u8·i8 multiply-add, best ISA
#pragma once

#include <cstddef>

#include "core/tensor.h"
#include "quant/ternary_pack.h"

namespace tq::quant {

// Reads a `bytes` buffer (first-touched by the same threads; rounded down to 256-byte multiples)
// with wide loads, each thread its contiguous slice; median of 9 reps after a warm-up.
double read_bandwidth_gbs(int threads, size_t bytes = size_t{256} << 20);

// The same probe with its buffer kept, to measure again and again (`tqinfer bench` measures it next
// to every repetition, since this machine's bandwidth drifts between minutes).
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(int threads, size_t bytes = size_t{256} << 20);  // allocates, first-touches
  double measure(int reps = 9) const;  // GB/s, median of reps after a warm-up pass
  int threads() const { return threads_; }

 private:
  int threads_;
  size_t per_ = 0;
  Tensor buf_;
};
// Register-only VPDPBUSD chains (AVX-512 VNNI zmm, AVX-VNNI ymm) or VPMADDUBSW+VPADDW (AVX2) on every
// thread, each timed in thread CPU time (time descheduled on a shared machine is not counted); best
// of 5 runs of ~50 ms. Counts 2 ops per multiply-add. 0 for KernelIsa::scalar.
double int8_dot_peak_gops(int threads);                 // on best_isa()
double int8_dot_peak_gops(int threads, KernelIsa isa);  // on a given (available) ISA

}  // namespace tq::quant
