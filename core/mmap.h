// MappedFile: an RAII mapping of a whole file, for zero-copy reads of weights and token shards.
//
//   auto file = MappedFile::open("model.safetensors");        // shared, so tensors can own it
//   uint64_t n = file->read_le<uint64_t>(0, "header length");  // checked: names path and sizes
//   const uint8_t* p = file->bytes(8, n, "header");             // checked range
//
// The mapping is private copy-on-write (MAP_PRIVATE, PROT_READ|PROT_WRITE): a Tensor viewing it may
// be written by its user without touching the file. The file must not be truncated while mapped
// (SIGBUS). An empty file is valid: data() is nullptr and size() is 0.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "core/error.h"

namespace tq {

class MappedFile {
 public:
  // Throws tq::Error "[mmap] cannot open <path>: <strerror>" (and similar for fstat/mmap failures).
  explicit MappedFile(std::string path);
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const uint8_t* data() const { return data_; }
  // Writable through copy-on-write; writes never reach the file.
  uint8_t* mutable_data() { return data_; }

  // Checked access: throws "[mmap] <path>: <what> needs bytes [offset, offset+n) but the file has
  // <size> bytes" when the range does not fit.
  const uint8_t* bytes(uint64_t offset, uint64_t n, const char* what) const;
  // A little-endian value at `offset` (this library assumes a little-endian host).
  template <class T>
  T read_le(uint64_t offset, const char* what) const;

 private:
  std::string path_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

template <class T>
T MappedFile::read_le(uint64_t offset, const char* what) const {
  static_assert(std::is_trivially_copyable_v<T>, "read_le needs a trivially copyable type");
  T value;
  std::memcpy(&value, bytes(offset, sizeof(T), what),
              sizeof(T));  // memcpy: offset may be unaligned
  return value;
}

}  // namespace tq
