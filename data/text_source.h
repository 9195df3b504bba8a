// Text sources: glob expansion and streaming record readers for .txt and .jsonl files.
//
//   auto files = expand_sources({"corpus/*.txt", "extra.jsonl"}, "data");  // sorted per pattern
//   TextFileReader r(files[0], SourceKind::txt, "text", TxtDocument::paragraph);
//   TextRecord rec;
//   while (r.next(rec)) { if (!rec.bad) use(rec.text); else warn(rec.error); }
//
// Files are read line by line through a std::ifstream (a buffered stream), never whole: memory is
// bounded by the longest record (one paragraph or jsonl line; txt_document=file holds one file).
// A record knows where it starts (byte offset, 1-based line, index among the file's records), and
// seek() reopens a file at such a position, which is what the loader's resume cursor stores.
//
// txt: documents are separated by one or more blank (whitespace-only) lines ("paragraph"), or are
// single non-blank lines ("line"), or the whole file ("file"). Lines of a paragraph are joined with
// '\n' (no trailing newline). jsonl: one JSON object per non-blank line; the document is the string
// field `field`. Bad records (invalid UTF-8, not JSON, not an object, field missing or not a
// string) come back with bad = true and an error "<file>:<line>: ..." — the caller skips or stops.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace tq::data {

enum class SourceKind { txt, jsonl, shard };
enum class TxtDocument { paragraph, line, file };

// "txt" -> SourceKind::txt etc. by the file's extension (.txt, .jsonl, .tqshard); tq::Error otherwise.
SourceKind source_kind_of(const std::string& path);
// "paragraph" | "line" | "file"; tq::Error naming `context` otherwise.
TxtDocument parse_txt_document(const std::string& name, const std::string& context);

// Each pattern expanded with glob(3) (regular files only), sorted; patterns keep their order. A
// pattern matching no file is an error naming it: "[<context>] pattern 'x/*.txt' matches no file".
// The one glob expansion of the project (data sources, tokenizer-training inputs, task files).
std::vector<std::string> expand_globs(const std::vector<std::string>& patterns, const std::string& context);
// expand_globs, then every file must be a known source kind (source_kind_of).
std::vector<std::string> expand_sources(const std::vector<std::string>& patterns,
                                        const std::string& context);

// Offset (from the start of `s`) of the first byte that is not valid UTF-8 (overlongs, surrogates
// and code points above U+10FFFF are invalid), or -1 when all of `s` is valid.
int64_t find_invalid_utf8(std::string_view s);

struct TextRecord {
  std::string text;
  uint64_t offset = 0;  // byte offset of the record's first line
  int64_t line = 1;     // 1-based line of the record's first line
  int64_t index = 0;    // 0-based index among this file's records (bad ones included)
  bool bad = false;
  std::string error;    // "<file>:<line>: <what>" when bad
};

class TextFileReader {
 public:
  TextFileReader(std::string path, SourceKind kind, std::string field, TxtDocument txt_document);
  // Restarts at a record boundary previously reported by next() (offset, line, index).
  void seek(uint64_t offset, int64_t line, int64_t index);
  // The next record; false at the end of the file.
  bool next(TextRecord& rec);
  const std::string& path() const { return path_; }

 private:
  bool read_line(std::string& line);  // one line without its '\n'; false at EOF
  bool next_txt(TextRecord& rec);
  bool next_jsonl(TextRecord& rec);

  std::string path_;
  SourceKind kind_;
  std::string field_;
  TxtDocument txt_document_;
  std::ifstream in_;
  uint64_t offset_ = 0;  // offset of the next unread line
  int64_t line_ = 1;     // 1-based number of the next unread line
  int64_t index_ = 0;    // index of the next record
  bool done_ = false;
};

}  // namespace tq::data
