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
  // The same, but a thread that has to wait first calls idle() until it returns false or the last
  // thread arrives (whichever comes first): useful work for early arrivals, e.g. pulling the next
  // op's weights into cache (Note [Warm while waiting] in infer/engine.cpp). idle() must be short
  // (≪ µs).
  template <class F>
  void wait(F&& idle) noexcept {
    if (n_ == 1) return;
    const unsigned gen = generation_.load(std::memory_order_relaxed);
    if (arrive(gen)) return;
    while (generation_.load(std::memory_order_acquire) == gen && idle()) {
    }
    wait_for(gen);
  }
  int size() const { return n_; }

  static constexpr long kSpinNs = 50'000;  // spin this long, then yield between checks

 private:
  bool arrive(unsigned gen) noexcept;  // true for the last thread, which has released the rest
  void wait_for(unsigned gen) const noexcept;  // until the generation moves past gen

  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<unsigned> generation_{0};
  int n_;
};

}  // namespace tq
