// Where the time of a forward step goes, by kind of op: EngineOptions::profile turns it on, and
// `tqinfer bench --profile` prints it next to the pp and tg rows (ms per token; for decode also MB
// and GB/s per token). Each thread
// charges the time since its own previous mark to an op, so a step's ops sum to its wall time on
// every thread; the summary averages the threads. A mark is one steady_clock read (≈ 100 per
// LLaMA-3.2-1B token; tg128 tokens/s did not change measurably), still off by default.
//
//   StepProfile p(threads);
//   p.begin(tid);
//   rms_norm(...);  p.mark(tid, StepOp::norm_quant);
//   gemv(...);      p.mark(tid, StepOp::gemv);
//   p.end_step(tid);
//   std::array<double, kStepOps> s = p.seconds_per_step();  // mean over threads and steps
//   std::array<double, kStepOps> all = p.seconds();         // mean over threads, summed over steps
//   StepMarker mark(maybe_null_profile, tid);  mark(StepOp::gemv);  mark.end_step();  // the same
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

namespace tq::infer {

// What a stretch of a step did. `wait`: at a barrier (with Note [Warm while waiting]'s reads).
enum class StepOp : int { gemv, head, norm_quant, attention, swiglu_quant, wait, other };
inline constexpr int kStepOps = 7;
const char* step_op_name(StepOp op);  // "linears (qkv, o, gate-up, down)", "LM head", ...

class StepProfile {
 public:
  explicit StepProfile(int threads);
  int threads() const { return static_cast<int>(lanes_.size()); }
  void begin(int tid);            // a step starts on thread tid: its clock starts
  void mark(int tid, StepOp op);  // the time since tid's previous begin/mark was spent in op
  void end_step(int tid);         // thread tid finished a step
  void reset();                   // forget everything measured (not thread-safe: outside steps)
  int64_t steps() const;          // steps finished on thread 0
  std::array<double, kStepOps> seconds_per_step() const;  // mean over the threads that ran steps
  std::array<double, kStepOps> seconds() const;  // the same, summed over the steps (prefill: per prompt)

 private:
  using Clock = std::chrono::steady_clock;
  struct alignas(64) Lane {  // one thread's accumulators, one cache line apart from the others
    Clock::time_point last{};
    std::array<double, kStepOps> seconds{};
    int64_t steps = 0;
  };
  std::vector<Lane> lanes_;
};

// One thread's marks into an optional profile: every call is a no-op when the profile is null (the
// engine's steps mark unconditionally). Construction begins the step.
class StepMarker {
 public:
  StepMarker(StepProfile* p, int tid) : p_(p), tid_(tid) {
    if (p_ != nullptr) p_->begin(tid_);
  }
  void operator()(StepOp op) const {
    if (p_ != nullptr) p_->mark(tid_, op);
  }
  void end_step() const {
    if (p_ != nullptr) p_->end_step(tid_);
  }

 private:
  StepProfile* p_;
  int tid_;
};

}  // namespace tq::infer
