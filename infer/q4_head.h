// The optional 4-bit LM head (EngineOptions::lm_head = "q4"): the weights W [V, C] quantized to
// symmetric 4-bit codes with one f16 scale per (row, group of 32 inputs), packed in 64-byte tiles
// for the AVX-512 VNNI GEMV (fused_ops.h lm_head_q4). Decode reads 9C/16 bytes per vocab row
// instead of C (int8): 148 MB instead of 263 MB for LLaMA-3.2-1B.
//
//   Q4Head h = q4_head_pack(w, V, C);          // plan tensors lm_head.codes, lm_head.scales
//   int c = q4_code(h.codes.data<uint8_t>(), C, j, i);   // code of W[j, i] in [-7, 7]
//
// See Note [q4 LM head layout] and docs/formats.md.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace tq::infer {

// Note [q4 LM head layout]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Quantization, per row j and group g of kQ4Group = 32 inputs: α = f16(min(max|w| / 7, 65504)) (the
// division in f32, then f16 round-half-even); codes c = clamp(round_half_even(w / α), -7, 7) with the
// division in f64 by the stored α (all codes 0 when α is 0). Stored as u = c + 8 ∈ [1, 15].
// Codes: u8 [Vp/16, C/8, 64] with Vp = V rounded up to 16 (padded rows: u = 8, α = 0). Tile (b, k)
// is 64 bytes covering rows 16b..16b+15 and inputs 8k..8k+7; byte 4r + e (r < 16, e < 4) holds
//   low nibble  = u[16b + r, 8k + e],   high nibble = u[16b + r, 8k + 4 + e].
// So tile & 0x0F is the u8 operand of VPDPBUSD for 16 rows (one per 32-bit lane) × inputs 8k..8k+3,
// and (tile >> 4) & 0x0F the one for inputs 8k+4..8k+7, each against the 4 int8 activations of those
// inputs broadcast to all lanes. Scales: f16 [Vp/16, C/32, 16], α of (16b + r, g) at (b, g, r): one
// 32-byte load gives the 16 rows' α of a group. C % 32 == 0.
// Logits (fixed order, the reference and the AVX-512 kernel agree bit for bit):
//   acc_g = Σ_{i∈g} c_{j,i} q_{t,i}   (int32, exact; SIMD: Σ u·q − 8·Σ_{i∈g} q_{t,i})
//   y = 0; for g = 0..C/32-1: y = fma(float(acc_g), α_{j,g}, y);   logits[t, j] = y · s_x[t]
// with q, s_x the per-token int8 activations of quantize_row_per_token (as the int8 head).
constexpr int64_t kQ4Group = 32;    // inputs per scale
constexpr int64_t kQ4TileRows = 16;  // rows per tile (the 16 lanes of a zmm)
constexpr int64_t kQ4TileCols = 8;   // inputs per 64-byte tile (2 nibbles × 4 bytes per row)
constexpr int64_t kQ4TileBytes = 64;

struct Q4Head {
  int64_t rows = 0, cols = 0, rows_padded = 0;  // V, C, V rounded up to 16
  Tensor codes;   // u8 [rows_padded/16, cols/8, 64]
  Tensor scales;  // f16 [rows_padded/16, cols/32, 16]
};

// Quantizes and packs w [V, C] (f32, row-contiguous); C % 32 == 0 (checked, the error names `what`).
Q4Head q4_head_pack(const float* w, int64_t V, int64_t C, const std::string& what = "lm_head");

// Code c ∈ [-7, 7] of W[j, i] in packed codes of C columns (the layout formula, for the reference).
inline int q4_code(const uint8_t* codes, int64_t C, int64_t j, int64_t i) {
  const int64_t b = j / kQ4TileRows, r = j % kQ4TileRows, k = i / kQ4TileCols, e = i % kQ4TileCols;
  const uint8_t byte = codes[(b * (C / kQ4TileCols) + k) * kQ4TileBytes + 4 * r + e % 4];
  return (e < 4 ? (byte & 0x0F) : (byte >> 4)) - 8;
}
// α of (row j, group g) as f16 bits.
inline uint16_t q4_scale(const uint16_t* scales, int64_t C, int64_t j, int64_t g) {
  return scales[((j / kQ4TileRows) * (C / kQ4Group) + g) * kQ4TileRows + j % kQ4TileRows];
}

// gs[g] = Σ_{i∈g} q[i] for the C/32 groups of one token's int8 activations (the SIMD kernel's offset).
void q4_act_group_sums(const int8_t* q /*[C]*/, int64_t C, int32_t* gs /*[C/32]*/);

}  // namespace tq::infer
