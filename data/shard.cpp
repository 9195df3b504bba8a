#include "data/shard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace tq::data {

namespace {

constexpr uint64_t kOffVersion = 8, kOffWidth = 12, kOffVocab = 16, kOffBos = 20, kOffEos = 24,
                   kOffCount = 32, kOffChecksum = 40;

template <class T>
void put(uint8_t* buf, uint64_t off, T v) {
  std::memcpy(buf + off, &v, sizeof(T));
}

}  // namespace

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::shared_ptr<const ShardFile> ShardFile::open(const std::string& path) {
  auto shard = std::shared_ptr<ShardFile>(new ShardFile());
  shard->file_ = MappedFile::open(path);
  const MappedFile& f = *shard->file_;
  TQ_CHECK(f.size() >= kShardHeaderBytes,
           "[shard] {}: truncated: {} bytes, shorter than the {}-byte header", path, f.size(),
           kShardHeaderBytes);
  TQ_CHECK(std::memcmp(f.data(), kShardMagic, sizeof(kShardMagic)) == 0,
           "[shard] {}: bad magic (expected \"TQSHARD\\0\") — not a token shard", path);
  ShardHeader& h = shard->header_;
  h.version = f.read_le<uint32_t>(kOffVersion, "version");
  TQ_CHECK(h.version == kShardVersion, "[shard] {}: unsupported version {} (expected {})", path,
           h.version, kShardVersion);
  h.token_width = f.read_le<uint32_t>(kOffWidth, "token width");
  TQ_CHECK(h.token_width == 4, "[shard] {}: token width {} (expected 4)", path, h.token_width);
  h.vocab_size = f.read_le<uint32_t>(kOffVocab, "vocab size");
  h.bos_id = f.read_le<int32_t>(kOffBos, "bos id");
  h.eos_id = f.read_le<int32_t>(kOffEos, "eos id");
  h.num_tokens = f.read_le<uint64_t>(kOffCount, "token count");
  h.checksum = f.read_le<uint64_t>(kOffChecksum, "checksum");
  TQ_CHECK(h.vocab_size > 0 && h.vocab_size <= 0x7fffffffu, "[shard] {}: bad vocab size {}", path,
           h.vocab_size);
  TQ_CHECK(h.bos_id >= -1 && h.bos_id < static_cast<int64_t>(h.vocab_size) && h.eos_id >= -1 &&
               h.eos_id < static_cast<int64_t>(h.vocab_size),
           "[shard] {}: bos {} / eos {} outside the vocabulary of {}", path, h.bos_id, h.eos_id,
           h.vocab_size);
  const uint64_t expected = kShardHeaderBytes + 4 * h.num_tokens;
  TQ_CHECK(h.num_tokens <= (f.size() >> 2) && f.size() == expected,
           "[shard] {}: size {} bytes does not match the header ({} tokens need {} bytes) — "
           "truncated or corrupt",
           path, f.size(), h.num_tokens, expected);
  const uint8_t* bytes = f.data() + kShardHeaderBytes;
  shard->tokens_ = reinterpret_cast<const uint32_t*>(bytes);  // mmap is page aligned; 64 % 4 == 0
  uint64_t sum = kFnvOffset;
  constexpr uint64_t kChunk = 1 << 16;
  for (uint64_t i = 0; i < h.num_tokens; i += kChunk) {
    const uint64_t n = std::min(kChunk, h.num_tokens - i);
    uint32_t max_tok = 0;
    for (uint64_t k = 0; k < n; ++k) max_tok = std::max(max_tok, shard->tokens_[i + k]);
    if (max_tok >= h.vocab_size) {
      for (uint64_t k = 0; k < n; ++k) {
        TQ_CHECK(shard->tokens_[i + k] < h.vocab_size,
                 "[shard] {}: token {} at index {} (byte offset {}) is outside the vocabulary of {}",
                 path, shard->tokens_[i + k], i + k, kShardHeaderBytes + 4 * (i + k), h.vocab_size);
      }
    }
    sum = fnv1a64(shard->tokens_ + i, n * 4, sum);
  }
  TQ_CHECK(sum == h.checksum, "[shard] {}: checksum mismatch (header {:016x}, data {:016x}) — corrupt",
           path, h.checksum, sum);
  return shard;
}

ShardWriter::ShardWriter(std::string path, int32_t vocab_size, int32_t bos_id, int32_t eos_id)
    : path_(std::move(path)) {
  TQ_CHECK(vocab_size > 0, "[shard] {}: vocab size {} must be positive", path_, vocab_size);
  TQ_CHECK(bos_id >= -1 && bos_id < vocab_size && eos_id >= -1 && eos_id < vocab_size,
           "[shard] {}: bos {} / eos {} outside the vocabulary of {}", path_, bos_id, eos_id,
           vocab_size);
  header_.vocab_size = static_cast<uint32_t>(vocab_size);
  header_.bos_id = bos_id;
  header_.eos_id = eos_id;
  header_.checksum = kFnvOffset;
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TQ_CHECK(fd_ >= 0, "[shard] cannot create {}: {}", tmp_path_, std::strerror(errno));
  uint8_t zeros[kShardHeaderBytes] = {};
  write_all(zeros, sizeof(zeros), 0);  // the real header is written by commit()
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void ShardWriter::write_all(const void* data, size_t n, uint64_t offset) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    TQ_CHECK(w > 0, "[shard] write to {} failed: {}", tmp_path_, std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

void ShardWriter::append(const int32_t* ids, size_t n) {
  TQ_CHECK(!committed_, "[shard] {}: append after commit", path_);
  for (size_t i = 0; i < n; ++i) {
    TQ_CHECK(ids[i] >= 0 && static_cast<uint32_t>(ids[i]) < header_.vocab_size,
             "[shard] {}: token {} outside the vocabulary of {}", path_, ids[i], header_.vocab_size);
  }
  // int32 in [0, vocab) has the same bytes as the uint32 the file stores.
  header_.checksum = fnv1a64(ids, n * 4, header_.checksum);
  header_.num_tokens += n;
  buffer_.insert(buffer_.end(), ids, ids + n);
  if (buffer_.size() >= (size_t{1} << 18)) flush();
}

void ShardWriter::flush() {
  write_all(buffer_.data(), buffer_.size() * 4, kShardHeaderBytes + 4 * flushed_);
  flushed_ += buffer_.size();
  buffer_.clear();
}

void ShardWriter::commit() {
  TQ_CHECK(!committed_, "[shard] {}: committed twice", path_);
  flush();
  uint8_t buf[kShardHeaderBytes] = {};
  std::memcpy(buf, kShardMagic, sizeof(kShardMagic));
  put(buf, kOffVersion, header_.version);
  put(buf, kOffWidth, header_.token_width);
  put(buf, kOffVocab, header_.vocab_size);
  put(buf, kOffBos, header_.bos_id);
  put(buf, kOffEos, header_.eos_id);
  put(buf, kOffCount, header_.num_tokens);
  put(buf, kOffChecksum, header_.checksum);
  write_all(buf, sizeof(buf), 0);
  TQ_CHECK(::fsync(fd_) == 0, "[shard] fsync {} failed: {}", tmp_path_, std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  TQ_CHECK(std::rename(tmp_path_.c_str(), path_.c_str()) == 0, "[shard] cannot rename {} to {}: {}",
           tmp_path_, path_, std::strerror(errno));
  committed_ = true;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace tq::data
