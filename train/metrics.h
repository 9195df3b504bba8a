// Training metrics: one compact JSON object per line in a metrics file (JSONL), and a progress line
// with ETA on stderr (a carriage-return bar when stderr is a terminal, plain lines otherwise).
//
//   MetricsWriter m("runs/x/metrics.jsonl", /*enabled=*/rank == 0);
//   m.truncate_after(resumed_step);                 // drop lines a crashed run wrote past the checkpoint
//   m.write({{"step", 10}, {"loss", 3.2}});          // appended and flushed
//   Progress p(/*max_steps=*/1000, /*first_step=*/0, /*enabled=*/rank == 0);
//   p.update(step, loss, lr, tokens_per_s);
//
// Field meanings are in docs/train.md ("Metrics").
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/json.h"

namespace tq::train {

class MetricsWriter {
 public:
  MetricsWriter() = default;
  MetricsWriter(std::string path, bool enabled);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // Keeps only lines whose "step" is ≤ step (and lines without a step); rewrites atomically.
  void truncate_after(int64_t step);
  void write(const Json& record);
  const std::string& path() const { return path_; }

 private:
  void open();
  std::string path_;
  bool enabled_ = false;
  std::FILE* f_ = nullptr;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

class Progress {
 public:
  Progress(int64_t max_steps, int64_t first_step, bool enabled);
  // Called after each step; draws at most ~10 times a second on a terminal. `force` always prints
  // (plain-line mode prints only when forced: the trainer forces every log.every steps).
  void update(int64_t step, double loss, double lr, double tokens_per_s, bool force);
  void finish();  // ends the carriage-return line

 private:
  int64_t max_steps_, first_step_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

}  // namespace tq::train
