// Row kernels of the inference plan (infer/engine.cpp), each on one token's row so the engine can
// split tokens, heads or output rows over threads. All are noexcept-style plain loops (no checks
// inside; see Note [No throw in parallel regions]).
//
//   rms_norm_row(x, w, C, eps, y);            // LlamaRMSNorm
//   quantize_act_row(y, t, qa);               // int8 row t of qa, as kq::quantize_acts does
//   attend_row(q, K, V, n, D, scale, sc, o);  // one query against n cached keys
#pragma once

#include <cstdint>

#include "infer/kernels.h"

namespace tq::infer {

// Buffers of qa for up to T tokens of `cols` (q i8 [T, cols], scale f32 [T] or [T, cols/128],
// gsum i32 [T, cols/128]); cols % 128 == 0 is needed only when a ternary linear consumes it.
void act_buffers_alloc(kq::QuantizedActs& qa, int64_t T, int64_t cols, kq::ActScale mode);
// `view` = the first T tokens of `full` (views, no copy), as the kernels want tokens == q.size(0).
void act_buffers_view(const kq::QuantizedActs& full, int64_t T, kq::QuantizedActs& view);
// Row t of qa from x [cols]: the same rounding as kq::quantize_acts (checked in the tests).
void quantize_act_row(const float* x /*[cols]*/, int64_t t, kq::QuantizedActs& qa);
// Symmetric per-row int8 with the same rounding (s = max|x| / 127, 0 for a zero row); returns s.
float quantize_row_per_token(const float* x, int64_t n, int8_t* q);

void add_rows(float* x, const float* y, int64_t n);  // x += y
// y = x / sqrt(mean(x²) + eps) · w (sum of squares in double, as autograd::rms_norm).
void rms_norm_row(const float* x, const float* w, int64_t C, float eps, float* y);
// HF rotate-half RoPE in place on one head [2·half] with cos/sin [half] of its position.
void rope_row(float* v, const float* cos, const float* sin, int64_t half);
// out [D] = softmax(scale · q·Kᵀ) · V over n cached rows K, V [n, D]; scores: scratch [n].
void attend_row(const float* q, const float* K, const float* V, int64_t n, int64_t D, float scale,
                float* scores, float* out);
// out [F] = silu(gate) · up.
void swiglu_row(const float* gate, const float* up, int64_t F, float* out);

// logits[t, j] for rows j in [r0, r1) and T tokens; ldo = stride between token rows of `logits`.
// int8: s_x[t] · s_w[j] · Σ q_x q_w (int32 sums); f32 / bf16: f32 dot products.
void lm_head_int8(const int8_t* w /*[V, C]*/, const float* sw /*[V]*/, int64_t r0, int64_t r1,
                  int64_t C, const int8_t* qx /*[T, C]*/, const float* sx /*[T]*/, int64_t T,
                  float* logits, int64_t ldo);
void lm_head_f32(const float* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                 float* logits, int64_t ldo);
void lm_head_bf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                  float* logits, int64_t ldo);

}  // namespace tq::infer
