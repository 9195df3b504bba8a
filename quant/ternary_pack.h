// Packed ternary weights for CPU inference and the kernels that multiply them by int8 activations.
// A weight W [rows, cols] with codes t ∈ {-1, 0, 1}, α per (row, 128-input group) and a Tequila bias
// c per row is packed into 64-byte tiles of 16 rows × 16 inputs holding the 2-bit codes t+1 in the
// order VPDPBUSD consumes them (see Note [Packed ternary tile] and docs/formats.md).
//
//   PackedTernary w = pack_ternary(ql.export_ternary());   // or pack_ternary(codes, alpha, bias)
//   QuantizedActs x;  quantize_acts(h, T, w.cols, ActScale::per_token, x);   // act_quant.h
//   ternary_gemm(w, x, y, /*ldy=*/w.rows);                  // y [T, rows] f32, best ISA
//
// The kernels (one translation unit per ISA: ternary_kernels_{scalar,avx2,avxvnni,avx512vnni}.cpp)
// are chosen at run time; TQ_KERNEL=scalar|avx2|avxvnni|avx512vnni forces a lower one. See
// docs/kernels.md for the loop structure and measured speed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "quant/act_quant.h"
#include "quant/quant.h"

namespace tq::quant {

// Note [Packed ternary tile]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// A tile covers rows 16·rb .. 16·rb+15 and inputs 16·kt .. 16·kt+15 and is 64 bytes. Byte 4·r + k
// (r = row in the tile 0..15, k = 0..3) holds at bits 2s..2s+1 (s = 0..3) the code c = t+1 of row r,
// input 16·kt + 4·s + k. So (tile >> 2s) & 0x03 per byte is, in one zmm, the unsigned operand of
// VPDPBUSD for 16 rows (one per i32 lane) × inputs 4s..4s+3 (the 4 bytes of a lane); the signed operand
// is those 4 activation bytes broadcast. The two 32-byte halves are rows 0–7 and 8–15 (AVX2/AVX-VNNI).
// Tiles of a row block are contiguous along inputs; a 128-group is 8 consecutive tiles. Since the
// codes are t+1, Σ c·q = Σ t·q + Σ q: the epilogue subtracts the group's activation sum (gsum).
// α is pre-tiled the same way: scales [rows_padded/16, G, 16], so the α of row 16·rb + r, group g
// is element (rb·G + g)·16 + r, and the 16 rows of (rb, g) are 32 contiguous bytes: one VCVTPH2PS
// puts them in the lanes of the tile's accumulator (AVX2: two 16-byte halves, rows 0–7 and 8–15),
// with no transposition in the kernels.

enum class KernelIsa { scalar, avx2, avxvnni, avx512vnni };

std::vector<KernelIsa> available_isas();  // scalar always; the others per CPU features (TQ_CPU too)
// Detected once; TQ_KERNEL forces a (lower) ISA; an unavailable one is a tq::Error.
KernelIsa best_isa();
// What best_isa() resolves for a given TQ_KERNEL value (nullptr or "" or "auto": the best available).
// Throws tq::Error naming TQ_KERNEL and the available ISAs for unknown or unavailable names.
KernelIsa resolve_kernel_isa(const char* tq_kernel_value);
const char* isa_name(KernelIsa isa);  // "scalar", "avx2", "avxvnni", "avx512vnni"
// The kernel build ternary_gemm runs for an ISA: isa_name, or "avx512vnni+gfni" where the AVX-512
// kernels' GFNI build is picked (Note [GFNI tile decode]).
const char* kernel_name(KernelIsa isa);

constexpr int64_t kTileRows = 16, kTileCols = 16, kPackGroup = 128;
constexpr int64_t kTileBytes = kTileRows * kTileCols / 4;  // 64
static_assert(kTileBytes == 64, "a tile is one cache line / one zmm");

struct PackedTernary {  // weight [rows, cols]; cols % 128 == 0
  int64_t rows = 0, cols = 0, rows_padded = 0;  // rows_padded = round_up(rows, 16)
  Tensor codes;   // u8 [rows_padded/16, cols/16, 64]: codes t+1, see Note [Packed ternary tile]
  Tensor scales;  // f16 [rows_padded/16, cols/128, 16]: α of row 16·rb+r, group g at [rb, g, r];
                  // 0 on padded rows. Note [Packed ternary tile]; unpack_scales gives [rows, G].
  Tensor bias;    // f32 [rows_padded]: Tequila c_j; 0 on padded rows
  int64_t groups() const { return cols / kPackGroup; }
  size_t bytes() const;  // codes + scales + bias
};

// From a TernaryView (quant/quant.h). α must be constant over each 128-input group (tensor/channel
// granularity, or group granularity with group_size % 128 == 0), else tq::Error. α is stored as f16
// (rounded to nearest even); |α| must fit f16 (< 65504).
PackedTernary pack_ternary(const TernaryView& v);
// codes i8 [rows, cols] in {-1, 0, 1}; alpha f32 [rows, cols/128]; bias f32 [rows] or undefined (0).
PackedTernary pack_ternary(const Tensor& codes, const Tensor& alpha, const Tensor& bias);
Tensor unpack_codes(const PackedTernary& w);  // i8 [rows, cols], for tests
Tensor unpack_scales(const PackedTernary& w);  // f32 [rows, cols/128] row-major, α as stored (f16)

// y[t, j] (j < rows; ldy ≥ rows) = Σ_g s_{t(,g)}·α_{j,g}·(acc_{t,j,g} − gsum_{t,g}) + bias_j,
//   acc_{t,j,g} = Σ_{i∈g} (t_{j,i}+1)·q_{t,i}   (int32; |acc| ≤ 128·2·128, cannot overflow).
// Evaluated in f32 in the same order on every ISA: p = α_{j,g}·s_{t,g}; y = fma(float(acc − gsum), p, y)
// for g = 0, 1, ...; then y + bias_j. x.cols must equal w.cols. y [T, ldy].
void ternary_gemm(const PackedTernary& w, const QuantizedActs& x, float* y, int64_t ldy,
                  KernelIsa isa = best_isa());
// Single-threaded over rows [r0, r1) (multiples of 16; r1 may be rows_padded; rows ≥ w.rows are not
// written). The engine partitions rows across threads inside its own parallel region; ternary_gemm is
// parallel_for over row blocks. Validates its arguments (throws) — call it before entering a region,
// or use ternary_gemm_rows_unchecked inside one.
void ternary_gemm_rows(const PackedTernary& w, const QuantizedActs& x, int64_t r0, int64_t r1,
                       float* y, int64_t ldy, KernelIsa isa);
// The same without validation (noexcept): for use inside parallel regions after one
// ternary_gemm_check(w, x, ldy, isa) before it.
void ternary_gemm_check(const PackedTernary& w, const QuantizedActs& x, int64_t ldy, KernelIsa isa);
void ternary_gemm_rows_unchecked(const PackedTernary& w, const QuantizedActs& x, int64_t r0,
                                 int64_t r1, float* y, int64_t ldy, KernelIsa isa) noexcept;
// Raw per-group integer sums acc [T, rows_padded, cols/128] (tests compare ISAs exactly).
void ternary_group_sums(const PackedTernary& w, const QuantizedActs& x, int32_t* acc, KernelIsa isa);

}  // namespace tq::quant
