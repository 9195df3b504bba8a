// OpenMP helpers. One thread-count setting for the whole library: set_num_threads(n) (0 = all
// cores, or TQ_THREADS from the environment). parallel_for splits [0, n) into static contiguous
// chunks; the body must not throw (validate before calling), see Note [No throw in parallel regions].
#pragma once

#include <cstdint>

#include <omp.h>

namespace tq {

// Note [No throw in parallel regions]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// An exception escaping an OpenMP region terminates the program. Kernels validate their inputs with
// TQ_CHECK before the region and use only TQ_DEBUG_ASSERT inside it.

void set_num_threads(int n);  // n <= 0: TQ_THREADS if set, else every core
int num_threads();
int thread_index();  // 0 outside a parallel region

// Calls body(begin, end) on disjoint static chunks covering [0, n); runs serially when n < grain.
template <class F>
void parallel_for(int64_t n, int64_t grain, const F& body) {
  if (n <= 0) return;
  if (n < grain || num_threads() == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t t = omp_get_thread_num();
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = t * chunk;
    const int64_t e = b + chunk < n ? b + chunk : n;
    if (b < e) body(b, e);
  }
}

}  // namespace tq
