// AVX-512 VNNI ternary kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni): one zmm
// holds a whole tile, the 16 rows of a row block are the 16 i32 lanes, and each VPDPBUSD multiplies
// 4 codes per row by 4 activation bytes broadcast to every lane. See Note [Packed ternary tile] and
// docs/kernels.md. Raw pointers only (see ternary_kernels.h).
// GCC 12 reports false -W(maybe-)uninitialized inside several AVX-512 intrinsics (their
// _mm512_undefined_ps pass-through operand).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <immintrin.h>

#include <cstring>

#include "quant/ternary_kernels.h"

namespace tq::quant::detail {

// Note [AND-only decode]
// ~~~~~~~~~~~~~~~~~~~~~~
// With 1–3 tokens the tile decode, not the VPDPBUSD, dominates, so the decode kernel skips the
// shifts: w & (3 << 2s) is c_s·4^s per byte, a u8 in {0, 4^s, 2·4^s} ≤ 128, used directly as the
// unsigned operand, one accumulator A_s per s. A_s = 4^s·Σ c_s·q exactly, so at the end of each
// 128-group sum = A0 + (A1 >> 2) + (A2 >> 4) + (A3 >> 6) with arithmetic shifts is exact: the same
// integer as the reference. Bound: per group A_s sums 32 products (8 tiles × 4 bytes a lane), each
// |c_s·4^s·q| ≤ 128·128, so |A_s| ≤ 2^19, far from i32 overflow even for q = −128; VPDPBUSD adds
// the four u8·i8 products into i32 without saturation. 4 ANDs a tile instead of 3 shifts + 4 ANDs.

namespace {

constexpr int64_t kTokenChunk = 64;  // prefill tokens per pass over the row blocks
// The decode kernel prefetches each weight stream this many bytes ahead: the hardware prefetcher
// stops at 4 KiB pages, and without it 2048×8192 (long row blocks) streamed at ≈ 0.7 of the read
// bandwidth instead of ≈ 0.9 (1 thread, docs/kernels.md). The α stream is prefetched as many groups
// ahead as the codes (2048 B = 32 tiles = 4 groups). See Note [Decode prefetch].
constexpr int64_t kPrefetchBytes = 2048;
constexpr int64_t kPrefetchGroups = kPrefetchBytes / (64 * 8);

// Note [Decode prefetch]
// ~~~~~~~~~~~~~~~~~~~~~~
// The GEMV reads NB row blocks at once, so each thread has NB code streams and NB α streams. A
// stream's prefetch runs past the end of its row block into the next block, which belongs to another
// stream of the same pass, while the block this stream reads next (the same block of the next pass,
// NB blocks on) starts cold. Past the end, each prefetch therefore skips the other NB − 1 blocks:
// each stream's prefetch continues where the stream itself continues. With cols = 2048 (8 KiB row
// blocks) and pairs that lifted a 144 MB GEMV from 0.66 to 0.77 of the read probe on 1 thread;
// prefetching α too (it was left to the hardware) gained another 2–10% (docs/kernels.md).
// Where the next pass of stream b starts, relative to the byte `ahead` bytes into its block of
// `block_bytes`: `ahead` itself inside the block, else skipped past the other NB − 1 blocks.
template <int NB>
constexpr int64_t stream_ahead(int64_t pos, int64_t ahead, int64_t block_bytes) {
  return pos + ahead < block_bytes ? ahead : ahead + (NB - 1) * block_bytes;
}

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline __mmask16 row_mask(const TernaryArgs& a, int64_t rb) {
  const int64_t valid = a.rows - 16 * rb;
  return valid >= 16 ? static_cast<__mmask16>(0xFFFF)
                     : static_cast<__mmask16>((1u << (valid > 0 ? valid : 0)) - 1u);
}

// α of the 16 rows of (rb, g), rows in lanes: 32 pre-tiled bytes (Note [Packed ternary tile]).
inline __m512 load_alpha(const TernaryArgs& a, int64_t rb, int64_t g) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(
      reinterpret_cast<const __m256i*>(a.scales + (rb * (a.cols / 128) + g) * 16)));
}

// Epilogue of one group for one token: raw sums, or yacc = fma(float(sum − gsum), α·s, yacc).
inline void group_epilogue(const TernaryArgs& a, int64_t rb, int64_t t, int64_t g, __m512i sum,
                           __m512 alpha, __m512& yacc, int32_t* sums) {
  const int64_t G = a.cols / 128, tg = t * G + g;
  if (sums != nullptr) {
    alignas(64) int32_t tmp[16];
    _mm512_store_si512(tmp, sum);
    for (int64_t r = 0; r < 16; ++r) sums[(t * a.rows_padded + 16 * rb + r) * G + g] = tmp[r];
    return;
  }
  const float s = a.per_group ? a.xscale[tg] : a.xscale[t];
  const __m512 p = _mm512_mul_ps(alpha, _mm512_set1_ps(s));
  const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, _mm512_set1_epi32(a.gsum[tg])));
  yacc = _mm512_fmadd_ps(d, p, yacc);
}

// Decode (1–3 tokens): NT tokens [t0, t0+NT) × NB row blocks rb … rb+NB−1 × all groups. The
// activation broadcasts of a tile column are shared by the NB blocks, and each (block, token, s)
// has its own accumulator (NB·NT·4 independent VPDPBUSD chains). See Note [AND-only decode].
// The 8 tiles of a group are unrolled: without it GCC 12 copies every accumulator once per tile.
template <int NB, int NT>
void small(const TernaryArgs& a, int64_t rb, int64_t t0, float* y, int64_t ldy, int32_t* sums) {
  const int64_t G = a.cols / 128, KT = a.cols / 16;
  const __m512i m[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0C), _mm512_set1_epi8(0x30),
                        _mm512_set1_epi8(static_cast<char>(0xC0))};
  __m512 yacc[NB][NT];
  for (int b = 0; b < NB; ++b) {
    for (int t = 0; t < NT; ++t) yacc[b][t] = _mm512_setzero_ps();
  }
  const uint8_t* tiles = a.codes + rb * KT * 64;
  for (int64_t g = 0; g < G; ++g) {
    __m512i acc[NB][NT][4];
    for (int b = 0; b < NB; ++b) {
      for (int t = 0; t < NT; ++t) {
        for (int s = 0; s < 4; ++s) acc[b][t][s] = _mm512_setzero_si512();
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const int64_t kt = 8 * g + k;
      __m512i x[NT][4];
      for (int t = 0; t < NT; ++t) {
        const int8_t* xq = a.q + (t0 + t) * a.cols + kt * 16;
        for (int s = 0; s < 4; ++s) x[t][s] = _mm512_set1_epi32(load_i32(xq + 4 * s));
      }
      for (int b = 0; b < NB; ++b) {
        const uint8_t* tile = tiles + (b * KT + kt) * 64;
        _mm_prefetch(reinterpret_cast<const char*>(
                         tile + stream_ahead<NB>(kt * 64, kPrefetchBytes, KT * 64)),
                     _MM_HINT_T0);
        const __m512i w = _mm512_loadu_si512(tile);
        for (int s = 0; s < 4; ++s) {
          const __m512i c = _mm512_and_si512(w, m[s]);  // c_s · 4^s, u8 ≤ 128
          for (int t = 0; t < NT; ++t) acc[b][t][s] = _mm512_dpbusd_epi32(acc[b][t][s], c, x[t][s]);
        }
      }
    }
    for (int b = 0; b < NB; ++b) {  // α of (rb + b, g) is 16 f16 = 32 bytes
      const uint16_t* sg = a.scales + ((rb + b) * G + g) * 16;
      _mm_prefetch(reinterpret_cast<const char*>(
                       sg + stream_ahead<NB>(g * 16, kPrefetchGroups * 16, G * 16)),
                   _MM_HINT_T0);
    }
    for (int b = 0; b < NB; ++b) {
      const __m512 alpha = sums != nullptr ? _mm512_setzero_ps() : load_alpha(a, rb + b, g);
      for (int t = 0; t < NT; ++t) {
        // A_s = 4^s · Σ c_s·q exactly, so the arithmetic shifts are exact divisions.
        const __m512i a01 = _mm512_add_epi32(acc[b][t][0], _mm512_srai_epi32(acc[b][t][1], 2));
        const __m512i a2 = _mm512_srai_epi32(acc[b][t][2], 4);
        const __m512i a23 = _mm512_add_epi32(a2, _mm512_srai_epi32(acc[b][t][3], 6));
        const __m512i sum = _mm512_add_epi32(a01, a23);
        group_epilogue(a, rb + b, t0 + t, g, sum, alpha, yacc[b][t], sums);
      }
    }
  }
  if (sums != nullptr) return;
  for (int b = 0; b < NB; ++b) {
    const __mmask16 mask = row_mask(a, rb + b);
    const __m512 bias = _mm512_loadu_ps(a.bias + 16 * (rb + b));
    for (int t = 0; t < NT; ++t) {
      float* out = y + (t0 + t) * ldy + 16 * (rb + b);
      _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(yacc[b][t], bias));
    }
  }
}

// Prefill: NT tokens [t0, t0+NT) × NB row blocks rb … rb+NB−1 × all groups. Each tile is decoded
// once into 4 code registers ((w >> 2s) & 3) that all NT tokens reuse, and each activation broadcast
// serves the NB blocks; one accumulator per (block, token).
template <int NB, int NT>
void block(const TernaryArgs& a, int64_t rb, int64_t t0, float* y, int64_t ldy, int32_t* sums) {
  const int64_t G = a.cols / 128, KT = a.cols / 16;
  const __m512i m3 = _mm512_set1_epi8(3);
  __m512 yacc[NB][NT];
  for (int b = 0; b < NB; ++b) {
    for (int t = 0; t < NT; ++t) yacc[b][t] = _mm512_setzero_ps();
  }
  const uint8_t* tiles = a.codes + rb * KT * 64;
  for (int64_t g = 0; g < G; ++g) {
    __m512i acc[NB][NT];
    for (int b = 0; b < NB; ++b) {
      for (int t = 0; t < NT; ++t) acc[b][t] = _mm512_setzero_si512();
    }
    for (int64_t kt = 8 * g; kt < 8 * g + 8; ++kt) {
      __m512i c[NB][4];
      for (int b = 0; b < NB; ++b) {
        const __m512i w = _mm512_loadu_si512(tiles + (b * KT + kt) * 64);
        c[b][0] = _mm512_and_si512(w, m3);
        c[b][1] = _mm512_and_si512(_mm512_srli_epi16(w, 2), m3);
        c[b][2] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m3);
        c[b][3] = _mm512_and_si512(_mm512_srli_epi16(w, 6), m3);
      }
      for (int t = 0; t < NT; ++t) {
        const int8_t* xq = a.q + (t0 + t) * a.cols + kt * 16;
        for (int s = 0; s < 4; ++s) {
          const __m512i x = _mm512_set1_epi32(load_i32(xq + 4 * s));
          for (int b = 0; b < NB; ++b) acc[b][t] = _mm512_dpbusd_epi32(acc[b][t], c[b][s], x);
        }
      }
    }
    for (int b = 0; b < NB; ++b) {
      const __m512 alpha = sums != nullptr ? _mm512_setzero_ps() : load_alpha(a, rb + b, g);
      for (int t = 0; t < NT; ++t) group_epilogue(a, rb + b, t0 + t, g, acc[b][t], alpha, yacc[b][t], sums);
    }
  }
  if (sums != nullptr) return;
  for (int b = 0; b < NB; ++b) {
    const __mmask16 mask = row_mask(a, rb + b);
    const __m512 bias = _mm512_loadu_ps(a.bias + 16 * (rb + b));
    for (int t = 0; t < NT; ++t) {
      _mm512_mask_storeu_ps(y + (t0 + t) * ldy + 16 * (rb + b), mask, _mm512_add_ps(yacc[b][t], bias));
    }
  }
}

// The last n < 8 tokens [t0, t0 + n) of a token chunk, one row block.
void token_tail(const TernaryArgs& a, int64_t rb, int64_t t0, int64_t n, float* y, int64_t ldy,
                int32_t* sums) {
  switch (n) {
    case 7: block<1, 7>(a, rb, t0, y, ldy, sums); break;
    case 6: block<1, 6>(a, rb, t0, y, ldy, sums); break;
    case 5: block<1, 5>(a, rb, t0, y, ldy, sums); break;
    case 4: block<1, 4>(a, rb, t0, y, ldy, sums); break;
    case 3: small<1, 3>(a, rb, t0, y, ldy, sums); break;
    case 2: small<1, 2>(a, rb, t0, y, ldy, sums); break;
    case 1: small<1, 1>(a, rb, t0, y, ldy, sums); break;
    default: break;
  }
}

void run(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy, int32_t* sums) {
  const int64_t b0 = r0 / 16, b1 = r1 / 16;  // every block has a real row (rows_padded − rows < 16)
  if (a.tokens == 1) {
    // GEMV: row blocks four at a time from r0 (16 chains; each activation broadcast serves the 4
    // blocks), then a pair and a last single block for the remainder. See Note [Decode prefetch].
    int64_t rb = b0;
    for (; rb + 4 <= b1; rb += 4) small<4, 1>(a, rb, 0, y, ldy, sums);
    for (; rb + 2 <= b1; rb += 2) small<2, 1>(a, rb, 0, y, ldy, sums);
    if (rb < b1) small<1, 1>(a, rb, 0, y, ldy, sums);
    return;
  }
  // Prefill: the activations of kTokenChunk tokens stay in L2 while every row block passes over them
  // (with all T tokens per row block, T·cols bytes would be re-read from L3 for each row block).
  for (int64_t tc = 0; tc < a.tokens; tc += kTokenChunk) {
    const int64_t te = a.tokens - tc < kTokenChunk ? a.tokens : tc + kTokenChunk;
    for (int64_t rb = b0; rb < b1; ++rb) {
      const int64_t nb = rb + 2 <= b1 ? 2 : 1;  // a pair of row blocks shares the activation broadcasts
      int64_t t0 = tc;
      for (; t0 + 8 <= te; t0 += 8) {
        if (nb == 2) {
          block<2, 8>(a, rb, t0, y, ldy, sums);
        } else {
          block<1, 8>(a, rb, t0, y, ldy, sums);
        }
      }
      for (int64_t r = rb; r < rb + nb; ++r) token_tail(a, r, t0, te - t0, y, ldy, sums);
      rb += nb - 1;
    }
  }
}

}  // namespace

void gemm_rows_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, float* y, int64_t ldy) noexcept {
  run(a, r0, r1, y, ldy, nullptr);
}

void group_sums_avx512vnni(const TernaryArgs& a, int64_t r0, int64_t r1, int32_t* acc) noexcept {
  run(a, r0, r1, nullptr, 0, acc);
}

double int8_dot_probe_avx512vnni(int64_t iters) noexcept {
  // 16 independent VPDPBUSD chains in zmm16–31 (latency × pipes with room), written in asm so the
  // compiler can neither spill nor shuffle the accumulators.
  if (iters <= 0) return 0.0;
  const __m512i u = _mm512_set1_epi8(2), s = _mm512_set1_epi8(-3);
  int64_t n = iters;
  __asm__ volatile(
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
        "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
        "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
        "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
        "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
        "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
        "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
        "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
        "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
        ".p2align 6\n\t1:\n\t"
        "vpdpbusd %[s], %[u], %%zmm16\n\t"
        "vpdpbusd %[s], %[u], %%zmm17\n\t"
        "vpdpbusd %[s], %[u], %%zmm18\n\t"
        "vpdpbusd %[s], %[u], %%zmm19\n\t"
        "vpdpbusd %[s], %[u], %%zmm20\n\t"
        "vpdpbusd %[s], %[u], %%zmm21\n\t"
        "vpdpbusd %[s], %[u], %%zmm22\n\t"
        "vpdpbusd %[s], %[u], %%zmm23\n\t"
        "vpdpbusd %[s], %[u], %%zmm24\n\t"
        "vpdpbusd %[s], %[u], %%zmm25\n\t"
        "vpdpbusd %[s], %[u], %%zmm26\n\t"
        "vpdpbusd %[s], %[u], %%zmm27\n\t"
        "vpdpbusd %[s], %[u], %%zmm28\n\t"
        "vpdpbusd %[s], %[u], %%zmm29\n\t"
        "vpdpbusd %[s], %[u], %%zmm30\n\t"
        "vpdpbusd %[s], %[u], %%zmm31\n\t"
        "dec %[n]\n\t"
        "jnz 1b"
        : [n] "+r"(n)
        : [u] "v"(u), [s] "v"(s)
        : "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "cc");
  return static_cast<double>(iters) * 16 * 64 * 2;
}

uint64_t read_stream_avx512(const uint8_t* p, size_t n) noexcept {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, x);
  uint64_t r = 0;
  for (uint64_t v : lanes) r ^= v;
  return r;
}

}  // namespace tq::quant::detail
