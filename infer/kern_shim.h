// TEMPORARY stand-in for quant/ternary_pack.h + quant/act_quant.h (branch `kern`) with the same API,
// so the engine builds and is tested before the real kernels land. Scalar, unpacked codes (i8
// [rows_padded, cols]) — NOT the documented packed layout. Removed once `kern` is merged.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace tq::infer::shim {

enum class KernelIsa { scalar };
inline KernelIsa best_isa() { return KernelIsa::scalar; }
inline const char* isa_name(KernelIsa) { return "scalar-shim"; }
constexpr int64_t kTileRows = 16, kTileCols = 16, kPackGroup = 128;

struct PackedTernary {
  int64_t rows = 0, cols = 0, rows_padded = 0;
  Tensor codes;   // i8 [rows_padded, cols] (shim layout)
  Tensor scales;  // f16 [rows_padded, cols/128]
  Tensor bias;    // f32 [rows_padded]
  size_t bytes() const { return codes.nbytes() + scales.nbytes() + bias.nbytes(); }
};
PackedTernary pack_ternary(const Tensor& codes /*i8 [rows, cols]*/,
                           const Tensor& alpha /*f32 [rows, cols/128]*/, const Tensor& bias);

enum class ActScale { per_token, per_group };
struct QuantizedActs {
  int64_t tokens = 0, cols = 0;
  ActScale mode = ActScale::per_token;
  Tensor q, scale, gsum;
};
void quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, QuantizedActs& out);
void fake_quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, float* x_hat);
void ternary_gemm_rows(const PackedTernary& w, const QuantizedActs& x, int64_t r0, int64_t r1,
                       float* y, int64_t ldy, KernelIsa isa);

}  // namespace tq::infer::shim
