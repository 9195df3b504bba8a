// Cost of one OpenMP barrier between 2+ threads around ~0.6 µs of work, as the engine's decode step
// meets them (docs/infer.md, "Threading"): median over 5 runs of 20,000 barriers, minus the same
// loop without barriers. Run it under both wait policies:
//
//   OMP_WAIT_POLICY=passive ./build/release/bench/bench_barrier [threads=2]
//   OMP_WAIT_POLICY=active  ./build/release/bench/bench_barrier [threads=2]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double run(int threads, int n, bool barrier) {
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    for (int i = 0; i < n; ++i) {
      volatile double x = 0;
      for (int k = 0; k < 2000; ++k) x = x + k;
      if (barrier) {
#pragma omp barrier
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
  std::vector<double> per;
  for (int rep = 0; rep < 5; ++rep) {
    const double with = run(threads, n, true), without = run(threads, n, false);
    per.push_back((with - without) / n * 1e6);
  }
  std::sort(per.begin(), per.end());
  std::printf(
      "threads %d, OMP_WAIT_POLICY=%s: %.2f us per barrier (median of 5; min %.2f, max %.2f)\n",
      threads, policy != nullptr ? policy : "(unset)", per[2], per.front(), per.back());
  return 0;
}
