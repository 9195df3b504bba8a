// The one dense GEMM entry point: C = alpha * op(A) * op(B) + beta * C, row-major, with leading
// dimensions (elements between consecutive rows as stored), like BLAS sgemm but row-major.
//   op(A) is [M, K]: A is stored [M, K] (lda >= K) or, with trans_a, [K, M] (lda >= M).
//   op(B) is [K, N]: B is stored [K, N] (ldb >= N) or, with trans_b, [N, K] (ldb >= K).
//   C is [M, N] (ldc >= N).
// f32 runs on oneDNN matmul with a cache of built primitives (keyed by shapes, strides, transposes,
// alpha, beta); f64 runs on the reference path; bf16 inputs (uint16_t bit patterns) with f32
// output run on oneDNN when the CPU has AVX512-BF16 (else converted and run in f32).
// `gemm_ref` is the plain triple loop in double accumulation that tests compare against.
// Call from outside OpenMP parallel regions; the f32/bf16 paths use all threads themselves.
#pragma once

#include <cstdint>

namespace tq {

struct GemmShape {
  bool trans_a = false;
  bool trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

void gemm(const GemmShape& s, float alpha, const float* A, const float* B, float beta, float* C);
void gemm(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
          double* C);
void gemm_bf16(const GemmShape& s, float alpha, const uint16_t* A, const uint16_t* B, float beta,
               float* C);

// Reference implementations (always built; the oracle for tests).
void gemm_ref(const GemmShape& s, float alpha, const float* A, const float* B, float beta, float* C);
void gemm_ref(const GemmShape& s, double alpha, const double* A, const double* B, double beta,
              double* C);
void gemm_bf16_ref(const GemmShape& s, float alpha, const uint16_t* A, const uint16_t* B,
                   float beta, float* C);

// Convenience: contiguous operands (lda/ldb/ldc = natural row lengths).
GemmShape gemm_shape(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);

// Contiguous operands, alpha = 1: C[M, N] = op(A)·op(B) + beta·C (float or double).
template <class T>
void gemm_contiguous(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A,
                     const T* B, T beta, T* C) {
  gemm(gemm_shape(trans_a, trans_b, M, N, K), T(1), A, B, beta, C);
}

// Number of oneDNN primitives currently cached (for tests and diagnostics).
int64_t gemm_cache_size();
void gemm_cache_clear();

}  // namespace tq
