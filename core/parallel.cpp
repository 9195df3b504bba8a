#include "core/parallel.h"

#include <cstdlib>

#include "core/error.h"

namespace tq {

void set_num_threads(int n) {
  if (n <= 0) {
    n = omp_get_num_procs();
    if (const char* env = std::getenv("TQ_THREADS")) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      TQ_CHECK(end != env && *end == '\0' && v > 0 && v <= 4096,
               "[threads] TQ_THREADS='{}' is not a positive integer", env);
      n = static_cast<int>(v);
    }
  }
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

int thread_index() { return omp_get_thread_num(); }

}  // namespace tq
