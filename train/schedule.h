// Learning-rate schedules (spec §6): the multiplier f(t) applied to the peak learning rate.
//
//   LrSchedule s = LrSchedule::wsd(/*total_steps=*/1000, /*warmup_ratio=*/0.61, /*decay_steps=*/300,
//                                  /*min_lr_ratio=*/0.1);
//   double lr = peak_lr * s.factor(step);   // step counts from 0
//
// constant: f = 1 (after an optional linear warmup from 0).
// cosine:   linear warmup 0 → 1 over W steps, then 0.5·(1 + cos(π·p)) scaled to [min_lr_ratio, 1]
//           over the remaining steps.
// wsd:      exactly transformers 4.51.1 get_wsd_schedule as the Tequila script uses it (spec §6):
//           W = ⌈warmup_ratio·T⌉; t < W: m + (1 − m)·t/W (the warmup starts at the floor m);
//           W ≤ t < W + N_d: m + (1 − m)·½(1 + cos(π(t − W)/N_d)); afterwards m. No stable phase.
#pragma once
#include <cstdint>
#include <string>

namespace tq::train {

class LrSchedule {
 public:
  enum class Kind { constant, cosine, wsd };
  static LrSchedule constant(int64_t warmup_steps = 0);
  static LrSchedule cosine(int64_t total_steps, int64_t warmup_steps, double min_lr_ratio);
  static LrSchedule wsd(int64_t total_steps, double warmup_ratio, int64_t decay_steps,
                        double min_lr_ratio);
  // The multiplier at step t ≥ 0.
  double factor(int64_t t) const;
  Kind kind() const { return kind_; }
  int64_t warmup_steps() const { return warmup_; }

 private:
  Kind kind_ = Kind::constant;
  int64_t total_ = 0, warmup_ = 0, decay_ = 0;
  double min_ratio_ = 0.0;
};

LrSchedule::Kind parse_schedule_kind(const std::string& name);  // constant | cosine | wsd

}  // namespace tq::train
