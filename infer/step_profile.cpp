#include "infer/step_profile.h"

#include "core/error.h"

namespace tq::infer {

const char* step_op_name(StepOp op) {
  switch (op) {
    case StepOp::gemv:
      return "linears (qkv, o, gate-up, down)";
    case StepOp::head:
      return "LM head";
    case StepOp::norm_quant:
      return "residual + RMSNorm + int8 quant";
    case StepOp::attention:
      return "RoPE + KV cache + attention";
    case StepOp::swiglu_quant:
      return "SwiGLU + int8 quant";
    case StepOp::wait:
      return "barrier waits";
    case StepOp::other:
      return "other";
  }
  return "?";
}

StepProfile::StepProfile(int threads) {
  TQ_CHECK(threads >= 1, "[StepProfile] threads ({}) must be >= 1", threads);
  lanes_.resize(static_cast<size_t>(threads));
}

void StepProfile::begin(int tid) {
  lanes_[static_cast<size_t>(tid)].last = Clock::now();
}

void StepProfile::mark(int tid, StepOp op) {
  Lane& l = lanes_[static_cast<size_t>(tid)];
  const Clock::time_point now = Clock::now();
  l.seconds[static_cast<size_t>(op)] += std::chrono::duration<double>(now - l.last).count();
  l.last = now;
}

void StepProfile::end_step(int tid) {
  ++lanes_[static_cast<size_t>(tid)].steps;
}

void StepProfile::reset() {
  for (Lane& l : lanes_) {
    l.seconds.fill(0.0);
    l.steps = 0;
  }
}

int64_t StepProfile::steps() const {
  return lanes_.front().steps;
}

namespace {

// Mean over the threads that ran steps of each op's seconds, divided by the thread's steps or not.
template <class Lanes>
std::array<double, kStepOps> mean_over_threads(const Lanes& lanes, bool per_step) {
  std::array<double, kStepOps> out{};
  int used = 0;
  for (const auto& l : lanes) {
    if (l.steps == 0) continue;
    const double div = per_step ? static_cast<double>(l.steps) : 1.0;
    for (size_t i = 0; i < out.size(); ++i) out[i] += l.seconds[i] / div;
    ++used;
  }
  if (used > 0) {
    for (double& v : out) v /= used;
  }
  return out;
}

}  // namespace

std::array<double, kStepOps> StepProfile::seconds_per_step() const {
  return mean_over_threads(lanes_, true);
}

std::array<double, kStepOps> StepProfile::seconds() const { return mean_over_threads(lanes_, false); }

}  // namespace tq::infer
