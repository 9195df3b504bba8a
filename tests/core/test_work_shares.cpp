// tq::WorkShares: one thread alone takes its own share front to back (halving claims), then the
// other's from the back; a team claiming concurrently covers every unit exactly once, run after
// run (slots reset by the step number), with ragged n and chunk sizes; argument errors.
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/work_shares.h"
#include "tests/test_util.h"

TEST_CASE("WorkShares: own share in order, then the other's from the back") {
  tq::WorkShares ws(2);
  std::vector<std::pair<int64_t, int64_t>> got;
  int64_t b = 0, e = 0;
  while (ws.next(0, 10, 3, 7, b, e)) got.emplace_back(b, e);
  // Thread 0's share is [0, 5): 3 + 2 from the front; then thread 1's [5, 10) from the back.
  const std::vector<std::pair<int64_t, int64_t>> want = {{0, 3}, {3, 5}, {7, 10}, {5, 7}};
  CHECK(got == want);
  CHECK_FALSE(ws.next(1, 10, 3, 7, b, e));  // all taken in this run
  // The next run starts afresh from the static shares.
  REQUIRE(ws.next(1, 10, 3, 8, b, e));
  CHECK(b == 5);
  CHECK(e == 8);
}

TEST_CASE("WorkShares: own claims take half of what is left, in whole chunks") {
  tq::WorkShares ws(2);
  std::vector<int64_t> sizes;
  int64_t b = 0, e = 0, at = 0;
  while (ws.next(0, 1000, 16, 1, b, e) && b < 500) {
    CHECK(b == at);  // in order from the front of [0, 500)
    at = e;
    sizes.push_back(e - b);
  }
  // Left 500: half 250 → 240 (15 chunks); left 260 → 128; 132 → 64; 68 → 32; 36 → 16; 20 →
  // half is under a chunk, so one chunk (16); then the last 4. The loop stopped at the first steal,
  // which takes one chunk from the back of thread 1's share [500, 1000).
  const std::vector<int64_t> want = {240, 128, 64, 32, 16, 16, 4};
  CHECK(sizes == want);
  CHECK(b == 984);
  CHECK(e == 1000);
}

TEST_CASE("WorkShares: a concurrent team covers every unit exactly once per run") {
  for (const int nt : {2, 3}) {
    for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{128256}}) {
      for (const int64_t chunk : {int64_t{1}, int64_t{16}, int64_t{256}}) {
        tq::WorkShares ws(nt);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        bool full_team = true;
        for (uint64_t step = 1; step <= 3; ++step) {
          for (auto& h : hits) h.store(0);
#pragma omp parallel num_threads(nt)
          {
            if (omp_get_num_threads() != nt) full_team = false;
            const int t = omp_get_thread_num();
            int64_t b = 0, e = 0;
            while (ws.next(t, n, chunk, step, b, e)) {
              for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
            }
          }
          int64_t wrong = 0;
          for (auto& h : hits) wrong += h.load() != 1;
          CHECK_MESSAGE(wrong == 0, "nt ", nt, " n ", n, " chunk ", chunk, " step ", step);
        }
        CHECK(full_team);
      }
    }
  }
}

TEST_CASE("WorkShares: threads must be ≥ 1") {
  CHECK_THROWS_AS(tq::WorkShares(0), tq::Error);
}
