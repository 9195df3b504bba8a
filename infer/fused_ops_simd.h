// Internal interface between infer/fused_ops.cpp (reference loops, dispatch) and the AVX-512 and AVX2
// row kernels in infer/fused_ops_avx512.cpp and infer/fused_ops_avx2.cpp (compiled with ISA flags). Raw pointers and PODs only,
// for the same reason as quant/ternary_kernels.h: the ISA file must not instantiate inline library
// code that the linker could pick for baseline callers. Not part of the public API.
#pragma once

#include <cstdint>

namespace tq::infer::detail {

// exp(x) of the AVX-512 and AVX2 kernels (Cephes expf): x = n·ln2 + r with ln2 split in two
// (kExpLn2Hi exact in f32), then p(r) = 1 + r + r²·(((((c0·r + c1)·r + c2)·r + c3)·r + c4)·r + c5).
constexpr float kExpLog2e = 1.44269504088896341f;
constexpr float kExpLn2Hi = 0.693359375f, kExpLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// The ymm int8 LM heads (AVX2, AVX-VNNI) prefetch each row this many bytes ahead (running on into
// the next row, the next in memory): on Zen 3 the AVX2 head went from 83–89% to 94% of the read probe
// (2 KiB: 88–93%). The AVX-512 head leaves it to the hardware prefetcher (best on the Xeon).
constexpr int64_t kHeadPrefetchBytes = 1024;

// See fused_ops.h attend_group for the arguments and the K cache layout.
void attend_group_avx512(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                         int64_t n, int64_t D, float scale, float* scores, float* out,
                         int64_t ldo) noexcept;
// The same over an f16 cache (IEEE half bit patterns, converted exactly by VCVTPH2PS).
void attend_group_avx512(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt,
                         const uint16_t* V, int64_t n, int64_t D, float scale, float* scores,
                         float* out, int64_t ldo) noexcept;
// fused_ops.cpp quant_span: q = clamp(round_half_even(x·(127/m)), ±127) with m = max|x|; returns
// m/127. VCVTPS2DQ rounds half to even like the reference's 1.5·2^23 trick, so the bytes are
// identical.
float quant_span_avx512(const float* x, int64_t n, int8_t* q) noexcept;
void swiglu_avx512(const float* gate, const float* up, int64_t F, float* out) noexcept;
// fused_ops.h f16_row with VCVTPS2PH (round to nearest even).
void f16_row_avx512(const float* x, int64_t n, uint16_t* out) noexcept;
// fused_ops.h lm_head_int8 with VPDPBUSD: the activations are biased to u8 (q + 128, an XOR with
// 0x80) and wsum[j] = Σ_i w[j, i] removes the bias, so the int32 sums are exact.
void lm_head_int8_avx512vnni(const int8_t* w, const float* sw, const int32_t* wsum, int64_t r0,
                             int64_t r1, int64_t C, const int8_t* qx, const float* sx, int64_t T,
                             float* logits, int64_t ldo) noexcept;

// fused_ops.h lm_head_q4 with VPDPBUSD: 16 rows per zmm (Note [q4 LM head layout]); the u8 operand
// is the stored code c + 8, and 8·gs[t, g] removes the offset, so the group sums are exact.
void lm_head_q4_avx512vnni(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1,
                           int64_t C, const int8_t* qx, const float* sx, const int32_t* gs,
                           int64_t T, float* logits, int64_t ldo) noexcept;

// The AVX2 versions (fused_ops_avx2.cpp; -mavx2 -mfma -mf16c), for CPUs whose ternary kernels run
// AVX2 or AVX-VNNI. Same contracts as the AVX-512 ones above; the int8 head needs no wsum (it
// multiplies |w| by sign(x, w) with VPMADDUBSW, exact for w in [−128, 127] and |x| ≤ 127).
void attend_group_avx2(const float* q, int64_t nq, int64_t ldq, const float* Kt, const float* V,
                       int64_t n, int64_t D, float scale, float* scores, float* out,
                       int64_t ldo) noexcept;
void attend_group_avx2(const float* q, int64_t nq, int64_t ldq, const uint16_t* Kt,
                       const uint16_t* V, int64_t n, int64_t D, float scale, float* scores,
                       float* out, int64_t ldo) noexcept;
float quant_span_avx2(const float* x, int64_t n, int8_t* q) noexcept;
void swiglu_avx2(const float* gate, const float* up, int64_t F, float* out) noexcept;
void f16_row_avx2(const float* x, int64_t n, uint16_t* out) noexcept;
void lm_head_int8_avx2(const int8_t* w, const float* sw, int64_t r0, int64_t r1, int64_t C,
                       const int8_t* qx, const float* sx, int64_t T, float* logits,
                       int64_t ldo) noexcept;
// The AVX-VNNI int8 head (fused_ops_avxvnni.cpp; the AVX-512 head's formula with the VEX VPDPBUSD on
// ymm): for CPUs whose ternary kernels run AVX-VNNI; their other row kernels are the AVX2 ones.
void lm_head_int8_avxvnni(const int8_t* w, const float* sw, const int32_t* wsum, int64_t r0,
                          int64_t r1, int64_t C, const int8_t* qx, const float* sx, int64_t T,
                          float* logits, int64_t ldo) noexcept;
// The q4 head with VPMADDUBSW (low and high nibbles, i16 sums per 32-input group, exact).
void lm_head_q4_avx2(const uint8_t* codes, const uint16_t* scales, int64_t r0, int64_t r1, int64_t C,
                     const int8_t* qx, const float* sx, const int32_t* gs, int64_t T, float* logits,
                     int64_t ldo) noexcept;

}  // namespace tq::infer::detail
