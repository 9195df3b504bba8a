#include "train/schedule.h"

#include <cmath>

#include "core/error.h"

namespace tq::train {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

LrSchedule LrSchedule::constant(int64_t warmup_steps) {
  TQ_CHECK(warmup_steps >= 0, "[schedule] constant: warmup_steps must be >= 0, got {}", warmup_steps);
  LrSchedule s;
  s.kind_ = Kind::constant;
  s.warmup_ = warmup_steps;
  return s;
}

LrSchedule LrSchedule::cosine(int64_t total_steps, int64_t warmup_steps, double min_lr_ratio) {
  TQ_CHECK(total_steps > 0, "[schedule] cosine: total_steps must be > 0, got {}", total_steps);
  TQ_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
           "[schedule] cosine: warmup_steps must be in [0, total_steps={}], got {}", total_steps,
           warmup_steps);
  TQ_CHECK(min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0,
           "[schedule] cosine: min_lr_ratio must be in [0, 1], got {}", min_lr_ratio);
  LrSchedule s;
  s.kind_ = Kind::cosine;
  s.total_ = total_steps;
  s.warmup_ = warmup_steps;
  s.min_ratio_ = min_lr_ratio;
  return s;
}

LrSchedule LrSchedule::wsd(int64_t total_steps, double warmup_ratio, int64_t decay_steps,
                           double min_lr_ratio) {
  TQ_CHECK(total_steps > 0, "[schedule] wsd: total_steps must be > 0, got {}", total_steps);
  TQ_CHECK(warmup_ratio >= 0.0 && warmup_ratio <= 1.0,
           "[schedule] wsd: warmup_ratio must be in [0, 1], got {}", warmup_ratio);
  TQ_CHECK(decay_steps > 0, "[schedule] wsd: decay_steps must be > 0, got {}", decay_steps);
  TQ_CHECK(min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0,
           "[schedule] wsd: min_lr_ratio must be in [0, 1], got {}", min_lr_ratio);
  LrSchedule s;
  s.kind_ = Kind::wsd;
  s.total_ = total_steps;
  s.warmup_ = static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
  s.decay_ = decay_steps;
  s.min_ratio_ = min_lr_ratio;
  return s;
}

double LrSchedule::factor(int64_t t) const {
  TQ_CHECK(t >= 0, "[schedule] step must be >= 0, got {}", t);
  const double m = min_ratio_;
  switch (kind_) {
    case Kind::constant:
      if (t < warmup_) return static_cast<double>(t) / static_cast<double>(warmup_);
      return 1.0;
    case Kind::cosine: {
      if (t < warmup_) return static_cast<double>(t) / static_cast<double>(warmup_);
      const int64_t span = total_ - warmup_;
      if (span <= 0 || t >= total_) return m;
      const double p = static_cast<double>(t - warmup_) / static_cast<double>(span);
      return m + (1.0 - m) * 0.5 * (1.0 + std::cos(kPi * p));
    }
    case Kind::wsd: {
      if (t < warmup_) return m + (1.0 - m) * static_cast<double>(t) / static_cast<double>(warmup_);
      if (t < warmup_ + decay_) {
        const double p = static_cast<double>(t - warmup_) / static_cast<double>(decay_);
        return m + (1.0 - m) * 0.5 * (1.0 + std::cos(kPi * p));
      }
      return m;
    }
  }
  TQ_THROW("[schedule] unknown schedule kind");
}

LrSchedule::Kind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return LrSchedule::Kind::constant;
  if (name == "cosine") return LrSchedule::Kind::cosine;
  if (name == "wsd") return LrSchedule::Kind::wsd;
  TQ_THROW("[schedule] unknown schedule '{}' (expected constant | cosine | wsd)", name);
}

}  // namespace tq::train
