// JSON I/O (nlohmann::json is a public dependency) and atomic file writes.
//
//   Json cfg = read_json_file(dir + "/config.json");   // errors name the file, line and column
//   int64_t C = json_get<int64_t>(cfg, "hidden_size", "config.json");
//   double theta = json_get_or<double>(cfg, "rope_theta", 10000.0, "config.json");
//   write_json_file(dir + "/trainer_state.json", state);  // temp file, fsync, rename, fsync dir
//
// Typed getters throw tq::Error "[<context>] field 'hidden_size': expected integer, got string".
// Integers must be JSON integers (1.0 is not an integer) and must fit the requested type.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace tq {

using Json = nlohmann::json;

// Parses `text`; `source` names it in errors: "[json] cannot parse <source>: parse error at line 3,
// column 5: ...".
Json parse_json(std::string_view text, const std::string& source);
// Reads and parses a whole file: "[json] cannot open <path>: <strerror>" or the parse error above.
Json read_json_file(const std::string& path);
// Pretty-printed (indent spaces, -1 for compact) with a final newline, written via
// write_file_atomic.
void write_json_file(const std::string& path, const Json& json, int indent = 2);

// Replaces `path` atomically: readers see the old file or the new one, never a torn one.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The streaming form, for files too large to build in memory (multi-GB safetensors). Writes go to
// "<path>.tmp.<pid>"; commit() fsyncs it, renames it over `path` and fsyncs the directory. Without
// a commit() (an exception mid-write) the destructor removes the temp file and `path` is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);  // throws "[atomic_write] cannot create <tmp>: ..."
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);  // all n bytes or throws (retries short writes, EINTR)
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// ---- typed field access ----

// "integer", "number", "string", "boolean", "null", "array" or "object".
const char* json_kind(const Json& value);

namespace detail {
[[noreturn]] void json_type_error(const std::string& context, const std::string& key,
                                  const char* expected, const Json& value);
[[noreturn]] void json_range_error(const std::string& context, const std::string& key,
                                   const Json& value, const std::string& lo, const std::string& hi);
[[noreturn]] void json_missing_error(const std::string& context, const std::string& key,
                                     const Json& object);

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};
}  // namespace detail

// Converts one value; `key` names it in errors ("hidden_size", "layers[3]").
// T: bool, any integer type, float, double, std::string, Json, or std::vector of those.
template <class T>
T json_as(const Json& value, const std::string& key, const std::string& context) {
  if constexpr (std::is_same_v<T, Json>) {
    return value;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) detail::json_type_error(context, key, "boolean", value);
    return value.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!value.is_number_integer()) detail::json_type_error(context, key, "integer", value);
    constexpr T lo = std::numeric_limits<T>::min();
    constexpr T hi = std::numeric_limits<T>::max();
    bool in_range;
    if (value.is_number_unsigned()) {
      in_range = value.get<uint64_t>() <= static_cast<uint64_t>(hi);
    } else if constexpr (std::is_signed_v<T>) {
      const auto i = value.get<int64_t>();
      in_range = i >= static_cast<int64_t>(lo) && i <= static_cast<int64_t>(hi);
    } else {
      const auto i = value.get<int64_t>();
      in_range = i >= 0 && static_cast<uint64_t>(i) <= static_cast<uint64_t>(hi);
    }
    if (!in_range) {
      detail::json_range_error(context, key, value, std::to_string(+lo), std::to_string(+hi));
    }
    if (value.is_number_unsigned()) return static_cast<T>(value.get<uint64_t>());
    return static_cast<T>(value.get<int64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) detail::json_type_error(context, key, "number", value);
    return static_cast<T>(value.get<double>());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!value.is_string()) detail::json_type_error(context, key, "string", value);
    return value.get<std::string>();
  } else if constexpr (detail::IsVector<T>::value) {
    if (!value.is_array()) detail::json_type_error(context, key, "array", value);
    T out;
    out.reserve(value.size());
    for (size_t i = 0; i < value.size(); ++i) {
      out.push_back(
          json_as<typename T::value_type>(value[i], key + "[" + std::to_string(i) + "]", context));
    }
    return out;
  } else {
    static_assert(!sizeof(T*), "json_as: unsupported type");
  }
}

// The field `key` of object `obj`; throws "[<context>] missing field '<key>'" when absent.
template <class T>
T json_get(const Json& obj, const std::string& key, const std::string& context) {
  if (!obj.is_object()) detail::json_type_error(context, "(root)", "object", obj);
  const auto it = obj.find(key);
  if (it == obj.end()) detail::json_missing_error(context, key, obj);
  return json_as<T>(*it, key, context);
}

// Like json_get, but `fallback` when the field is absent or null.
template <class T>
T json_get_or(const Json& obj, const std::string& key, T fallback, const std::string& context) {
  if (!obj.is_object()) detail::json_type_error(context, "(root)", "object", obj);
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  return json_as<T>(*it, key, context);
}

// Unknown keys are errors (a typo must never fall back to a default):
// "[<context>] unknown field 'hiden_size' (known: a, b, c)".
void json_check_keys(const Json& obj, std::initializer_list<std::string_view> known,
                     const std::string& context);

}  // namespace tq
