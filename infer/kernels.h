// The ternary kernel API the engine calls, under one alias `kq`: quant/ternary_pack.h
// (PackedTernary, pack_ternary, ternary_gemm_rows_unchecked, KernelIsa) and quant/act_quant.h
// (QuantizedActs, quantize_acts, fake_quantize_acts).
#pragma once

#include <cstdint>

#include "quant/act_quant.h"
#include "quant/ternary_pack.h"

namespace tq::infer {
namespace kq = tq::quant;

// Bytes the `codes` tensor of a PackedTernary [rows_padded, cols] holds (2 bits per code).
inline int64_t packed_code_bytes(int64_t rows_padded, int64_t cols) { return rows_padded * cols / 4; }
}  // namespace tq::infer
