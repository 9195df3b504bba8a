// Tensor: a cheap handle over shared, 64-byte-aligned storage with a shape, element strides, an
// element offset and a dtype. Row-major, outermost dimension first (a Linear weight is [out, in]).
//
//   Tensor x = Tensor::zeros({B, T, C});          // contiguous f32
//   Tensor xt = x.transpose(1, 2);                 // a view: same storage, swapped strides
//   float* p = x.data<float>();                    // typed pointer at the view's offset
//   Tensor y = xt.contiguous();                    // copies only when needed
//
// Invariant: a tensor is contiguous iff strides[d] == prod(shape[d+1:]) for every d with shape[d] > 1.
// Views share storage; writes through one are visible through the others.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace tq {

class Rng;

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

// Raw bytes, 64-byte aligned when allocated here; may also borrow memory (an mmap'ed file) that
// `owner` keeps alive.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t nbytes, bool zero_fill);
  static std::shared_ptr<Storage> borrow(void* data, size_t nbytes, std::shared_ptr<void> owner,
                                         bool read_only);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  bool read_only() const { return read_only_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  bool owned_ = false;
  bool read_only_ = false;
  std::shared_ptr<void> owner_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype);

  // Factories. All return contiguous tensors.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor arange(int64_t n, DType dtype = DType::f32);
  static Tensor randn(const Shape& shape, Rng& rng, double stddev = 1.0, DType dtype = DType::f32);
  static Tensor uniform(const Shape& shape, Rng& rng, double lo, double hi,
                        DType dtype = DType::f32);
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::string str() const;  // "f32[2, 3]"

  // Typed pointer to the first element of the view. Checks the dtype.
  template <class T>
  T* data() const;
  void* raw_data() const;  // untyped pointer at the view's offset

  // Views (no copy). `view` needs a contiguous tensor; `reshape` copies when it must.
  Tensor view(const Shape& shape) const;  // one dimension may be -1
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t d, int64_t start, int64_t end) const;  // [start, end) of dimension d
  Tensor select(int64_t d, int64_t index) const;              // drops dimension d
  Tensor unsqueeze(int64_t d) const;
  Tensor expand(const Shape& shape) const;  // broadcast size-1 dims with stride 0

  // Copies.
  Tensor contiguous() const;  // self when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;  // converting copy (self when the dtype already matches)
  void copy_from(const Tensor& src);  // same shape; converts dtype; handles any strides
  void fill(double value);
  void zero();

  // Element access for tests and small code (converts to/from double; not for hot loops).
  double item() const;  // numel() == 1
  double at(const std::vector<int64_t>& index) const;
  void set(const std::vector<int64_t>& index, double value);
  double flat(int64_t i) const;  // i-th element in row-major logical order
  std::vector<double> to_vector() const;  // logical order

 private:
  int64_t norm_dim(int64_t d, int64_t ndim, const char* op) const;
  void check_writable(const char* op) const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;  // in elements
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::f32;
};

// Comparison helpers for tests: element-wise |a - b| <= atol + rtol * |b|.
struct DiffReport {
  double max_abs = 0;
  double max_rel = 0;
  int64_t mismatches = 0;
  int64_t first_mismatch = -1;  // flat index
  double first_a = 0, first_b = 0;
  bool shapes_match = true;
  bool ok() const { return shapes_match && mismatches == 0; }
  std::string str() const;
};
DiffReport compare(const Tensor& a, const Tensor& b, double rtol, double atol);
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
double max_abs_diff(const Tensor& a, const Tensor& b);

// ---- template definitions ----

template <class T>
T* Tensor::data() const {
  TQ_CHECK(defined(), "[Tensor::data] tensor is undefined");
  TQ_CHECK(dtype_of<T>() == dtype_, "[Tensor::data] requested {} from a {} tensor {}",
           dtype_name(dtype_of<T>()), dtype_name(dtype_), shape_str(shape_));
  return static_cast<T*>(raw_data());
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  TQ_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "[Tensor::from_vector] {} values for shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>());
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

}  // namespace tq
