// Read-bandwidth and int8-peak probes (roofline.h). The wide-load and VPDPBUSD loops live in the
// per-ISA kernel files (ternary_kernels_<isa>.cpp); this file is baseline code that times them.
#include "quant/roofline.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "core/cpu.h"
#include "core/error.h"
#include "core/tensor.h"
#include "quant/ternary_kernels.h"

namespace tq::quant {

namespace {

using Clock = std::chrono::steady_clock;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

uint64_t read_stream_baseline(const uint8_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / 8; i += 4) {
    a0 ^= w[i];
    a1 ^= w[i + 1];
    a2 ^= w[i + 2];
    a3 ^= w[i + 3];
  }
  return a0 ^ a1 ^ a2 ^ a3;
}

uint64_t read_stream(const uint8_t* p, size_t n) {
  const CpuFeatures& f = cpu_features();
#ifdef TQ_HAVE_KERNEL_AVX512VNNI
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni && f.fma && f.f16c) {
    return detail::read_stream_avx512(p, n);
  }
#endif
#ifdef TQ_HAVE_KERNEL_AVX2
  if (f.avx2 && f.fma && f.f16c) return detail::read_stream_avx2(p, n);
#endif
  (void)f;
  return read_stream_baseline(p, n);
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(int threads, size_t bytes) : threads_(threads) {
  TQ_CHECK(threads >= 1, "[ReadBandwidthProbe] threads ({}) must be ≥ 1", threads);
  per_ = bytes / 256 / static_cast<size_t>(threads) * 256;  // per-thread slice
  TQ_CHECK(per_ > 0, "[ReadBandwidthProbe] {} bytes is too small for {} threads", bytes, threads);
  buf_ = Tensor::empty({static_cast<int64_t>(per_ * static_cast<size_t>(threads))}, DType::u8);
  uint8_t* p = buf_.data<uint8_t>();
  const size_t per = per_;
#pragma omp parallel num_threads(threads)
  {
    const size_t t = static_cast<size_t>(omp_get_thread_num());
    for (size_t i = 0; i < per; ++i) p[t * per + i] = static_cast<uint8_t>(i * 131 + t);
  }
}

double ReadBandwidthProbe::measure(int reps) const {
  TQ_CHECK(reps >= 1, "[ReadBandwidthProbe] reps ({}) must be ≥ 1", reps);
  const uint8_t* p = buf_.data<uint8_t>();
  const size_t per = per_;
  const int threads = threads_;
  volatile uint64_t sink = 0;
  std::vector<double> gbs;
  for (int rep = 0; rep <= reps; ++rep) {
    uint64_t acc = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(^ : acc)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      acc ^= read_stream(p + t * per, per);
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink ^ acc;
    if (rep > 0) gbs.push_back(static_cast<double>(per * static_cast<size_t>(threads)) / s * 1e-9);  // rep 0: warm-up
  }
  return median(gbs);
}

double read_bandwidth_gbs(int threads, size_t bytes) { return ReadBandwidthProbe(threads, bytes).measure(); }

double int8_dot_peak_gops(int threads, KernelIsa isa) {
  TQ_CHECK(threads >= 1, "[int8_dot_peak_gops] threads ({}) must be ≥ 1", threads);
  const std::vector<KernelIsa> avail = available_isas();
  TQ_CHECK(std::find(avail.begin(), avail.end(), isa) != avail.end(),
           "[int8_dot_peak_gops] ISA {} is not available here", isa_name(isa));
  double (*probe)(int64_t) noexcept = nullptr;
  switch (isa) {
    case KernelIsa::scalar: return 0.0;
#ifdef TQ_HAVE_KERNEL_AVX2
    case KernelIsa::avx2: probe = detail::int8_dot_probe_avx2; break;
#endif
#ifdef TQ_HAVE_KERNEL_AVXVNNI
    case KernelIsa::avxvnni: probe = detail::int8_dot_probe_avxvnni; break;
#endif
#ifdef TQ_HAVE_KERNEL_AVX512VNNI
    case KernelIsa::avx512vnni: probe = detail::int8_dot_probe_avx512vnni; break;
#endif
    default: return 0.0;
  }
  // Calibrate to ~50 ms on one thread, then time all threads together.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = Clock::now();
    probe(iters);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > 0.02 || iters > (int64_t{1} << 34)) {
      iters = static_cast<int64_t>(static_cast<double>(iters) * 0.05 / std::max(s, 1e-6)) + 1;
      break;
    }
    iters *= 4;
  }
  // Each thread times itself in CPU time (CLOCK_THREAD_CPUTIME_ID): a register-only loop runs at
  // the same speed whenever it runs, so time spent descheduled on a shared machine is not counted.
  std::vector<double> gops;
  for (int rep = 0; rep < 5; ++rep) {
    double rate = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate)
    {
      const double c0 = thread_cpu_seconds();
      const double ops = probe(iters);
      rate += ops / std::max(thread_cpu_seconds() - c0, 1e-9) * 1e-9;
    }
    gops.push_back(rate);
  }
  return *std::max_element(gops.begin(), gops.end());  // a peak: noise only lowers it
}

double int8_dot_peak_gops(int threads) { return int8_dot_peak_gops(threads, best_isa()); }

}  // namespace tq::quant
