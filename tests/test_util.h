// Shared helpers for the doctest suites: the base seed (TQ_SEED), a seeded Rng per test, and a
// CHECK that prints a DiffReport when two tensors differ.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

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

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("tq_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The message of the tq::Error thrown by f ("" when nothing is thrown).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace tq::test

#define TQ_CHECK_CLOSE(a, b, rtol, atol)                               \
  do {                                                                 \
    const ::tq::DiffReport tq_diff_ = ::tq::compare((a), (b), (rtol), (atol)); \
    INFO(#a " vs " #b ": " << tq_diff_.str());                         \
    CHECK(tq_diff_.ok());                                              \
  } while (0)
