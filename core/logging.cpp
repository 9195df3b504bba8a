#include "core/logging.h"

#include <cstdlib>

#include <spdlog/cfg/env.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/error.h"

namespace tq {

void init_logging(const std::string& level, const std::string& file) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, false));
    } catch (const spdlog::spdlog_ex& e) {
      TQ_THROW("[logging] cannot open log file {}: {}", file, e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("tequila", sinks.begin(), sinks.end());
  const spdlog::level::level_enum lvl = spdlog::level::from_str(level.empty() ? "info" : level);
  TQ_CHECK(level.empty() || lvl != spdlog::level::off || level == "off",
           "[logging] unknown level '{}' — expected trace, debug, info, warn, error, critical or off", level);
  logger->set_level(lvl);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL overrides
}

}  // namespace tq
