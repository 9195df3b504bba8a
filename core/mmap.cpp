#include "core/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace tq {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tequila's file formats assume a little-endian host");

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  TQ_CHECK(fd >= 0, "[mmap] cannot open {}: {}", path_, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    TQ_THROW("[mmap] cannot stat {}: {}", path_, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    TQ_THROW("[mmap] cannot map {}: not a regular file", path_);
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) {  // mmap rejects length 0; an empty file maps to nothing
    ::close(fd);
    return;
  }
  // MAP_NORESERVE: copy-on-write pages are rarely touched, so do not reserve swap for all of them.
  void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  TQ_CHECK(p != MAP_FAILED, "[mmap] cannot map {} ({} bytes): {}", path_, size_,
           std::strerror(err));
  data_ = static_cast<uint8_t*>(p);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  return std::make_shared<MappedFile>(path);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, static_cast<size_t>(size_));
}

const uint8_t* MappedFile::bytes(uint64_t offset, uint64_t n, const char* what) const {
  TQ_CHECK(offset <= size_ && n <= size_ - offset,
           "[mmap] {}: {} needs bytes [{}, {}) but the file has {} bytes", path_, what, offset,
           offset + n, size_);
  return data_ == nullptr ? nullptr : data_ + offset;
}

}  // namespace tq
