// Seeded random numbers whose state can be saved and restored (checkpoints resume bit for bit).
// xoshiro256** seeded through splitmix64; normals by Box-Muller computed in double, so a seed gives
// the same stream on every platform and compiler (std::normal_distribution does not promise that).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace tq {

// splitmix64's step as a stateless mixer: mix64(x) is the splitmix64 output for state x. Derives
// well-spread seeds from (seed, epoch, block, ...) combinations.
uint64_t mix64(uint64_t x);

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);

  uint64_t next_u64();
  double uniform();                       // [0, 1) with 53 random bits
  double uniform(double lo, double hi);   // [lo, hi)
  double normal();                        // N(0, 1)
  uint64_t below(uint64_t n);             // uniform integer in [0, n), unbiased

  // State: the four xoshiro words plus the cached Box-Muller value.
  struct State {
    std::array<uint64_t, 4> s{};
    bool has_spare = false;
    double spare = 0.0;
  };
  State state() const;
  void set_state(const State& state);
  std::string state_string() const;           // hex text, for JSON trainer state
  void set_state_string(const std::string& text);  // throws tq::Error on malformed text

 private:
  State st_;
};

}  // namespace tq
