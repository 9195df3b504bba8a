// Static shares of [0, n) for the threads of a team, with stealing at the end: thread t first takes
// chunks from the front of its own share (split(n, t, nt), contiguous, in order, so a weight stream
// runs on across chunks), then chunks from the back of the others' shares. A claim from the own
// share takes half of what is left of it, in whole chunks and at least one ("guided"), so a thread
// makes few claims while much is left and chunk-sized ones near the end, where they balance the
// team; a steal takes one chunk. For ops that a team runs many times in a row with barriers between
// them (the engine's decode step), where one core being a few % slower left the other waiting at
// every barrier (Note [Work stealing] in infer/engine.cpp).
//
//   WorkShares shares(nt);              // one per op; reused every step
//   // in the region, every thread, with the same `step` (changes every time the op runs):
//   int64_t b, e;
//   while (shares.next(tid, n, chunk, step, b, e)) work(b, e);
//
// Each slot packs (step, front, back) into one 64-bit atomic; a slot whose step is stale is reset
// to the static share by whichever thread touches it first, so there is nothing to reset between
// runs. Limits: n < 2^24; `step` is compared modulo 2^16 (an op must run at least once per 65536
// steps).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace tq {

class WorkShares {
 public:
  explicit WorkShares(int threads);
  int threads() const { return nt_; }

  // Claims the next range [b, e) for thread tid of the op's run number `step`: from tid's own share
  // first (half of what is left, rounded down to whole chunks, at least `chunk` units or the rest),
  // then `chunk` units from the back of the others'. False when all is taken.
  bool next(int tid, int64_t n, int64_t chunk, uint64_t step, int64_t& b, int64_t& e) noexcept;

  static constexpr int64_t kMaxUnits = int64_t{1} << 24;

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> v{0};
  };
  int nt_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace tq
