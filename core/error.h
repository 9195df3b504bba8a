// Errors in three levels (see docs/design.md, "Errors"):
//   TQ_CHECK(cond, fmt, args...)  user/API errors: throws tq::Error("[component] message — hint: ...")
//                                 with file:line; fmt is an fmt/spdlog format string.
//   TQ_ASSERT(cond, msg)          internal invariants: logs at critical level and aborts, every build.
//   TQ_DEBUG_ASSERT(cond)         hot loops; compiled out under NDEBUG.
// Nothing may be thrown out of an OpenMP parallel region: validate before `#pragma omp parallel`.
#pragma once

#include <stdexcept>
#include <string>

#include <spdlog/fmt/fmt.h>

namespace tq {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line);
  // The message without the " (file:line)" suffix.
  const std::string& message() const { return message_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_;
  const char* file_;
  int line_;
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace tq

#define TQ_CHECK(cond, ...)                                                        \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      ::tq::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__));   \
    }                                                                              \
  } while (0)

// Unconditional throw, for switch defaults and parse failures.
#define TQ_THROW(...) ::tq::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

#define TQ_ASSERT(cond, msg)                                          \
  do {                                                                \
    if (!(cond)) {                                                    \
      ::tq::detail::assert_fail(__FILE__, __LINE__, #cond, (msg));    \
    }                                                                 \
  } while (0)

#ifdef NDEBUG
#define TQ_DEBUG_ASSERT(cond) ((void)0)
#else
#define TQ_DEBUG_ASSERT(cond) TQ_ASSERT(cond, "debug assertion")
#endif
