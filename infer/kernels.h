// The ternary kernel API the engine calls, under one alias `kq` so the call sites do not change
// when the kernels move: quant/ternary_pack.h + quant/act_quant.h (PackedTernary, quantize_acts,
// ternary_gemm_rows, KernelIsa, ...).
#pragma once

#include <cstdint>

#include "infer/kern_shim.h"

namespace tq::infer {
namespace kq = tq::infer::shim;

// Bytes the `codes` tensor of a PackedTernary of this shape must hold (checked on load).
inline int64_t packed_code_bytes(int64_t rows_padded, int64_t cols) { return rows_padded * cols; }
}  // namespace tq::infer
