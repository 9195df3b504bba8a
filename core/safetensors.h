// Safetensors files (the HF weight format): validated, memory-mapped reads and atomic writes.
//
//   SafetensorsFile f = SafetensorsFile::open("model.safetensors");  // maps and validates the
//   header for (const std::string& name : f.names()) { Tensor w = f.get(name); ... }  // zero-copy
//   views save_safetensors("out.safetensors", {{"lm_head.weight", w}}, {{"format", "pt"}});
//
// Layout: u64 little-endian header length N, N bytes of JSON {"__metadata__": {str: str},
// name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the data section; offsets are
// relative to its start. What is accepted, rejected and written is in docs/formats.md
// ("safetensors"). Every error is a tq::Error that names the file and, where one is involved, the
// tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"

namespace tq {

struct TensorInfo {
  std::string name;
  std::string st_dtype;        // as spelled in the file: "F32", "BF16", "I64", ...
  std::optional<DType> dtype;  // nullopt for dtypes tequila cannot hold (I64, BOOL, F8_*, ...)
  Shape shape;
  uint64_t begin = 0;  // byte range [begin, end) relative to the data section
  uint64_t end = 0;
  uint64_t file_offset = 0;  // absolute offset of `begin` in the file
};

class SafetensorsFile {
 public:
  // Maps `path` and validates the whole header (see docs/formats.md); throws tq::Error on any
  // defect.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names in data-section order: ascending begin offset, zero-size tensors before a
  // non-empty one at the same offset, other ties in header order. For a file written by
  // save_safetensors this is the given order, stably sorted by element size (largest first).
  std::vector<std::string> names() const;
  size_t size() const { return infos_.size(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws "[safetensors] <path>: no tensor '<name>'" when absent. Works for unsupported dtypes
  // too.
  const TensorInfo& info(const std::string& name) const;
  // A contiguous tensor. Zero-copy (a view whose storage keeps the mapping alive) when the data is
  // aligned to the element size; otherwise a fresh aligned copy, since unaligned typed loads are
  // UB. The view is copy-on-write: writing it never modifies the file. Throws for unsupported
  // dtypes.
  Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const MappedFile& mapping() const { return *file_; }
  uint64_t data_section_offset() const { return data_start_; }  // 8 + header length

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> infos_;  // in names() order
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Safetensors spelling of a dtype ("F32", "BF16", ...).
const char* safetensors_dtype_name(DType dtype);

// Writes `tensors` (any strides; copied contiguous one at a time) and `metadata` to `path`,
// streamed through a temp file that is fsync'ed and renamed (see AtomicFileWriter). The header
// lists tensors in the given order and is padded with spaces so the data section starts 8-byte
// aligned. The data is laid out in the given order, stably sorted by element size (largest first)
// so every tensor is aligned to its element size and loads zero-copy; there are no gaps.
// Duplicate or empty names, "__metadata__" as a name and undefined tensors are errors.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace tq
