// A barrier for the threads of one OpenMP team that spins briefly before it yields, for regions
// that meet many barriers around short work (the engine's decode step: ~80 per token). An
// `#pragma omp barrier` costs ≈ 1.3 µs between 2 threads here with OMP_WAIT_POLICY=active and
// ≈ 13 µs with passive; this one ≈ 0.2–0.4 µs whatever the policy (bench/bench_barrier.cpp).
//
//   SpinBarrier bar(nt);                    // before the region, nt = the team's size
//   #pragma omp parallel num_threads(nt)
//   { ...; bar.wait(); ... }                // every thread of the team, same number of times
//
// Like `omp barrier`, it orders memory: whatever a thread wrote before wait() is visible to every
// thread after it. After kSpinNs of spinning a waiter calls sched_yield between checks, so a team
// larger than the free cores still makes progress (slowly) instead of spinning against itself.
#pragma once

#include <atomic>

namespace tq {

class SpinBarrier {
 public:
  explicit SpinBarrier(int threads);
  SpinBarrier(const SpinBarrier&) = delete;
  SpinBarrier& operator=(const SpinBarrier&) = delete;

  void wait() noexcept;
  int size() const { return n_; }

  static constexpr long kSpinNs = 50'000;  // spin this long, then yield between checks

 private:
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
  int n_;
};

}  // namespace tq
