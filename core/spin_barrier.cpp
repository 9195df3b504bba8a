#include "core/spin_barrier.h"

#include <chrono>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/error.h"

namespace tq {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

SpinBarrier::SpinBarrier(int threads) : n_(threads) {
  TQ_CHECK(threads >= 1, "[SpinBarrier] threads ({}) must be ≥ 1", threads);
}

// A central counter with a generation number. The last thread to arrive resets the counter and then
// publishes the next generation with a release store; the others spin on an acquire load of it. The
// acq_rel fetch_add chains every arriving thread's writes into the last one's release, so they all
// happen-before any thread's return. The reset precedes the publication, so a thread that leaves
// early and arrives at the next barrier counts from 0.
void SpinBarrier::wait() noexcept {
  if (n_ == 1) return;
  const unsigned gen = generation_.load(std::memory_order_relaxed);
  if (!arrive(gen)) wait_for(gen);
}

bool SpinBarrier::arrive(unsigned gen) noexcept {
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) != n_ - 1) return false;
  arrived_.store(0, std::memory_order_relaxed);
  generation_.store(gen + 1, std::memory_order_release);
  return true;
}

void SpinBarrier::wait_for(unsigned gen) const noexcept {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  bool yielding = false;
  for (unsigned spins = 1; generation_.load(std::memory_order_acquire) == gen; ++spins) {
    if (yielding) {
      std::this_thread::yield();
    } else {
      cpu_relax();
      if (spins % 256 == 0) {
        yielding = Clock::now() - t0 > std::chrono::nanoseconds(kSpinNs);
      }
    }
  }
}

}  // namespace tq
