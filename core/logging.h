// Logging through spdlog. init_logging(level, file): a console sink plus an optional file sink; the
// SPDLOG_LEVEL environment variable overrides `level` ("trace", "debug", "info", "warn", "error").
// The library logs at debug/trace only; train/ and apps/ at info; kernels never.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace tq {

void init_logging(const std::string& level, const std::string& file);

}  // namespace tq
