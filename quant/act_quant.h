// Symmetric int8 quantization of activations for the packed ternary kernels (ternary_pack.h).
// per_token: one scale per token; per_group: one per (token, 128-input group). Both also give the
// per-group sums Σq that the kernels subtract (the codes are t+1, see Note [Packed ternary tile]).
//
//   QuantizedActs x;                                   // reused across calls (no reallocation)
//   quantize_acts(h, T, C, ActScale::per_token, x);    // h f32 [T, C], C % 128 == 0
//   fake_quantize_acts(h, T, C, ActScale::per_token, h_hat);  // h_hat = scale·q in f32
//
// Arithmetic (see Note [int8 activation rounding]): m = max |x| over the token (or group);
// scale = m / 127; q = clamp(round_half_even(x · (127 / m)), −127, 127); m == 0 gives scale 0, q 0.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace tq::quant {

// Note [int8 activation rounding]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// q = round-half-to-even(x · inv) with inv = 127 / m computed once in f32 (a multiply, not a divide
// per element), clamped to ±127 (so −128 never occurs). scale = m / 127 in f32. x̂ = q · scale in f32.
// The fake-quant parity path must use exactly this arithmetic; non-finite inputs are not checked.

enum class ActScale { per_token, per_group };  // per_group: one scale per (token, 128-group)

struct QuantizedActs {
  int64_t tokens = 0, cols = 0;
  ActScale mode = ActScale::per_token;
  Tensor q;      // i8 [tokens, cols], |q| ≤ 127
  Tensor scale;  // f32 [tokens] (per_token) or [tokens, cols/128] (per_group); x ≈ scale·q
  Tensor gsum;   // i32 [tokens, cols/128]: Σ q over each 128-group
};

const char* act_scale_name(ActScale mode);  // "per_token", "per_group"
ActScale parse_act_scale(const std::string& s);  // per_token | per_group, else tq::Error

// x f32 [T, cols] row-major, cols % 128 == 0. Reuses out's tensors when their shapes already fit.
void quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, QuantizedActs& out);
// The same arithmetic in float (q·scale) for the fake-quant parity path: x_hat [T, cols] (may alias x).
void fake_quantize_acts(const float* x, int64_t T, int64_t cols, ActScale mode, float* x_hat);

}  // namespace tq::quant
