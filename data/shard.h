// Token shards (.tqshard): a pre-tokenized, already-joined token stream ([BOS] doc [EOS] ...) behind a
// 64-byte header, read through core/mmap.h. The layout is in docs/formats.md ("Token shards").
//
//   ShardWriter w("train.tqshard", tok.vocab_size(), tok.bos_id(), tok.eos_id());
//   w.append(tok.encode(doc, true, true));   // any number of times
//   w.commit();                              // temp file + fsync + rename: never a torn shard
//
//   auto shard = ShardFile::open("train.tqshard");   // validates header, size, checksum, token range
//   const uint32_t* t = shard->tokens();             // [shard->num_tokens()]
//
// Every check failure is a tq::Error naming the file and what was expected (bad magic, version,
// token width, size not matching the header, checksum, token >= vocab size).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap.h"

namespace tq::data {

inline constexpr char kShardMagic[8] = {'T', 'Q', 'S', 'H', 'A', 'R', 'D', '\0'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr uint64_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t token_width = 4;
  uint32_t vocab_size = 0;
  int32_t bos_id = -1;  // -1: none
  int32_t eos_id = -1;  // -1: none
  uint64_t num_tokens = 0;
  uint64_t checksum = 0;  // FNV-1a 64 over the token bytes
};

// FNV-1a 64, continued from `h` (start with kFnvOffset).
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnvOffset);

class ShardFile {
 public:
  // Maps and validates the whole file (one pass for the checksum and the token range).
  static std::shared_ptr<const ShardFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const ShardHeader& header() const { return header_; }
  uint64_t num_tokens() const { return header_.num_tokens; }
  const uint32_t* tokens() const { return tokens_; }  // [num_tokens], 4-byte aligned

 private:
  std::shared_ptr<MappedFile> file_;
  ShardHeader header_;
  const uint32_t* tokens_ = nullptr;
};

class ShardWriter {
 public:
  // Writes to "<path>.tmp.<pid>"; commit() patches the header, fsyncs and renames over `path`.
  // Without commit() the destructor removes the temp file.
  ShardWriter(std::string path, int32_t vocab_size, int32_t bos_id, int32_t eos_id);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void append(const int32_t* ids, size_t n);  // ids must be in [0, vocab_size)
  void append(const std::vector<int32_t>& ids) { append(ids.data(), ids.size()); }
  void commit();
  uint64_t num_tokens() const { return header_.num_tokens; }
  const std::string& path() const { return path_; }

 private:
  void write_all(const void* data, size_t n, uint64_t offset);
  void flush();

  std::vector<int32_t> buffer_;  // tokens not yet written (flushed every 256K tokens)
  uint64_t flushed_ = 0;         // tokens already in the file

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  ShardHeader header_;
  bool committed_ = false;
};

}  // namespace tq::data
