#include "core/work_shares.h"

#include <algorithm>

#include "core/error.h"

namespace tq {

namespace {

constexpr uint64_t kMask24 = (uint64_t{1} << 24) - 1;

uint64_t pack(uint64_t step, uint64_t front, uint64_t back) {
  return (step & 0xFFFF) << 48 | (front & kMask24) << 24 | (back & kMask24);
}
uint64_t step_of(uint64_t v) {
  return v >> 48;
}
uint64_t front_of(uint64_t v) {
  return (v >> 24) & kMask24;
}
uint64_t back_of(uint64_t v) {
  return v & kMask24;
}

}  // namespace

WorkShares::WorkShares(int threads) : nt_(threads) {
  TQ_CHECK(threads >= 1, "[WorkShares] threads ({}) must be ≥ 1", threads);
  slots_ = std::make_unique<Slot[]>(static_cast<size_t>(threads));
}

bool WorkShares::next(int tid, int64_t n, int64_t chunk, uint64_t step, int64_t& b,
                      int64_t& e) noexcept {
  TQ_DEBUG_ASSERT(n >= 0 && n < kMaxUnits);
  const uint64_t s16 = step & 0xFFFF;
  const int64_t c = chunk < 1 ? 1 : chunk;
  for (int k = 0; k < nt_; ++k) {
    const int u = (tid + k) % nt_;  // k = 0: own share, front; then the others', back
    std::atomic<uint64_t>& slot = slots_[static_cast<size_t>(u)].v;
    uint64_t cur = slot.load(std::memory_order_acquire);
    if (step_of(cur) != s16) {  // first touch in this run: the static share
      const auto lo = static_cast<uint64_t>(n * u / nt_),
                 hi = static_cast<uint64_t>(n * (u + 1) / nt_);
      const uint64_t init = pack(s16, lo, hi);
      if (slot.compare_exchange_strong(cur, init, std::memory_order_acq_rel)) cur = init;
    }
    while (step_of(cur) == s16 && front_of(cur) < back_of(cur)) {
      const uint64_t f = front_of(cur), bk = back_of(cur), left = bk - f;
      // Own share: half of what is left (in whole chunks, at least one); others': one chunk.
      const uint64_t uc = static_cast<uint64_t>(c);
      const uint64_t take =
          std::min<uint64_t>(left, k == 0 ? std::max<uint64_t>(uc, left / 2 / uc * uc) : uc);
      const uint64_t want = k == 0 ? pack(s16, f + take, bk) : pack(s16, f, bk - take);
      if (slot.compare_exchange_weak(cur, want, std::memory_order_acq_rel)) {
        b = static_cast<int64_t>(k == 0 ? f : bk - take);
        e = b + static_cast<int64_t>(take);
        return true;
      }
    }
  }
  return false;
}

}  // namespace tq
