#include "core/error.h"

#include <cstdlib>

#include <spdlog/spdlog.h>

namespace tq {

Error::Error(std::string message, const char* file, int line)
    : std::runtime_error(fmt::format("{} ({}:{})", message, file, line)),
      message_(std::move(message)),
      file_(file),
      line_(line) {}

namespace detail {

void throw_error(const char* file, int line, const std::string& message) {
  throw Error(message, file, line);
}

void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
  spdlog::critical("internal assertion failed: {} ({}) at {}:{}", cond, msg, file, line);
  std::abort();
}

}  // namespace detail
}  // namespace tq
