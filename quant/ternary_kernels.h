// Internal interface between ternary_pack.cpp (dispatch, validation) and the per-ISA kernel
// translation units ternary_kernels_<isa>.cpp. Raw pointers and PODs only: the ISA files are compiled
// with AVX flags and must not instantiate inline library code (std templates, Tensor) that the linker
// could pick for baseline callers. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tq::quant {
struct PackedTernary;
struct QuantizedActs;
}  // namespace tq::quant

namespace tq::quant::detail {

// Note [Per-token scale after the groups]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// y[t, j] = bias_j + Σ_g α_jg·s_tg·(sum_tjg − gsum_tg). Every kernel (scalar, ymm, zmm; GEMV and
// GEMM) evaluates it in one order, so all give the same bits: acc = 0; per group g in order,
// acc = fma(float(sum − gsum), p, acc) with p = α (one scale per token, the default) or p = α·s
// (per-group scales); then y = fma(acc, s, bias) (per token) or acc + bias (per group). With a
// per-token scale, s thus multiplies once per output instead of once per group (one multiply and
// one broadcast less per (row block, token, group) in the SIMD epilogues; until the tenth session
// the kernels computed p = α·s in every group).
struct TernaryArgs {
  const uint8_t* codes = nullptr;    // [rows_padded/16, cols/16, 64]
  const uint16_t* scales = nullptr;  // f16 bits [rows_padded/16, G, 16], Note [Packed ternary tile]
  const float* bias = nullptr;       // [rows_padded]
  int64_t rows = 0, rows_padded = 0, cols = 0;  // G = cols / 128
  const int8_t* q = nullptr;         // [T, cols]
  const float* xscale = nullptr;     // [T] or [T, G]
  const int32_t* gsum = nullptr;     // [T, G]
  int64_t tokens = 0;
  bool per_group = false;
};

// The decode kernels (ymm and zmm) prefetch each weight stream this many bytes ahead: the hardware
// prefetcher stops at 4 KiB pages, and without it 2048×8192 (long row blocks) streamed at ≈ 0.7 of
// the read bandwidth instead of ≈ 0.9 (1 thread, docs/kernels.md). The α stream is prefetched as
// many groups ahead as the codes (2048 B = 32 tiles = 4 groups). See Note [Decode prefetch] in
// ternary_kernels_zmm.inc.
constexpr int64_t kPrefetchBytes = 2048;
constexpr int64_t kPrefetchGroups = kPrefetchBytes / (64 * 8);

// Where the next pass of a decode stream starts, relative to the byte `ahead` bytes into its row
// block of `block_bytes` when nb row blocks are streamed at once: `ahead` itself inside the block,
// else skipped past the other nb − 1 blocks (Note [Decode prefetch]). static: every ISA file keeps
// its own copy (no inline function shared across files compiled with different flags).
static constexpr int64_t stream_ahead(int nb, int64_t pos, int64_t ahead, int64_t block_bytes) {
  return pos + ahead < block_bytes ? ahead : ahead + (nb - 1) * block_bytes;
}

// y[t, j] for j in [r0, min(r1, rows)); r0, r1 multiples of 16. See ternary_pack.h for the formula.
using GemmRowsFn = void (*)(const TernaryArgs& a, int64_t r0, int64_t r1, float* y,
                            int64_t ldy) noexcept;
// acc[t, j, g] (i32 [T, rows_padded, G]) for j in [r0, r1).
using GroupSumsFn = void (*)(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;

void gemm_rows_scalar(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept;
void group_sums_scalar(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;
void gemm_rows_avx2(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept;
void group_sums_avx2(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;
void gemm_rows_avxvnni(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept;
void group_sums_avxvnni(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;
void gemm_rows_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, float* y,
                          int64_t ldy) noexcept;
void group_sums_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;
// The kernels' arguments for w and x (ternary_pack.cpp; the tests call kernels directly with it).
TernaryArgs make_args(const PackedTernary& w, const QuantizedActs& x);

// The same kernels with the prefill tiles decoded by GFNI (Note [GFNI tile decode]); same results.
void gemm_rows_avx512gfni(const TernaryArgs& a, int64_t r0, int64_t r1, float* y,
                          int64_t ldy) noexcept;
void group_sums_avx512gfni(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept;

// Roofline probes (quant/roofline.cpp). int8 dot-product throughput: runs `iters` iterations on the
// calling thread and returns the integer ops executed (2 per multiply-add).
double int8_dot_probe_avx2(int64_t iters) noexcept;
double int8_dot_probe_avxvnni(int64_t iters) noexcept;
double int8_dot_probe_avx512vnni(int64_t iters) noexcept;
// Streaming read of n bytes (n % 256 == 0, p 64-byte aligned); returns a value depending on every byte.
uint64_t read_stream_avx512(const uint8_t* p, size_t n) noexcept;
uint64_t read_stream_avx2(const uint8_t* p, size_t n) noexcept;

}  // namespace tq::quant::detail
