#include "core/json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tq {

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] "; drop that tag so ours is the
// only bracketed component. The rest already says "parse error at line L, column C: ...".
std::string strip_nlohmann_tag(const char* what) {
  std::string msg(what);
  if (msg.rfind("[json.exception.", 0) == 0) {
    const size_t close = msg.find("] ");
    if (close != std::string::npos) msg.erase(0, close + 2);
  }
  return msg;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Json parse_json(std::string_view text, const std::string& source) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    TQ_THROW("[json] cannot parse {}: {}", source, strip_nlohmann_tag(e.what()));
  }
}

Json read_json_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TQ_CHECK(fd >= 0, "[json] cannot open {}: {}", path, std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = errno;
      ::close(fd);
      TQ_CHECK(r == 0, "[json] cannot read {}: {}", path, std::strerror(err));
      break;
    }
    text.append(buf, static_cast<size_t>(r));
  }
  return parse_json(text, path);
}

void write_json_file(const std::string& path, const Json& json, int indent) {
  std::string text;
  try {
    text = json.dump(indent);
  } catch (const Json::type_error& e) {  // invalid UTF-8 in a string
    TQ_THROW("[json] cannot serialise {}: {}", path, strip_nlohmann_tag(e.what()));
  }
  text += '\n';
  write_file_atomic(path, text);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter writer(path);
  writer.write(bytes.data(), bytes.size());
  writer.commit();
}

// ---- AtomicFileWriter ----

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  TQ_CHECK(fd_ >= 0, "[atomic_write] cannot create {}: {}", tmp_path_, std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(tmp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  TQ_CHECK(!committed_ && fd_ >= 0, "[atomic_write] {}: write after commit", path_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);  // Linux writes at most ~2 GiB per call
    if (w < 0 && errno == EINTR) continue;
    TQ_CHECK(w > 0, "[atomic_write] cannot write {} ({} bytes written so far): {}", tmp_path_,
             written_, w < 0 ? std::strerror(errno) : "no progress");
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
}

void AtomicFileWriter::commit() {
  TQ_CHECK(!committed_ && fd_ >= 0, "[atomic_write] {}: commit called twice", path_);
  TQ_CHECK(::fsync(fd_) == 0, "[atomic_write] cannot fsync {}: {}", tmp_path_,
           std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  TQ_CHECK(rc == 0, "[atomic_write] cannot close {}: {}", tmp_path_, std::strerror(errno));
  TQ_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0,
           "[atomic_write] cannot rename {} to {}: {}", tmp_path_, path_, std::strerror(errno));
  committed_ = true;
  // Make the rename itself durable. Some filesystems refuse fsync on a directory (EINVAL): the
  // data is already safe there, so that is not an error.
  const std::string dir = parent_dir(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TQ_CHECK(dfd >= 0, "[atomic_write] cannot open directory {} to fsync it: {}", dir,
           std::strerror(errno));
  const int drc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  TQ_CHECK(drc == 0 || err == EINVAL, "[atomic_write] cannot fsync directory {}: {}", dir,
           std::strerror(err));
}

// ---- typed field access ----

const char* json_kind(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "object";
    case Json::value_t::array: return "array";
    case Json::value_t::string: return "string";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    case Json::value_t::number_float: return "number";
    case Json::value_t::binary: return "binary";
    case Json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

namespace detail {

void json_type_error(const std::string& context, const std::string& key, const char* expected,
                     const Json& value) {
  TQ_THROW("[{}] field '{}': expected {}, got {}", context, key, expected, json_kind(value));
}

void json_range_error(const std::string& context, const std::string& key, const Json& value,
                      const std::string& lo, const std::string& hi) {
  TQ_THROW("[{}] field '{}': value {} is outside [{}, {}]", context, key, value.dump(), lo, hi);
}

void json_missing_error(const std::string& context, const std::string& key, const Json& object) {
  std::string present;
  size_t listed = 0;
  for (const auto& item : object.items()) {
    if (listed++ == 20) {
      present += fmt::format(", ... ({} in all)", object.size());
      break;
    }
    if (!present.empty()) present += ", ";
    present += item.key();
  }
  TQ_THROW("[{}] missing field '{}' (present: {})", context, key,
           present.empty() ? "none" : present);
}

}  // namespace detail

void json_check_keys(const Json& obj, std::initializer_list<std::string_view> known,
                     const std::string& context) {
  if (!obj.is_object()) detail::json_type_error(context, "(root)", "object", obj);
  for (const auto& item : obj.items()) {
    bool found = false;
    for (std::string_view k : known) found = found || k == item.key();
    if (found) continue;
    std::string list;
    for (std::string_view k : known) {
      if (!list.empty()) list += ", ";
      list += k;
    }
    TQ_THROW("[{}] unknown field '{}' (known: {})", context, item.key(), list);
  }
}

}  // namespace tq
