#include "core/rng.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace tq {

uint64_t mix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  const uint64_t z = mix64(x);
  x += 0x9E3779B97F4A7C15ull;
  return z;
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& w : st_.s) w = splitmix64(x);
}

uint64_t Rng::next_u64() {
  auto& s = st_.s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

double Rng::normal() {
  if (st_.has_spare) {
    st_.has_spare = false;
    return st_.spare;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * M_PI * u2;
  st_.spare = r * std::sin(theta);
  st_.has_spare = true;
  return r * std::cos(theta);
}

uint64_t Rng::below(uint64_t n) {
  TQ_CHECK(n > 0, "[Rng::below] n must be positive");
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = next_u64();
  while (x >= limit) x = next_u64();
  return x % n;
}

Rng::State Rng::state() const { return st_; }
void Rng::set_state(const State& state) { st_ = state; }

std::string Rng::state_string() const {
  uint64_t spare_bits;
  std::memcpy(&spare_bits, &st_.spare, sizeof spare_bits);
  char buf[128];
  std::snprintf(buf, sizeof buf, "%016llx:%016llx:%016llx:%016llx:%d:%016llx",
                static_cast<unsigned long long>(st_.s[0]), static_cast<unsigned long long>(st_.s[1]),
                static_cast<unsigned long long>(st_.s[2]), static_cast<unsigned long long>(st_.s[3]),
                st_.has_spare ? 1 : 0, static_cast<unsigned long long>(spare_bits));
  return buf;
}

void Rng::set_state_string(const std::string& text) {
  unsigned long long w[4], spare_bits;
  int has = 0;
  char tail = 0;
  const int n = std::sscanf(text.c_str(), "%16llx:%16llx:%16llx:%16llx:%d:%16llx%c", &w[0], &w[1],
                            &w[2], &w[3], &has, &spare_bits, &tail);
  TQ_CHECK(n == 6 && (has == 0 || has == 1),
           "[Rng] malformed RNG state '{}' — expected 4 hex words, a 0/1 flag and a hex word "
           "separated by ':'", text);
  TQ_CHECK((w[0] | w[1] | w[2] | w[3]) != 0, "[Rng] RNG state '{}' is all zero (invalid for xoshiro)", text);
  State s;
  for (int i = 0; i < 4; ++i) s.s[static_cast<size_t>(i)] = w[i];
  s.has_spare = has == 1;
  std::memcpy(&s.spare, &spare_bits, sizeof s.spare);
  st_ = s;
}

}  // namespace tq
