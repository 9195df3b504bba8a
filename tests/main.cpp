// Custom doctest main: reads TQ_THREADS (thread count), TQ_SEED (base seed for random inputs,
// printed so a failure can be replayed) and TQ_CPU (dispatch target, read by core/cpu.cpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "core/cpu.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "tests/test_util.h"

int main(int argc, char** argv) {
  tq::init_logging("warn", "");
  tq::set_num_threads(0);
  if (const char* s = std::getenv("TQ_SEED")) tq::test::set_base_seed(std::strtoull(s, nullptr, 10));
  std::printf("[tq tests] seed %llu, threads %d, cpu target %s\n",
              static_cast<unsigned long long>(tq::test::base_seed()), tq::num_threads(),
              tq::cpu_target_name(tq::cpu_target()));
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
