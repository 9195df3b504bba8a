// Row kernels of the inference plan (infer/engine.cpp), each on one token's row so the engine can
// split tokens, heads or output rows over threads. All are noexcept-style plain loops (no checks
// inside; see Note [No throw in parallel regions]).
//
//   rms_norm_row(x, w, C, eps, y);            // LlamaRMSNorm
//   quantize_act_row(y, t, qa);               // int8 row t of qa, as kq::quantize_acts does
//   attend_group(q, nq, D, Kt, V, n, D, scale, sc, o, D);  // a GQA query group against n cached keys
//
// attend_group, swiglu_row, f16_row, int8 quantization, lm_head_int8 and lm_head_q4 run AVX-512
// versions (fused_ops_avx512.cpp) when the ternary kernels run avx512vnni, AVX2 versions
// (fused_ops_avx2.cpp) when they run avx2 or avxvnni, and the plain loops here — the reference —
// when they run scalar (TQ_KERNEL=scalar); the others are plain loops the compiler vectorises.
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

// Note [Blocked K cache]
// ~~~~~~~~~~~~~~~~~~~~~~
// The K cache of one KV head holds the keys in blocks of 16 positions, each block [D][16]: dim d of
// the key at position p is Kt[kcache_index(p, d, D)]. A block is 16·D contiguous floats, so the scores
// of a query against 16 keys are D vertical FMAs (query element broadcast × one 64-byte row of the
// block): no horizontal sums, and the loads stream. V stays [position][D].
inline int64_t kcache_index(int64_t p, int64_t d, int64_t D) { return (p / 16) * 16 * D + d * 16 + p % 16; }
// Elements of one KV head's K cache for S positions (S rounded up to 16).
inline int64_t kcache_elems(int64_t S, int64_t D) { return (S + 15) / 16 * 16 * D; }

// out_i [D] = softmax(scale · q_i·Kᵀ) · V for the nq queries q_i = q + i·ldq [D] (the q heads sharing
// one KV head), over the n cached positions 0..n-1: Kt blocked (Note [Blocked K cache]), V [n, D].
// scores: scratch of nq · round_up(n, 16) floats. out_i at out + i·ldo. Each query's result depends
// only on its own q and n (not on nq or on the other queries), so prefill and decode agree exactly.
void attend_group(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V, int64_t n,
                  int64_t D, float scale, float* scores, float* out, int64_t ldo);
// The same over an f16 cache (Kt and V hold IEEE half bit patterns; each value is converted to f32
// exactly, so the result equals the f32 overload on the converted cache up to summation order).
void attend_group(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt, const uint16_t* V,
                  int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo);
// out[i] = f32_to_f16(x[i]) (core/dtype.h: round to nearest even, ±inf beyond ±65504); the AVX-512
// path (VCVTPS2PH) gives the same bits for every non-NaN input (tested); NaN stays NaN.
void f16_row(const float* x, int64_t n, uint16_t* out);
void f16_row_ref(const float* x, int64_t n, uint16_t* out);
// out [F] = silu(gate) · up.
void swiglu_row(const float* gate, const float* up, int64_t F, float* out);
// The reference loops of the three dispatched kernels (what TQ_KERNEL=scalar|avx2 runs); the tests
// compare the dispatched ones against them.
void attend_group_ref(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                      int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo);
void attend_group_ref(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt, const uint16_t* V,
                      int64_t n, int64_t D, float scale, float* scores, float* out, int64_t ldo);
void swiglu_row_ref(const float* gate, const float* up, int64_t F, float* out);
void lm_head_int8_ref(const int8_t* w, const float* sw, int64_t r0, int64_t r1, int64_t C,
                      const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo);
// Which versions the dispatched kernels run: "avx512", "avx2", "avxvnni" (AVX2 with the AVX-VNNI int8
// head) or "reference" (the loops above).
const char* fused_ops_isa();

// logits[t, j] for rows j in [r0, r1) and T tokens; ldo = stride between token rows of `logits`.
// int8: s_x[t] · s_w[j] · Σ q_x q_w (int32 sums, exact on every path); wsum [V] = int8_row_sums(w)
// (the VPDPBUSD path needs it). f32 / bf16: f32 dot products.
void lm_head_int8(const int8_t* w /*[V, C]*/, const float* sw /*[V]*/, const int32_t* wsum /*[V]*/,
                  int64_t r0, int64_t r1, int64_t C, const int8_t* qx /*[T, C]*/, const float* sx /*[T]*/,
                  int64_t T, float* logits, int64_t ldo);
// wsum[j] = Σ_i w[j, i] for rows [r0, r1) of w [., C].
void int8_row_sums(const int8_t* w, int64_t r0, int64_t r1, int64_t C, int32_t* wsum);
// q4 (Note [q4 LM head layout] in infer/q4_head.h): codes u8 [Vp/16, C/8, 64], scales f16
// [Vp/16, C/32, 16], C % 32 == 0; qx, sx from quantize_row_per_token; gs [T, C/32] =
// q4_act_group_sums of each token (the VPDPBUSD path needs it). Any rows [r0, r1) ⊆ [0, V): the
// SIMD kernel computes a 16-row block that straddles r0 or r1 whole and stores only the rows in range.
void lm_head_q4(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                const int8_t* qx /*[T, C]*/, const float* sx /*[T]*/, const int32_t* gs /*[T, C/32]*/,
                int64_t T, float* logits, int64_t ldo);
// The reference (plain loops over q4_code / q4_scale): what TQ_KERNEL=scalar|avx2 runs.
void lm_head_q4_ref(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                    const int8_t* qx, const float* sx, int64_t T, float* logits, int64_t ldo);
void lm_head_f32(const float* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                 float* logits, int64_t ldo);
void lm_head_bf16(const uint16_t* w, int64_t r0, int64_t r1, int64_t C, const float* x, int64_t T,
                  float* logits, int64_t ldo);

}  // namespace tq::infer
