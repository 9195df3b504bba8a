#include "data/text_source.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/json.h"

namespace tq::data {

namespace {

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
  });
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

SourceKind source_kind_of(const std::string& path) {
  if (ends_with(path, ".txt")) return SourceKind::txt;
  if (ends_with(path, ".jsonl")) return SourceKind::jsonl;
  if (ends_with(path, ".tqshard")) return SourceKind::shard;
  TQ_THROW("[data] cannot tell the source type of {} — hint: expected .txt, .jsonl or .tqshard",
           path);
}

TxtDocument parse_txt_document(const std::string& name, const std::string& context) {
  if (name == "paragraph") return TxtDocument::paragraph;
  if (name == "line") return TxtDocument::line;
  if (name == "file") return TxtDocument::file;
  TQ_THROW("[{}] field 'txt_document': expected paragraph, line or file, got '{}'", context, name);
}

std::vector<std::string> expand_globs(const std::vector<std::string>& patterns, const std::string& context) {
  TQ_CHECK(!patterns.empty(), "[{}] field 'sources': no source pattern given", context);
  std::vector<std::string> out;
  for (const std::string& pattern : patterns) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> matched;
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(g.gl_pathv[i], ec)) matched.emplace_back(g.gl_pathv[i]);
      }
    }
    ::globfree(&g);
    TQ_CHECK(rc == 0 || rc == GLOB_NOMATCH, "[{}] cannot expand pattern '{}' (glob error {})", context, pattern, rc);
    TQ_CHECK(!matched.empty(),
             "[{}] source pattern '{}' matches no file (relative paths are relative to the working directory)",
             context, pattern);
    std::sort(matched.begin(), matched.end());
    for (auto& m : matched) out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> expand_sources(const std::vector<std::string>& patterns,
                                        const std::string& context) {
  std::vector<std::string> out = expand_globs(patterns, context);
  for (const auto& m : out) source_kind_of(m);  // unknown extensions fail here, before any reading
  return out;
}

int64_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

TextFileReader::TextFileReader(std::string path, SourceKind kind, std::string field,
                               TxtDocument txt_document)
    : path_(std::move(path)), kind_(kind), field_(std::move(field)), txt_document_(txt_document) {
  TQ_CHECK(kind_ != SourceKind::shard, "[data] TextFileReader cannot read the shard {}", path_);
  in_.open(path_, std::ios::binary);
  TQ_CHECK(in_.is_open(), "[data] cannot open {}", path_);
}

void TextFileReader::seek(uint64_t offset, int64_t line, int64_t index) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path_, ec);
  TQ_CHECK(!ec, "[data] cannot stat {}: {}", path_, ec.message());
  TQ_CHECK(offset <= size, "[data] {}: resume offset {} is beyond the end of the file ({} bytes)",
           path_, offset, size);
  TQ_CHECK(line >= 1 && index >= 0, "[data] {}: bad resume position line {} index {}", path_, line,
           index);
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(offset));
  TQ_CHECK(in_.good(), "[data] cannot seek {} to byte {}", path_, offset);
  offset_ = offset;
  line_ = line;
  index_ = index;
  done_ = false;
}

bool TextFileReader::read_line(std::string& line) {
  if (done_) return false;
  if (!std::getline(in_, line)) {
    done_ = true;
    return false;
  }
  offset_ += line.size() + (in_.eof() ? 0 : 1);
  ++line_;
  return true;
}

bool TextFileReader::next(TextRecord& rec) {
  rec.text.clear();
  rec.bad = false;
  rec.error.clear();
  return kind_ == SourceKind::txt ? next_txt(rec) : next_jsonl(rec);
}

bool TextFileReader::next_txt(TextRecord& rec) {
  std::string line;
  for (;;) {  // skip blank lines up to the record's first line
    rec.offset = offset_;
    rec.line = line_;
    if (!read_line(line)) return false;
    if (!is_blank(line)) break;
  }
  rec.index = index_++;
  auto check_utf8 = [&](const std::string& l, uint64_t line_offset, int64_t line_no) {
    if (rec.bad) return;
    const int64_t bad = find_invalid_utf8(l);
    if (bad >= 0) {
      rec.bad = true;
      rec.error = fmt::format("{}:{}: invalid UTF-8 at byte offset {}", path_, line_no,
                              line_offset + static_cast<uint64_t>(bad));
    }
  };
  check_utf8(line, rec.offset, rec.line);
  rec.text = std::move(line);
  if (txt_document_ == TxtDocument::line) return true;
  int64_t pending_blank = 0;
  for (;;) {
    const uint64_t off = offset_;
    const int64_t no = line_;
    if (!read_line(line)) break;
    if (is_blank(line)) {
      if (txt_document_ == TxtDocument::paragraph) break;
      ++pending_blank;  // whole-file documents keep inner blank lines, drop trailing ones
      continue;
    }
    check_utf8(line, off, no);
    rec.text.append(static_cast<size_t>(pending_blank) + 1, '\n');
    pending_blank = 0;
    rec.text += line;
  }
  return true;
}

bool TextFileReader::next_jsonl(TextRecord& rec) {
  std::string line;
  for (;;) {
    rec.offset = offset_;
    rec.line = line_;
    if (!read_line(line)) return false;
    if (!is_blank(line)) break;
  }
  rec.index = index_++;
  auto bad = [&](const std::string& what) {
    rec.bad = true;
    rec.error = fmt::format("{}:{}: {}", path_, rec.line, what);
    return true;
  };
  const int64_t invalid = find_invalid_utf8(line);
  if (invalid >= 0) {
    return bad(fmt::format("invalid UTF-8 at byte offset {}", rec.offset + static_cast<uint64_t>(invalid)));
  }
  Json j;
  try {
    j = Json::parse(line);
  } catch (const Json::exception& e) {
    return bad(fmt::format("not JSON ({})", e.what()));
  }
  if (!j.is_object()) return bad(fmt::format("expected a JSON object, got {}", json_kind(j)));
  const auto it = j.find(field_);
  if (it == j.end()) return bad(fmt::format("missing field '{}'", field_));
  if (!it->is_string()) {
    return bad(fmt::format("field '{}' is {}, expected a string", field_, json_kind(*it)));
  }
  rec.text = it->get<std::string>();
  return true;
}

}  // namespace tq::data
