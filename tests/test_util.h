// Shared helpers for the doctest suites: the base seed (TQ_SEED), a seeded Rng per test, and a
// CHECK that prints a DiffReport when two tensors differ.
#pragma once

#include <cstdint>
#include <string>

#include <doctest/doctest.h>

#include "core/rng.h"
#include "core/tensor.h"

namespace tq::test {

inline uint64_t& base_seed_ref() {
  static uint64_t seed = 1234;
  return seed;
}
inline uint64_t base_seed() { return base_seed_ref(); }
inline void set_base_seed(uint64_t s) { base_seed_ref() = s; }
// A generator for one test: the base seed mixed with a per-test salt.
inline Rng make_rng(uint64_t salt) { return Rng(base_seed() * 0x9E3779B97F4A7C15ull + salt); }

// Path of a file in the source tree (fixtures under tests/reference/data).
inline std::string source_path(const std::string& rel) { return std::string(TQ_SOURCE_DIR) + "/" + rel; }

}  // namespace tq::test

#define TQ_CHECK_CLOSE(a, b, rtol, atol)                               \
  do {                                                                 \
    const ::tq::DiffReport tq_diff_ = ::tq::compare((a), (b), (rtol), (atol)); \
    INFO(#a " vs " #b ": " << tq_diff_.str());                         \
    CHECK(tq_diff_.ok());                                              \
  } while (0)
