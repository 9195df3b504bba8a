#include "train/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace tq::train {

MetricsWriter::MetricsWriter(std::string path, bool enabled) : path_(std::move(path)), enabled_(enabled) {}

MetricsWriter::~MetricsWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void MetricsWriter::open() {
  if (f_ != nullptr || !enabled_) return;
  const auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  f_ = std::fopen(path_.c_str(), "ab");
  TQ_CHECK(f_ != nullptr, "[metrics] cannot open {} for appending: {}", path_, std::strerror(errno));
}

void MetricsWriter::truncate_after(int64_t step) {
  if (!enabled_ || !std::filesystem::exists(path_)) return;
  if (f_ != nullptr) {
    std::fclose(f_);
    f_ = nullptr;
  }
  std::ifstream in(path_);
  std::string kept, line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    Json j;
    try {
      j = Json::parse(line);
    } catch (const Json::exception&) {
      continue;  // a torn last line of a killed run
    }
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > step) continue;
    kept += line + "\n";
  }
  write_file_atomic(path_, kept);
}

void MetricsWriter::write(const Json& record) {
  if (!enabled_) return;
  open();
  const std::string s = record.dump() + "\n";
  TQ_CHECK(std::fwrite(s.data(), 1, s.size(), f_) == s.size(), "[metrics] cannot write {}: {}", path_,
           std::strerror(errno));
  std::fflush(f_);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(int64_t max_steps, int64_t first_step, bool enabled)
    : max_steps_(max_steps), first_step_(first_step), enabled_(enabled), tty_(::isatty(2) == 1),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

void Progress::update(int64_t step, double loss, double lr, double tokens_per_s, bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_ && !force && step != max_steps_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  if (!tty_ && !force) return;
  last_draw_ = now;
  const double el = std::chrono::duration<double>(now - start_).count();
  const int64_t done = step - first_step_;
  const double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(max_steps_ - step) : -1;
  const std::string stats = fmt::format("step {}/{}  loss {:.4f}  lr {:.3g}  {:.0f} tok/s  elapsed {}  eta {}", step,
                                        max_steps_, loss, lr, tokens_per_s, format_duration(el), format_duration(eta));
  if (tty_) {
    const int width = 24;
    const int filled = max_steps_ > 0 ? static_cast<int>(width * step / max_steps_) : 0;
    std::fprintf(stderr, "\r[%s%s] %s\x1b[K", std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), stats.c_str());
    drawn_ = true;
  } else {
    std::fprintf(stderr, "[tqtrain] %s\n", stats.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace tq::train
