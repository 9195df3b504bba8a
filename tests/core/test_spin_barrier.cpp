// tq::SpinBarrier: every thread sees every other thread's writes from before a barrier, over many
// rounds (the counter and generation are reused); the idle hook runs only in early arrivals and
// stops when it returns false; a team larger than the cores still finishes (the yield path); one
// thread never waits; a bad size is an error.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/spin_barrier.h"
#include "tests/test_util.h"

namespace {

// Each round every thread writes its slot, meets the barrier, and checks every slot; a second
// barrier keeps the next round's writes from racing the checks. Counts the slots seen stale.
int64_t stale_reads(int threads, int rounds) {
  tq::SpinBarrier bar(threads);
  std::vector<int64_t> slot(static_cast<size_t>(threads) * 16, -1);  // a cache line per thread
  std::atomic<int64_t> stale{0};
  int team = 0;
#pragma omp parallel num_threads(threads)
  {
#pragma omp single
    team = omp_get_num_threads();
    if (team == threads) {
      const int t = omp_get_thread_num();
      for (int r = 0; r < rounds; ++r) {
        slot[static_cast<size_t>(t) * 16] = r;
        bar.wait();
        for (int u = 0; u < threads; ++u) {
          if (slot[static_cast<size_t>(u) * 16] != r) stale.fetch_add(1, std::memory_order_relaxed);
        }
        bar.wait();
      }
    }
  }
  REQUIRE(team == threads);  // OpenMP gave the whole team (the barrier would otherwise hang)
  return stale.load();
}

}  // namespace

TEST_CASE("SpinBarrier orders the team's writes over many rounds") {
  CHECK(stale_reads(2, 20000) == 0);
  CHECK(stale_reads(3, 2000) == 0);
}

TEST_CASE("SpinBarrier: a team larger than the cores finishes (yield path)") {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  CHECK(stale_reads(2 * cores + 1, 50) == 0);
}

TEST_CASE(
    "SpinBarrier::wait(idle): early arrivals run idle() until it is done or the last arrives") {
  tq::SpinBarrier bar(2);
  std::atomic<int> calls{0}, late_calls{0};
  int64_t seen = -1;
  int team = 0;
  int64_t shared = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    team = omp_get_num_threads();
    if (team == 2) {
      if (omp_get_thread_num() == 1) {  // arrives once thread 0 has idled 5 times, after writing
        while (calls.load() < 5) std::this_thread::yield();
        shared = 42;
        bar.wait([&] {
          late_calls.fetch_add(1);
          return true;
        });  // last: never idles
      } else {
        bar.wait([&] { return calls.fetch_add(1) + 1 < 5; });  // idles 5 times, then just waits
        seen = shared;
      }
    }
  }
  REQUIRE(team == 2);
  CHECK(calls.load() == 5);
  CHECK(late_calls.load() == 0);
  CHECK(seen == 42);
}

TEST_CASE("SpinBarrier of one thread returns at once; size must be ≥ 1") {
  tq::SpinBarrier one(1);
  for (int i = 0; i < 3; ++i) one.wait();
  CHECK(one.size() == 1);
  CHECK_THROWS_AS(tq::SpinBarrier(0), tq::Error);
}
