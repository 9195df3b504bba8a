#include "core/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <Eigen/Core>
#include <oneapi/dnnl/dnnl.hpp>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/parallel.h"

namespace tq {

// Note [GEMM primitive cache]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Building a oneDNN matmul primitive costs far more than a small GEMM, so built primitives are kept
// in a map keyed by everything baked into them: dtype, transposes, M, N, K, lda, ldb, ldc, the bit
// patterns of alpha (output scale) and beta (sum post-op scale; absent when beta == 0) and the
// OpenMP thread count (oneDNN partitions work for the thread count seen at creation). The map is
// guarded by a mutex held only for lookup/insert; execution runs outside the lock on a copy of the
// (reference-counted) primitive handle. It is cleared wholesale past kGemmCacheMax entries, which
// only a workload with unboundedly many shapes reaches. Scratchpads are user-provided from a
// per-thread buffer and streams are per calling thread, so concurrent calls from different
// std::threads never share mutable oneDNN state.

namespace {

constexpr size_t kGemmCacheMax = 1024;

enum class GemmKind : uint8_t { f32, bf16 };

std::string shape_desc(const GemmShape& s) {
  return fmt::format("(trans_a={}, trans_b={}, M={}, N={}, K={}, lda={}, ldb={}, ldc={})",
                     s.trans_a ? 1 : 0, s.trans_b ? 1 : 0, s.M, s.N, s.K, s.lda, s.ldb, s.ldc);
}

// Throws tq::Error for any argument BLAS would reject; runs before any parallel work.
void check_args(const char* fn, const GemmShape& s, const void* A, const void* B, const void* C) {
  TQ_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0, "[gemm] {} {}: negative size", fn, shape_desc(s));
  const int64_t a_row = s.trans_a ? s.M : s.K;  // stored row length of A
  const int64_t b_row = s.trans_b ? s.K : s.N;
  TQ_CHECK(s.lda >= std::max<int64_t>(1, a_row),
           "[gemm] {} {}: lda ({}) < {} ({}) — hint: A is stored [{}, {}], lda is its row stride",
           fn, shape_desc(s), s.lda, s.trans_a ? "M" : "K", a_row, s.trans_a ? s.K : s.M, a_row);
  TQ_CHECK(s.ldb >= std::max<int64_t>(1, b_row),
           "[gemm] {} {}: ldb ({}) < {} ({}) — hint: B is stored [{}, {}], ldb is its row stride",
           fn, shape_desc(s), s.ldb, s.trans_b ? "K" : "N", b_row, s.trans_b ? s.N : s.K, b_row);
  TQ_CHECK(s.ldc >= std::max<int64_t>(1, s.N),
           "[gemm] {} {}: ldc ({}) < N ({}) — hint: C is stored [M, N], ldc is its row stride",
           fn, shape_desc(s), s.ldc, s.N);
  if (s.M > 0 && s.N > 0) {
    TQ_CHECK(C != nullptr, "[gemm] {} {}: C is null", fn, shape_desc(s));
    if (s.K > 0) {
      TQ_CHECK(A != nullptr && B != nullptr, "[gemm] {} {}: A or B is null", fn, shape_desc(s));
    }
  }
}

// C = beta * C, never reading C when beta == 0 (it may hold NaN garbage). Used for K == 0 and
// alpha == 0, where A and B are not read (as in BLAS).
template <class T>
void scale_c(const GemmShape& s, T beta, T* C) {
  parallel_for(s.M, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* c = C + i * s.ldc;
      if (beta == T(0)) {
        for (int64_t j = 0; j < s.N; ++j) c[j] = T(0);
      } else {
        for (int64_t j = 0; j < s.N; ++j) c[j] *= beta;
      }
    }
  });
}

uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// ---- oneDNN state ----

struct GemmKey {
  GemmKind kind;
  bool trans_a, trans_b;
  int64_t M, N, K, lda, ldb, ldc;
  uint32_t alpha_bits, beta_bits;
  int nthreads;
  bool operator==(const GemmKey& o) const {
    return kind == o.kind && trans_a == o.trans_a && trans_b == o.trans_b && M == o.M &&
           N == o.N && K == o.K && lda == o.lda && ldb == o.ldb && ldc == o.ldc &&
           alpha_bits == o.alpha_bits && beta_bits == o.beta_bits && nthreads == o.nthreads;
  }
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& k) const {
    uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](uint64_t v) {
      h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    };
    mix(static_cast<uint64_t>(k.kind) | (uint64_t{k.trans_a} << 8) | (uint64_t{k.trans_b} << 9));
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc}) mix(static_cast<uint64_t>(v));
    mix((uint64_t{k.alpha_bits} << 32) | k.beta_bits);
    mix(static_cast<uint64_t>(k.nthreads));
    return static_cast<size_t>(h);
  }
};

struct GemmPrim {
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md, scratch_md;
  size_t scratch_bytes = 0;
};

// TQ_CPU also limits oneDNN's JIT (must happen before its first primitive), so a forced-avx2 run
// exercises avx2 GEMM kernels too.
dnnl::engine make_engine() {
  switch (cpu_target()) {
    case CpuTarget::ref: dnnl::set_max_cpu_isa(dnnl::cpu_isa::sse41); break;
    case CpuTarget::avx2: dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2_vnni); break;
    case CpuTarget::avx512: break;
  }
  spdlog::debug("gemm: oneDNN {}.{}.{}, target {}", dnnl_version()->major, dnnl_version()->minor,
                dnnl_version()->patch, cpu_target_name(cpu_target()));
  return dnnl::engine(dnnl::engine::kind::cpu, 0);
}

// The engine is the first member so that it outlives the cached primitives at exit.
struct GemmCache {
  dnnl::engine engine = make_engine();
  std::mutex mu;
  std::unordered_map<GemmKey, std::shared_ptr<const GemmPrim>, GemmKeyHash> map;
};

GemmCache& gemm_cache() {
  static GemmCache cache;
  return cache;
}

dnnl::engine& dnnl_engine() { return gemm_cache().engine; }

// One in-order stream per calling thread (oneDNN does not promise a stream is thread-safe).
dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream strm(dnnl_engine());
  return strm;
}

// Per-thread scratchpad, 64-byte aligned, grown on demand.
void* scratch_buffer(size_t bytes) {
  struct Buf {
    void* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (bytes == 0) return nullptr;
  if (bytes > buf.n) {
    std::free(buf.p);
    buf.p = nullptr;
    buf.n = 0;
    const size_t n = (bytes + 63) / 64 * 64;
    buf.p = std::aligned_alloc(64, n);
    TQ_CHECK(buf.p != nullptr, "[gemm] cannot allocate a {}-byte scratchpad", n);
    buf.n = n;
  }
  return buf.p;
}

// Row-major descriptors from dims + strides: a transpose is the swapped stride pair.
std::shared_ptr<const GemmPrim> build_prim(const GemmKey& k, float alpha, float beta) {
  using dt = dnnl::memory::data_type;
  const dt in_dt = k.kind == GemmKind::bf16 ? dt::bf16 : dt::f32;
  const dnnl::memory::dims a_strides =
      k.trans_a ? dnnl::memory::dims{1, k.lda} : dnnl::memory::dims{k.lda, 1};
  const dnnl::memory::dims b_strides =
      k.trans_b ? dnnl::memory::dims{1, k.ldb} : dnnl::memory::dims{k.ldb, 1};
  auto p = std::make_shared<GemmPrim>();
  p->a_md = dnnl::memory::desc({k.M, k.K}, in_dt, a_strides);
  p->b_md = dnnl::memory::desc({k.K, k.N}, in_dt, b_strides);
  p->c_md = dnnl::memory::desc({k.M, k.N}, dt::f32, dnnl::memory::dims{k.ldc, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {  // beta == 0: no sum post-op, so C is written and never read
    dnnl::post_ops ops;
    ops.append_sum(beta);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc desc(p->a_md, p->b_md, p->c_md);
  const dnnl::matmul::primitive_desc pd(desc, attr, dnnl_engine());
  p->scratch_md = pd.scratchpad_desc();
  p->scratch_bytes = p->scratch_md.get_size();
  p->prim = dnnl::matmul(pd);
  spdlog::trace("gemm: built {} matmul {} with {}", k.kind == GemmKind::bf16 ? "bf16" : "f32",
                pd.impl_info_str(), k.nthreads);
  return p;
}

std::shared_ptr<const GemmPrim> get_prim(GemmKind kind, const GemmShape& s, float alpha,
                                         float beta) {
  const GemmKey key{kind, s.trans_a, s.trans_b, s.M, s.N, s.K, s.lda, s.ldb, s.ldc,
                    float_bits(alpha), float_bits(beta), num_threads()};
  GemmCache& cache = gemm_cache();
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.map.find(key);
    if (it != cache.map.end()) return it->second;
  }
  // Built outside the lock: two threads missing on the same key both build; one insert wins.
  std::shared_ptr<const GemmPrim> p;
  try {
    p = build_prim(key, alpha, beta);
  } catch (const dnnl::error& e) {
    TQ_THROW("[gemm] oneDNN cannot build a {} matmul for {}: {}",
             kind == GemmKind::bf16 ? "bf16" : "f32", shape_desc(s), e.what());
  }
  std::lock_guard<std::mutex> lock(cache.mu);
  if (cache.map.size() >= kGemmCacheMax) cache.map.clear();
  return cache.map.emplace(key, std::move(p)).first->second;
}

void run_dnnl(GemmKind kind, const GemmShape& s, float alpha, const void* A, const void* B,
              float beta, float* C) {
  const std::shared_ptr<const GemmPrim> p = get_prim(kind, s, alpha, beta);
  dnnl::engine& eng = dnnl_engine();
  // oneDNN takes non-const handles; A and B are only read.
  dnnl::memory a_mem(p->a_md, eng, const_cast<void*>(A));
  dnnl::memory b_mem(p->b_md, eng, const_cast<void*>(B));
  dnnl::memory c_mem(p->c_md, eng, C);
  dnnl::memory s_mem(p->scratch_md, eng, scratch_buffer(p->scratch_bytes));
  dnnl::stream& strm = dnnl_stream();
  try {
    p->prim.execute(strm, {{DNNL_ARG_SRC, a_mem},
                           {DNNL_ARG_WEIGHTS, b_mem},
                           {DNNL_ARG_DST, c_mem},
                           {DNNL_ARG_SCRATCHPAD, s_mem}});
    strm.wait();
  } catch (const dnnl::error& e) {
    TQ_THROW("[gemm] oneDNN matmul failed for {}: {}", shape_desc(s), e.what());
  }
}

// ---- f64: Eigen on strided maps ----

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using MutMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class OpA, class OpB>
void eigen_gemm(const OpA& a, const OpB& b, double alpha, double beta, MutMap& c) {
  if (beta == 0.0) {
    c.noalias() = (alpha * a) * b;  // assigns (setZero + accumulate): C is never read
  } else {
    if (beta != 1.0) c *= beta;
    c.noalias() += (alpha * a) * b;
  }
}

// ---- bf16 -> f32 fallback ----

// Converts a stored [rows, cols] bf16 matrix with leading dimension ld into a dense f32 copy.
std::vector<float> bf16_to_f32_dense(const uint16_t* X, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  float* o = out.data();
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < cols; ++c) o[r * cols + c] = bf16_to_f32(X[r * ld + c]);
    }
  });
  return out;
}

// Element (i, k) of op(A) and (k, j) of op(B) in a stored operand.
inline int64_t a_index(const GemmShape& s, int64_t i, int64_t k) {
  return s.trans_a ? k * s.lda + i : i * s.lda + k;
}
inline int64_t b_index(const GemmShape& s, int64_t k, int64_t j) {
  return s.trans_b ? j * s.ldb + k : k * s.ldb + j;
}

template <class T, class Load>
void ref_loops(const GemmShape& s, double alpha, double beta, T* C, const Load& ab) {
  for (int64_t i = 0; i < s.M; ++i) {
    for (int64_t j = 0; j < s.N; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < s.K; ++k) acc += ab(i, j, k);
      T& c = C[i * s.ldc + j];
      const double prev = beta == 0.0 ? 0.0 : beta * static_cast<double>(c);
      c = static_cast<T>(alpha * acc + prev);
    }
  }
}

}  // namespace

GemmShape gemm_shape(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  GemmShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.M = M;
  s.N = N;
  s.K = K;
  s.lda = std::max<int64_t>(1, trans_a ? M : K);
  s.ldb = std::max<int64_t>(1, trans_b ? K : N);
  s.ldc = std::max<int64_t>(1, N);
  return s;
}

void gemm(const GemmShape& s, float alpha, const float* A, const float* B, float beta, float* C) {
  check_args("f32", s, A, B, C);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0 || alpha == 0.0f) {
    scale_c(s, beta, C);
    return;
  }
  run_dnnl(GemmKind::f32, s, alpha, A, B, beta, C);
}

void gemm(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
          double* C) {
  check_args("f64", s, A, B, C);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0 || alpha == 0.0) {
    scale_c(s, beta, C);
    return;
  }
  // A stored [M, K] or [K, M]; B stored [K, N] or [N, K]; Eigen handles the transposed maps
  // without copies.
  const ConstMap a_st(A, s.trans_a ? s.K : s.M, s.trans_a ? s.M : s.K, Eigen::OuterStride<>(s.lda));
  const ConstMap b_st(B, s.trans_b ? s.N : s.K, s.trans_b ? s.K : s.N, Eigen::OuterStride<>(s.ldb));
  MutMap c(C, s.M, s.N, Eigen::OuterStride<>(s.ldc));
  if (!s.trans_a && !s.trans_b) eigen_gemm(a_st, b_st, alpha, beta, c);
  if (!s.trans_a && s.trans_b) eigen_gemm(a_st, b_st.transpose(), alpha, beta, c);
  if (s.trans_a && !s.trans_b) eigen_gemm(a_st.transpose(), b_st, alpha, beta, c);
  if (s.trans_a && s.trans_b) eigen_gemm(a_st.transpose(), b_st.transpose(), alpha, beta, c);
}

void gemm_bf16(const GemmShape& s, float alpha, const uint16_t* A, const uint16_t* B, float beta,
               float* C) {
  check_args("bf16", s, A, B, C);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0 || alpha == 0.0f) {
    scale_c(s, beta, C);
    return;
  }
  if (cpu_features().avx512_bf16) {
    run_dnnl(GemmKind::bf16, s, alpha, A, B, beta, C);
    return;
  }
  // No native bf16 dot products: widen (exactly) to f32 and run the f32 GEMM.
  const int64_t a_rows = s.trans_a ? s.K : s.M, a_cols = s.trans_a ? s.M : s.K;
  const int64_t b_rows = s.trans_b ? s.N : s.K, b_cols = s.trans_b ? s.K : s.N;
  const std::vector<float> a = bf16_to_f32_dense(A, a_rows, a_cols, s.lda);
  const std::vector<float> b = bf16_to_f32_dense(B, b_rows, b_cols, s.ldb);
  GemmShape sf = s;
  sf.lda = a_cols;
  sf.ldb = b_cols;
  run_dnnl(GemmKind::f32, sf, alpha, a.data(), b.data(), beta, C);
}

void gemm_ref(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
              float* C) {
  check_args("ref f32", s, A, B, C);
  ref_loops(s, alpha, beta, C, [&](int64_t i, int64_t j, int64_t k) {
    return static_cast<double>(A[a_index(s, i, k)]) * static_cast<double>(B[b_index(s, k, j)]);
  });
}

void gemm_ref(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
              double* C) {
  check_args("ref f64", s, A, B, C);
  ref_loops(s, alpha, beta, C, [&](int64_t i, int64_t j, int64_t k) {
    return A[a_index(s, i, k)] * B[b_index(s, k, j)];
  });
}

void gemm_bf16_ref(const GemmShape& s, float alpha, const uint16_t* A, const uint16_t* B,
                   float beta, float* C) {
  check_args("bf16 ref", s, A, B, C);
  ref_loops(s, alpha, beta, C, [&](int64_t i, int64_t j, int64_t k) {
    return static_cast<double>(bf16_to_f32(A[a_index(s, i, k)])) *
           static_cast<double>(bf16_to_f32(B[b_index(s, k, j)]));
  });
}

int64_t gemm_cache_size() {
  GemmCache& cache = gemm_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  return static_cast<int64_t>(cache.map.size());
}

void gemm_cache_clear() {
  GemmCache& cache = gemm_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  cache.map.clear();
}

}  // namespace tq
