#include "core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/rng.h"

namespace tq {

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

// ---- Storage ----

// Note [Huge pages]
// ~~~~~~~~~~~~~~~~~
// Allocations of kHugeMin bytes or more are aligned to 2 MiB, rounded up to whole 2 MiB pages and
// advised MADV_HUGEPAGE before their first touch, so where transparent huge pages are "madvise" (as
// on Debian by default, and on this VM) the kernel backs them with 2 MiB pages; with "always" it
// would anyway, with "never" the advice does nothing. A decode step streams every weight once (the
// 1B shape: 523 MB per token), so with 4 KiB pages it crosses a page, and usually misses the TLB,
// every 64 cache lines. Measured with a dev harness (three engines in one process, decode of 64
// tokens each, alternated with the order swapped, 2 threads): at read probes of 48–65 GB/s the
// engine on 2 MiB pages read 0.95–0.97 of the 4 KiB-page probe against 0.88 on 4 KiB pages (medians of
// 9–12 rounds; a second 4 KiB engine, the control, 0.90–0.92); at probes of 30–40 GB/s the three were
// equal. The read probe (quant/roofline.h) allocates through here too, so "% of probe" compares
// like with like: a 2 MiB-page probe read 5–20% more than the 4 KiB one beside it.
// Memory-mapped files (core/mmap.h: safetensors, packed models) keep the page cache's pages (on this
// VM's kernel, 6.18 with ext4, a mapped packed model is already mapped with 2 MiB folios:
// FilePmdMapped in /proc/self/smaps). TQ_HUGE_PAGES=0 in the environment turns the advice off.
constexpr size_t kHugeMin = size_t{4} << 20;
constexpr size_t kHugePage = size_t{2} << 20;

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, bool zero_fill) {
  std::shared_ptr<Storage> st(new Storage());
  size_t rounded = std::max<size_t>(64, (nbytes + 63) / 64 * 64);
  static const bool huge = [] {  // TQ_HUGE_PAGES=0 turns the advice off
    const char* e = std::getenv("TQ_HUGE_PAGES");
    return e == nullptr || std::string(e) != "0";
  }();
  if (huge && rounded >= kHugeMin) {
    rounded = (rounded + kHugePage - 1) / kHugePage * kHugePage;
    st->data_ = std::aligned_alloc(kHugePage, rounded);
    if (st->data_ != nullptr) ::madvise(st->data_, rounded, MADV_HUGEPAGE);  // advice only
  } else {
    st->data_ = std::aligned_alloc(64, rounded);
  }
  if (st->data_ == nullptr) {
    TQ_THROW("[Storage] cannot allocate {} bytes — hint: the model or batch may not fit in memory",
             nbytes);
  }
  if (zero_fill) std::memset(st->data_, 0, rounded);
  st->nbytes_ = nbytes;
  st->owned_ = true;
  return st;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t nbytes, std::shared_ptr<void> owner,
                                         bool read_only) {
  std::shared_ptr<Storage> st(new Storage());
  st->data_ = data;
  st->nbytes_ = nbytes;
  st->owner_ = std::move(owner);
  st->read_only_ = read_only;
  return st;
}

Storage::~Storage() {
  if (owned_) std::free(data_);
}

// ---- Tensor: construction ----

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
               DType dtype)
    : storage_(std::move(storage)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      dtype_(dtype) {
  TQ_CHECK(shape_.size() == strides_.size(), "[Tensor] shape {} and strides {} differ in rank",
           shape_str(shape_), shape_str(strides_));
  for (int64_t d : shape_) TQ_CHECK(d >= 0, "[Tensor] negative dimension in shape {}", shape_str(shape_));
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) TQ_CHECK(d >= 0, "[Tensor::empty] negative dimension in shape {}", shape_str(shape));
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(Storage::allocate(nbytes, false), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  for (int64_t d : shape) TQ_CHECK(d >= 0, "[Tensor::zeros] negative dimension in shape {}", shape_str(shape));
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(Storage::allocate(nbytes, true), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) t.set({i}, static_cast<double>(i));
  return t;
}

namespace {

// Reads/writes one element of any dtype as double.
inline double load_as_double(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::f64: return static_cast<const double*>(base)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    case DType::i8: return static_cast<const int8_t*>(base)[i];
    case DType::u8: return static_cast<const uint8_t*>(base)[i];
  }
  return 0.0;
}

inline void store_from_double(void* base, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::f32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[i] = v; break;
    case DType::bf16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(static_cast<float>(v)); break;
    case DType::f16: static_cast<uint16_t*>(base)[i] = f32_to_f16(static_cast<float>(v)); break;
    case DType::i32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); break;
    case DType::i8: static_cast<int8_t*>(base)[i] = static_cast<int8_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(base)[i] = static_cast<uint8_t>(v); break;
  }
}

// Calls f(logical_index, element_offset_from_view_start) for every element in row-major order.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, F f) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  const size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    f(i, off);
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

}  // namespace

Tensor Tensor::randn(const Shape& shape, Rng& rng, double stddev, DType dtype) {
  TQ_CHECK(dtype_is_float(dtype), "[Tensor::randn] dtype {} is not floating point", dtype_name(dtype));
  Tensor t = empty(shape, dtype);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) store_from_double(t.raw_data(), dtype, i, rng.normal() * stddev);
  return t;
}

Tensor Tensor::uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  Tensor t = empty(shape, dtype);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) store_from_double(t.raw_data(), dtype, i, rng.uniform(lo, hi));
  return t;
}

// ---- Tensor: metadata ----

int64_t Tensor::norm_dim(int64_t d, int64_t ndim, const char* op) const {
  const int64_t nd = d < 0 ? d + ndim : d;
  TQ_CHECK(nd >= 0 && nd < ndim, "[{}] dimension {} out of range for tensor of shape {}", op, d,
           shape_str(shape_));
  return nd;
}

int64_t Tensor::size(int64_t d) const { return shape_[static_cast<size_t>(norm_dim(d, dim(), "Tensor::size"))]; }
int64_t Tensor::stride(int64_t d) const {
  return strides_[static_cast<size_t>(norm_dim(d, dim(), "Tensor::stride"))];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_);
}

void* Tensor::raw_data() const {
  TQ_CHECK(defined(), "[Tensor::raw_data] tensor is undefined");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

void Tensor::check_writable(const char* op) const {
  TQ_CHECK(defined(), "[{}] tensor is undefined", op);
  TQ_CHECK(!storage_->read_only(), "[{}] tensor {} views read-only storage — hint: clone() it first",
           op, str());
}

// ---- Tensor: views ----

Tensor Tensor::view(const Shape& shape) const {
  TQ_CHECK(is_contiguous(), "[Tensor::view] tensor {} with strides {} is not contiguous — hint: use reshape()",
           str(), shape_str(strides_));
  Shape s = shape;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      TQ_CHECK(infer < 0, "[Tensor::view] more than one -1 in {}", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      TQ_CHECK(s[i] >= 0, "[Tensor::view] negative size in {}", shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    TQ_CHECK(known > 0 && numel() % known == 0, "[Tensor::view] cannot view {} as {}", str(),
             shape_str(shape));
    s[static_cast<size_t>(infer)] = numel() / known;
  }
  TQ_CHECK(shape_numel(s) == numel(), "[Tensor::view] cannot view {} ({} elements) as {}", str(),
           numel(), shape_str(shape));
  return Tensor(storage_, s, contiguous_strides(s), offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t a = norm_dim(d0, dim(), "Tensor::transpose");
  const int64_t b = norm_dim(d1, dim(), "Tensor::transpose");
  Shape sh = shape_, st = strides_;
  std::swap(sh[static_cast<size_t>(a)], sh[static_cast<size_t>(b)]);
  std::swap(st[static_cast<size_t>(a)], st[static_cast<size_t>(b)]);
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  TQ_CHECK(static_cast<int64_t>(dims.size()) == dim(), "[Tensor::permute] {} dims given for shape {}",
           dims.size(), shape_str(shape_));
  Shape sh(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = norm_dim(dims[i], dim(), "Tensor::permute");
    TQ_CHECK(!seen[static_cast<size_t>(d)], "[Tensor::permute] dimension {} repeated", d);
    seen[static_cast<size_t>(d)] = true;
    sh[i] = shape_[static_cast<size_t>(d)];
    st[i] = strides_[static_cast<size_t>(d)];
  }
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
  const size_t k = static_cast<size_t>(norm_dim(d, dim(), "Tensor::slice"));
  TQ_CHECK(0 <= start && start <= end && end <= shape_[k],
           "[Tensor::slice] range [{}, {}) out of bounds for dimension {} of shape {}", start, end, d,
           shape_str(shape_));
  Shape sh = shape_;
  sh[k] = end - start;
  return Tensor(storage_, sh, strides_, offset_ + start * strides_[k], dtype_);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  const size_t k = static_cast<size_t>(norm_dim(d, dim(), "Tensor::select"));
  TQ_CHECK(0 <= index && index < shape_[k], "[Tensor::select] index {} out of bounds for dimension {} of shape {}",
           index, d, shape_str(shape_));
  Shape sh = shape_, st = strides_;
  sh.erase(sh.begin() + static_cast<int64_t>(k));
  st.erase(st.begin() + static_cast<int64_t>(k));
  return Tensor(storage_, sh, st, offset_ + index * strides_[k], dtype_);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t k = norm_dim(d, dim() + 1, "Tensor::unsqueeze");
  Shape sh = shape_, st = strides_;
  const int64_t stride = k < dim() ? strides_[static_cast<size_t>(k)] * shape_[static_cast<size_t>(k)] : 1;
  sh.insert(sh.begin() + k, 1);
  st.insert(st.begin() + k, stride);
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  TQ_CHECK(static_cast<int64_t>(shape.size()) >= dim(), "[Tensor::expand] cannot expand {} to {}",
           shape_str(shape_), shape_str(shape));
  const size_t lead = shape.size() - shape_.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < shape_.size(); ++i) {
    const int64_t want = shape[lead + i];
    if (shape_[i] == want) {
      st[lead + i] = strides_[i];
    } else {
      TQ_CHECK(shape_[i] == 1, "[Tensor::expand] cannot expand {} to {} (dimension {})",
               shape_str(shape_), shape_str(shape), i);
      st[lead + i] = 0;
    }
  }
  return Tensor(storage_, shape, st, offset_, dtype_);
}

// ---- Tensor: copies ----

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype);
  out.copy_from(*this);
  return out;
}

void Tensor::copy_from(const Tensor& src) {
  check_writable("Tensor::copy_from");
  TQ_CHECK(src.defined(), "[Tensor::copy_from] source is undefined");
  TQ_CHECK(src.shape() == shape_, "[Tensor::copy_from] shape mismatch: destination {} source {}",
           shape_str(shape_), shape_str(src.shape()));
  const int64_t n = numel();
  if (n == 0) return;
  if (src.dtype() == dtype_ && is_contiguous() && src.is_contiguous()) {
    std::memmove(raw_data(), src.raw_data(), nbytes());
    return;
  }
  // Gather the source in logical order, then scatter into the destination.
  const void* sb = src.raw_data();
  const DType sd = src.dtype();
  if (sd == dtype_) {
    // Same dtype: element copy through byte offsets keeps bit patterns (NaN payloads, bf16 exact).
    const size_t es = dtype_size(dtype_);
    std::vector<char> bytes(static_cast<size_t>(n) * es);
    for_each_offset(src.shape(), src.strides(), [&](int64_t i, int64_t off) {
      std::memcpy(bytes.data() + static_cast<size_t>(i) * es, static_cast<const char*>(sb) + off * static_cast<int64_t>(es), es);
    });
    void* db = raw_data();
    for_each_offset(shape_, strides_, [&](int64_t i, int64_t off) {
      std::memcpy(static_cast<char*>(db) + off * static_cast<int64_t>(es), bytes.data() + static_cast<size_t>(i) * es, es);
    });
    return;
  }
  std::vector<double> tmp(static_cast<size_t>(n));
  for_each_offset(src.shape(), src.strides(),
                  [&](int64_t i, int64_t off) { tmp[static_cast<size_t>(i)] = load_as_double(sb, sd, off); });
  void* db = raw_data();
  for_each_offset(shape_, strides_,
                  [&](int64_t i, int64_t off) { store_from_double(db, dtype_, off, tmp[static_cast<size_t>(i)]); });
}

void Tensor::fill(double value) {
  check_writable("Tensor::fill");
  void* db = raw_data();
  for_each_offset(shape_, strides_, [&](int64_t, int64_t off) { store_from_double(db, dtype_, off, value); });
}

void Tensor::zero() { fill(0.0); }

double Tensor::item() const {
  TQ_CHECK(numel() == 1, "[Tensor::item] tensor {} has {} elements, expected 1", str(), numel());
  return load_as_double(raw_data(), dtype_, 0);
}

double Tensor::at(const std::vector<int64_t>& index) const {
  TQ_CHECK(static_cast<int64_t>(index.size()) == dim(), "[Tensor::at] {} indices for shape {}",
           index.size(), shape_str(shape_));
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    TQ_CHECK(index[i] >= 0 && index[i] < shape_[i], "[Tensor::at] index {} out of range for shape {}",
             shape_str(index), shape_str(shape_));
    off += index[i] * strides_[i];
  }
  return load_as_double(raw_data(), dtype_, off);
}

void Tensor::set(const std::vector<int64_t>& index, double value) {
  check_writable("Tensor::set");
  TQ_CHECK(static_cast<int64_t>(index.size()) == dim(), "[Tensor::set] {} indices for shape {}",
           index.size(), shape_str(shape_));
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    TQ_CHECK(index[i] >= 0 && index[i] < shape_[i], "[Tensor::set] index {} out of range for shape {}",
             shape_str(index), shape_str(shape_));
    off += index[i] * strides_[i];
  }
  store_from_double(raw_data(), dtype_, off, value);
}

double Tensor::flat(int64_t i) const {
  TQ_CHECK(i >= 0 && i < numel(), "[Tensor::flat] index {} out of range for {}", i, str());
  int64_t off = 0, rem = i;
  for (size_t d = shape_.size(); d-- > 0;) {
    off += (rem % shape_[d]) * strides_[d];
    rem /= shape_[d];
  }
  return load_as_double(raw_data(), dtype_, off);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  const void* b = raw_data();
  for_each_offset(shape_, strides_,
                  [&](int64_t i, int64_t off) { out[static_cast<size_t>(i)] = load_as_double(b, dtype_, off); });
  return out;
}

// ---- comparison helpers ----

std::string DiffReport::str() const {
  std::ostringstream os;
  if (!shapes_match) return "shape mismatch";
  os << "max_abs " << max_abs << ", max_rel " << max_rel << ", mismatches " << mismatches;
  if (first_mismatch >= 0) os << " (first at flat index " << first_mismatch << ": " << first_a << " vs " << first_b << ")";
  return os.str();
}

DiffReport compare(const Tensor& a, const Tensor& b, double rtol, double atol) {
  DiffReport r;
  if (a.shape() != b.shape()) {
    r.shapes_match = false;
    r.mismatches = 1;
    return r;
  }
  const std::vector<double> va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i) {
    const double d = std::fabs(va[i] - vb[i]);
    const bool nan_mismatch = std::isnan(va[i]) != std::isnan(vb[i]);
    if (!std::isnan(d)) {
      r.max_abs = std::max(r.max_abs, d);
      if (vb[i] != 0) r.max_rel = std::max(r.max_rel, d / std::fabs(vb[i]));
    }
    const bool bad = nan_mismatch || (!std::isnan(va[i]) && !(d <= atol + rtol * std::fabs(vb[i])));
    if (bad) {
      if (r.first_mismatch < 0) {
        r.first_mismatch = static_cast<int64_t>(i);
        r.first_a = va[i];
        r.first_b = vb[i];
      }
      ++r.mismatches;
    }
  }
  return r;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  return compare(a, b, rtol, atol).ok();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const DiffReport r = compare(a, b, 0.0, 0.0);
  TQ_CHECK(r.shapes_match, "[max_abs_diff] shapes differ: {} vs {}", shape_str(a.shape()), shape_str(b.shape()));
  return r.max_abs;
}

}  // namespace tq
