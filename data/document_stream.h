// DocumentStream: the tokenized documents of a list of source files, in order, each as
// [BOS] + encode(text) + [EOS] (BOS/EOS omitted when the tokenizer has none), with the position it
// started at so a reader can seek back to it. Used by the TokenLoader (data/loader.h) on its
// background thread and by tqshard.
//
//   DocumentStream s(expand_sources({"corpus/*.txt"}, "data"), tok, StreamOptions{});
//   Document d;
//   while (s.next(d)) consume(d.tokens);   // d.pos: file index, offset, line, index
//   s.seek(saved_pos);                     // re-read from a document start
//
// Shards (.tqshard) hold the already-joined stream; their documents are cut after each EOS (or
// before each BOS when the shard has no EOS, or every 65,536 tokens when it has neither), so a shard
// written from text gives back the same documents. For shards, offset is a token index and line 0.
//
// Split: with valid_fraction f > 0, a document belongs to "valid" iff
// u = mix64(fnv1a64(basename(file)) ^ mix64(index)) / 2^64 < f (index = its record index in the file),
// otherwise to "train"; "all" keeps both. Empty texts are skipped silently (not documents).
// Bad records: skipped with a spdlog warning (first 10 in full, then a count every 1000) and counted,
// or thrown as tq::Error when stop_on_bad_data. A shard that fails validation, or whose vocab size
// differs from the tokenizer's (or from the first shard's when there is no tokenizer), is one bad
// record covering the whole file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/shard.h"
#include "data/text_source.h"
#include "data/tokenizer.h"

namespace tq::data {

struct DocPos {
  int64_t file = 0;     // index into the expanded file list
  uint64_t offset = 0;  // byte offset (text) or token index (shard) of the document's start
  int64_t line = 1;     // 1-based line (text), 0 for shards
  int64_t index = 0;    // record index within the file
  bool operator==(const DocPos& o) const {
    return file == o.file && offset == o.offset && line == o.line && index == o.index;
  }
};

struct Document {
  std::vector<int32_t> tokens;
  DocPos pos;
};

enum class Split { all, train, valid };
Split parse_split(const std::string& name, const std::string& context);
// The [0, 1) hash value that places a document in the split (see above).
double split_hash(const std::string& file, int64_t index);

struct StreamOptions {
  std::string jsonl_field = "text";
  TxtDocument txt_document = TxtDocument::paragraph;
  bool stop_on_bad_data = false;
  double valid_fraction = 0.0;
  Split split = Split::all;
  std::string context = "data";
};

class DocumentStream {
 public:
  // tokenizer may be null only when every file is a shard (checked here).
  DocumentStream(std::vector<std::string> files, std::shared_ptr<const Tokenizer> tokenizer,
                 StreamOptions opts);
  ~DocumentStream();

  // Restarts at a document start reported in Document::pos (or {} for the beginning).
  void seek(const DocPos& pos);
  // The next document of the split; false after the last file.
  bool next(Document& doc);

  const std::vector<std::string>& files() const { return files_; }
  int64_t documents() const { return documents_; }      // documents returned so far
  int64_t bad_records() const { return bad_records_; }  // bad records skipped so far

 private:
  void open_file(int64_t index);
  void report_bad(const std::string& message);
  bool keep(int64_t file, int64_t index) const;

  std::vector<std::string> files_;
  std::vector<std::string> basenames_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  StreamOptions opts_;
  int64_t file_ = 0;
  bool file_open_ = false;
  std::unique_ptr<TextFileReader> text_;
  std::shared_ptr<const ShardFile> shard_;
  uint64_t shard_pos_ = 0;
  int64_t shard_index_ = 0;
  int64_t shard_vocab_ = -1;  // the first shard's vocab size when there is no tokenizer
  // Shards validated once (the checksum pass) and kept mapped for later epochs.
  std::map<int64_t, std::shared_ptr<const ShardFile>> shard_cache_;
  int64_t documents_ = 0;
  int64_t bad_records_ = 0;
  TextRecord rec_;
};

}  // namespace tq::data
