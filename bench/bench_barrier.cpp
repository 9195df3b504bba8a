// Cost of one barrier between 2+ threads around ~0.6 µs of work, as the engine's decode step meets
// them (docs/infer.md, "Threading"): `#pragma omp barrier` and tq::SpinBarrier (which the engine
// uses), median over 5 runs of 20,000 barriers, minus the same loop without barriers. Run it under
// both wait policies (SpinBarrier ignores them):
//
//   OMP_WAIT_POLICY=passive ./build/release/bench/bench_barrier [threads=2]
//   OMP_WAIT_POLICY=active  ./build/release/bench/bench_barrier [threads=2]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/spin_barrier.h"

namespace {

enum class Kind { none, omp, spin };

double run(int threads, int n, Kind kind) {
  tq::SpinBarrier bar(threads);
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    for (int i = 0; i < n; ++i) {
      volatile double x = 0;
      for (int k = 0; k < 2000; ++k) x = x + k;
      if (kind == Kind::omp) {
#pragma omp barrier
      } else if (kind == Kind::spin) {
        bar.wait();
      }
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2;
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const int n = 20000;
  std::vector<double> omp, spin;
  for (int rep = 0; rep < 5; ++rep) {  // the three loops alternate, so drifts hit them alike
    const double none = run(threads, n, Kind::none);
    omp.push_back((run(threads, n, Kind::omp) - none) / n * 1e6);
    spin.push_back((run(threads, n, Kind::spin) - none) / n * 1e6);
  }
  for (auto* v : {&omp, &spin}) std::sort(v->begin(), v->end());
  std::printf("threads %d, OMP_WAIT_POLICY=%s, us per barrier (median of 5; min, max):\n", threads,
              policy != nullptr ? policy : "(unset)");
  std::printf("  omp barrier  %.2f (%.2f, %.2f)\n", omp[2], omp.front(), omp.back());
  std::printf("  SpinBarrier  %.2f (%.2f, %.2f)\n", spin[2], spin.front(), spin.back());
  return 0;
}
