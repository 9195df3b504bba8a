// Tests quant/ternary_pack.cpp, quant/act_quant.cpp and the ternary kernels: the packed layout
// against a hand-computed byte and the pre-tiled α positions (docs/formats.md), pack/unpack round
// trips, the scalar kernel against a dense f64 reference that ignores the layout, every available
// ISA against scalar (exact integer group sums and outputs) on random, ragged, extreme
// inputs, the decode path's row-block pairs and split row ranges (bit-identical to scalar),
// activation quantization against its hand formula, and TQ_KERNEL resolution. Loops over
// available_isas().
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/parallel.h"
#include "quant/act_quant.h"
#include "core/cpu.h"
#include "quant/quant.h"
#include "quant/ternary_kernels.h"
#include "quant/ternary_pack.h"
#include "tests/test_util.h"

using namespace tq;
using namespace tq::quant;
using tq::test::error_of;
using tq::test::make_rng;

namespace {

Tensor random_codes(int64_t rows, int64_t cols, Rng& rng) {
  Tensor c = Tensor::empty({rows, cols}, DType::i8);
  int8_t* p = c.data<int8_t>();
  for (int64_t k = 0; k < rows * cols; ++k) p[k] = static_cast<int8_t>(static_cast<int>(rng.below(3)) - 1);
  return c;
}

// Hand-built activations (independent of quantize_acts): random q in [-127, 127], random scales.
QuantizedActs random_acts(int64_t T, int64_t cols, ActScale mode, Rng& rng, int qmax = 127) {
  const int64_t G = cols / 128;
  QuantizedActs x;
  x.tokens = T;
  x.cols = cols;
  x.mode = mode;
  x.q = Tensor::empty({T, cols}, DType::i8);
  x.scale = mode == ActScale::per_group ? Tensor::empty({T, G}) : Tensor::empty({T});
  x.gsum = Tensor::empty({T, G}, DType::i32);
  int8_t* q = x.q.data<int8_t>();
  for (int64_t k = 0; k < T * cols; ++k) {
    q[k] = static_cast<int8_t>(static_cast<int>(rng.below(2 * qmax + 1)) - qmax);
  }
  float* s = x.scale.data<float>();
  for (int64_t k = 0; k < x.scale.numel(); ++k) s[k] = static_cast<float>(rng.uniform(0.001, 0.05));
  int32_t* gs = x.gsum.data<int32_t>();
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (int64_t i = 0; i < 128; ++i) sum += q[t * cols + g * 128 + i];
      gs[t * G + g] = sum;
    }
  }
  return x;
}

PackedTernary random_packed(int64_t rows, int64_t cols, Rng& rng, Tensor* codes_out = nullptr) {
  Tensor codes = random_codes(rows, cols, rng);
  Tensor alpha = Tensor::uniform({rows, cols / 128}, rng, 0.01, 0.2);
  Tensor bias = Tensor::uniform({rows}, rng, -0.5, 0.5);
  if (codes_out != nullptr) *codes_out = codes;
  return pack_ternary(codes, alpha, bias);
}

// y_ref[t, j] = Σ_i t_{j,i}·α_{j,i/128}·(q_{t,i}·s_{t(,g)}) + bias_j in f64, from dense tensors (no
// packed layout); also Σ|terms| per output for the tolerance.
void dense_reference(const Tensor& codes, const Tensor& alpha /*f32 as stored*/, const Tensor& bias,
                     const QuantizedActs& x, std::vector<double>& y, std::vector<double>& mag) {
  const int64_t rows = codes.size(0), cols = codes.size(1), T = x.tokens;
  y.assign(static_cast<size_t>(T * rows), 0.0);
  mag.assign(static_cast<size_t>(T * rows), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < rows; ++j) {
      double acc = bias.at({j}), m = std::fabs(bias.at({j}));
      for (int64_t i = 0; i < cols; ++i) {
        const double s = x.mode == ActScale::per_group ? x.scale.at({t, i / 128}) : x.scale.at({t});
        const double xv = static_cast<double>(x.q.data<int8_t>()[t * cols + i]) * s;
        const double wv = static_cast<double>(codes.data<int8_t>()[j * cols + i]) * alpha.at({j, i / 128});
        acc += wv * xv;
        m += std::fabs(wv * xv);
      }
      y[static_cast<size_t>(t * rows + j)] = acc;
      mag[static_cast<size_t>(t * rows + j)] = m;
    }
  }
}

std::vector<int32_t> group_sums(const PackedTernary& w, const QuantizedActs& x, KernelIsa isa) {
  std::vector<int32_t> acc(static_cast<size_t>(x.tokens * w.rows_padded * w.groups()), -7);
  ternary_group_sums(w, x, acc.data(), isa);
  return acc;
}

std::vector<float> gemm(const PackedTernary& w, const QuantizedActs& x, KernelIsa isa, int64_t ldy) {
  std::vector<float> y(static_cast<size_t>(x.tokens * ldy), -99.0f);
  ternary_gemm(w, x, y.data(), ldy, isa);
  return y;
}

}  // namespace

TEST_CASE("packed ternary layout matches the documented worked example") {
  // All codes 0 (c = 1, bytes 0x55) except w[17, 141] = +1 (c = 2): tile (rb 1, kt 8), byte
  // 4·(17 % 16) + 141 % 4 = 5, bits 2·((141 % 16) / 4) = 6..7 → 0x55 with bits 6..7 = 2 → 0x95.
  const int64_t rows = 20, cols = 256;
  Tensor codes = Tensor::zeros({rows, cols}, DType::i8);
  codes.set({17, 141}, 1);
  const PackedTernary w = pack_ternary(codes, Tensor::full({rows, 2}, 0.5), Tensor());
  CHECK(w.rows_padded == 32);
  CHECK(w.codes.shape() == Shape({2, 16, 64}));
  const uint8_t* b = w.codes.data<uint8_t>();
  const int64_t target = (1 * 16 + 8) * 64 + 5;
  CHECK(static_cast<int>(b[target]) == 0x95);
  int64_t wrong = 0;
  for (int64_t k = 0; k < w.codes.numel(); ++k) {
    if (k == target) continue;
    const int64_t rb = k / (16 * 64), r = (k % 64) / 4;
    const int expect = 16 * rb + r < rows ? 0x55 : 0x00;  // padded rows hold code 0
    wrong += b[k] != expect;
  }
  CHECK(wrong == 0);
  CHECK(w.bytes() == static_cast<size_t>(2 * 16 * 64 + 32 * 2 * 2 + 32 * 4));
  CHECK(w.bias.at({3}) == 0.0);
}

TEST_CASE("scales are pre-tiled: α of row j, group g at [j/16, g, j%16] (docs/formats.md)") {
  // rows 37 (3 row blocks, the last ragged), G = 3; α[j, g] = j + 1 + g/4 is exact in f16.
  const int64_t rows = 37, cols = 384, G = 3;
  Tensor alpha = Tensor::empty({rows, G});
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t g = 0; g < G; ++g) {
      alpha.set({j, g}, static_cast<double>(j + 1) + 0.25 * static_cast<double>(g));
    }
  }
  const PackedTernary w = pack_ternary(Tensor::zeros({rows, cols}, DType::i8), alpha, Tensor());
  REQUIRE(w.scales.shape() == Shape({3, G, 16}));
  const auto* raw = static_cast<const uint16_t*>(w.scales.raw_data());
  // Worked example: row 17, group 2 → rb 1, r 1 → element (1·3 + 2)·16 + 1 = 81, α 18.5 = 0x4CA0.
  CHECK(raw[81] == 0x4CA0);
  int64_t bad = 0;
  for (int64_t k = 0; k < w.scales.numel(); ++k) {
    const int64_t rb = k / (G * 16), g = (k / 16) % G, j = 16 * rb + k % 16;
    const float want = j < rows ? static_cast<float>(j + 1) + 0.25f * static_cast<float>(g) : 0.0f;
    bad += f16_to_f32(raw[k]) != want;  // padded rows 37..47 hold α = 0
  }
  CHECK(bad == 0);
  CHECK(max_abs_diff(unpack_scales(w), alpha) == 0.0);  // unpack_scales stays [rows, G] row-major
}

TEST_CASE("pack/unpack round trip, f16 scales, padded rows zero") {
  Rng rng = make_rng(1);
  for (int64_t rows : {1, 16, 37}) {
    Tensor codes = random_codes(rows, 384, rng);
    Tensor alpha = Tensor::uniform({rows, 3}, rng, 0.01, 0.3);
    Tensor bias = Tensor::uniform({rows}, rng, -1, 1);
    const PackedTernary w = pack_ternary(codes, alpha, bias);
    CHECK(w.rows_padded == (rows + 15) / 16 * 16);
    CHECK(max_abs_diff(unpack_codes(w).to(DType::f64), codes.to(DType::f64)) == 0.0);
    // f16 keeps 11 significant bits.
    TQ_CHECK_CLOSE(unpack_scales(w), alpha, 1.0 / 2048, 0);
    for (int64_t j = rows; j < w.rows_padded; ++j) {
      CHECK(w.bias.at({j}) == 0.0);
      CHECK(w.scales.to(DType::f32).at({j / 16, 0, j % 16}) == 0.0);
    }
    CHECK(w.bias.at({rows - 1}) == doctest::Approx(bias.at({rows - 1})));
  }
}

TEST_CASE("pack_ternary from a TernaryView: channel, group 128/256; group 64 is an error") {
  Rng rng = make_rng(2);
  const Tensor wt = Tensor::randn({24, 512}, rng, 0.05);
  for (auto [g, gs] : {std::pair{Granularity::channel, int64_t{0}}, std::pair{Granularity::group, int64_t{128}},
                       std::pair{Granularity::group, int64_t{256}}, std::pair{Granularity::tensor, int64_t{0}}}) {
    CAPTURE(granularity_name(g));
    const TernaryView v = quantize_ternary(wt, Quantizer::absmean, g, gs == 0 ? 512 : gs, 1e-3);
    const PackedTernary p = pack_ternary(v);
    CHECK(max_abs_diff(unpack_codes(p).to(DType::f64), v.codes.to(DType::f64)) == 0.0);
    // Dequantized packed weight equals dequantize(v) within the f16 rounding of α.
    const Tensor deq = dequantize(v).to(DType::f64);
    const Tensor s = unpack_scales(p);
    const Tensor c = unpack_codes(p);
    double worst = 0;
    for (int64_t j = 0; j < 24; ++j) {
      for (int64_t i = 0; i < 512; ++i) {
        const double mine = c.at({j, i}) * s.at({j, i / 128});
        worst = std::fmax(worst, std::fabs(mine - deq.at({j, i})) / (std::fabs(deq.at({j, i})) + 1e-12));
      }
    }
    CHECK(worst < 1.0 / 2048);
  }
  const TernaryView v64 = quantize_ternary(wt, Quantizer::absmean, Granularity::group, 64, 1e-3);
  CHECK(error_of([&] { pack_ternary(v64); }).find("multiple of 128") != std::string::npos);
  CHECK(error_of([&] { pack_ternary(Tensor::zeros({4, 100}, DType::i8), Tensor::ones({4, 1}), Tensor()); })
            .find("multiple of 128") != std::string::npos);
  Tensor bad = Tensor::zeros({4, 128}, DType::i8);
  bad.set({2, 5}, 2);
  CHECK(error_of([&] { pack_ternary(bad, Tensor::ones({4, 1}), Tensor()); }).find("codes[2, 5]") !=
        std::string::npos);
  CHECK(error_of([&] { pack_ternary(Tensor::zeros({4, 128}, DType::i8), Tensor::full({4, 1}, 1e6), Tensor()); })
            .find("f16") != std::string::npos);
}

TEST_CASE("scalar ternary_gemm matches a dense f64 reference (per_token and per_group)") {
  Rng rng = make_rng(3);
  for (ActScale mode : {ActScale::per_token, ActScale::per_group}) {
    for (auto [rows, cols, T] : {std::tuple{int64_t{37}, int64_t{256}, int64_t{3}},
                                 std::tuple{int64_t{16}, int64_t{1024}, int64_t{1}},
                                 std::tuple{int64_t{50}, int64_t{384}, int64_t{17}}}) {
      CAPTURE(rows);
      CAPTURE(cols);
      CAPTURE(T);
      Tensor codes;
      const PackedTernary w = random_packed(rows, cols, rng, &codes);
      const QuantizedActs x = random_acts(T, cols, mode, rng);
      std::vector<double> ref, mag;
      dense_reference(codes, unpack_scales(w), w.bias.slice(0, 0, rows), x, ref, mag);
      const int64_t ldy = rows + 3;
      const std::vector<float> y = gemm(w, x, KernelIsa::scalar, ldy);
      int64_t bad = 0;
      double worst = 0;
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t j = 0; j < ldy; ++j) {
          const float v = y[static_cast<size_t>(t * ldy + j)];
          if (j >= rows) {
            bad += v != -99.0f;  // padding columns of y are never written
            continue;
          }
          const size_t k = static_cast<size_t>(t * rows + j);
          const double err = std::fabs(v - ref[k]) / mag[k];
          worst = std::fmax(worst, err);
          bad += err > 1e-5;
        }
      }
      INFO("worst error relative to Σ|terms|: " << worst);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("every ISA equals scalar exactly in group sums and in ternary_gemm outputs") {
  Rng rng = make_rng(4);
  const std::vector<KernelIsa> isas = available_isas();
  MESSAGE("ISAs tested: " << isas.size() << " (best " << std::string(isa_name(best_isa())) << ")");
  for (KernelIsa isa : isas) {
    CAPTURE(isa_name(isa));
    for (ActScale mode : {ActScale::per_token, ActScale::per_group}) {
      // T covers every token-block remainder (blocks of 8 on AVX-512, 4 on AVX2/AVX-VNNI) and the
      // 64-token prefill chunk; cols 8320 (65 groups) crosses the kernels' 64-group α chunk.
      // rows 103 = 7 row blocks: the AVX-512 GEMV's 4-block pass, then a pair and a single block
      // (and, split over 2 threads, a 4-block pass starting at an odd block).
      for (int64_t rows : {1, 16, 45, 103}) {
        for (int64_t cols : {128, 384, 1024, 8320}) {
          for (int64_t T : {1, 2, 3, 4, 5, 6, 15, 17, 70}) {
            if (cols == 8320 && (rows != 16 || T > 3)) continue;
            if (rows == 103 && T > 3) continue;
            if (T == 70 && (rows != 45 || cols != 384)) continue;  // crosses the 64-token prefill chunk
            CAPTURE(rows);
            CAPTURE(cols);
            CAPTURE(T);
            const PackedTernary w = random_packed(rows, cols, rng);
            const QuantizedActs x = random_acts(T, cols, mode, rng);
            CHECK(group_sums(w, x, isa) == group_sums(w, x, KernelIsa::scalar));
            const std::vector<float> ys = gemm(w, x, KernelIsa::scalar, rows + 1);
            const std::vector<float> yi = gemm(w, x, isa, rows + 1);
            // Bit for bit: every kernel evaluates the epilogue in one order (Note [Per-token scale
            // after the groups] in quant/ternary_kernels.h).
            CHECK(yi == ys);
          }
        }
      }
    }
  }
}

#if defined(TQ_HAVE_KERNEL_AVX512VNNI) && defined(TQ_HAVE_KERNEL_AVX512GFNI)
TEST_CASE("the GFNI build of the AVX-512 kernels equals the plain build bit for bit") {
  // ternary_gemm runs the GFNI build where the CPU has GFNI (Note [GFNI tile decode]), so the case
  // above tests one of the two builds; this one ties the other to it. Prefill shapes: the 2×8 block,
  // a single last row block (rows 45), token remainders 1–7 and the 64-token chunk.
  const CpuFeatures& f = cpu_features();
  CHECK(std::string(kernel_name(KernelIsa::scalar)) == "scalar");
  if (!(f.gfni && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni)) {
    MESSAGE("skipped: this CPU lacks GFNI or AVX-512 VNNI (" << cpu_features_str(f) << ")");
    return;
  }
  CHECK(std::string(kernel_name(KernelIsa::avx512vnni)) == "avx512vnni+gfni");  // what ternary_gemm runs
  Rng rng = make_rng(14);
  for (ActScale mode : {ActScale::per_token, ActScale::per_group}) {
    for (int64_t rows : {16, 45}) {
      for (int64_t T : {2, 8, 11, 16, 31, 70}) {
        const int64_t cols = T == 70 ? 256 : 1024;
        CAPTURE(rows);
        CAPTURE(T);
        const PackedTernary w = random_packed(rows, cols, rng);
        const QuantizedActs x = random_acts(T, cols, mode, rng);
        const quant::detail::TernaryArgs a = quant::detail::make_args(w, x);
        const size_t n_sums = static_cast<size_t>(T * w.rows_padded * w.groups());
        std::vector<int32_t> s_plain(n_sums, -7), s_gfni(n_sums, -8);
        quant::detail::group_sums_avx512vnni(a, 0, w.rows_padded, s_plain.data());
        quant::detail::group_sums_avx512gfni(a, 0, w.rows_padded, s_gfni.data());
        CHECK(s_plain == s_gfni);
        CHECK(s_plain == group_sums(w, x, KernelIsa::scalar));
        std::vector<float> y_plain(static_cast<size_t>(T * rows), -99.0f), y_gfni = y_plain;
        quant::detail::gemm_rows_avx512vnni(a, 0, w.rows_padded, y_plain.data(), rows);
        quant::detail::gemm_rows_avx512gfni(a, 0, w.rows_padded, y_gfni.data(), rows);
        CHECK(y_plain == y_gfni);
      }
    }
  }
}
#endif

TEST_CASE("extreme values: all codes +1 and q = ±127 (closed form), every ISA") {
  // T = 1 (decode kernels), 5 (token blocks < 6), 7 (AVX2/AVX-VNNI six-token block + remainder):
  // every path's i16 / i32 accumulators at their largest magnitude.
  const int64_t rows = 19, cols = 1024, G = cols / 128;
  const PackedTernary w = pack_ternary(Tensor::full({rows, cols}, 1, DType::i8),
                                       Tensor::full({rows, G}, 1.0), Tensor());
  for (int64_t T : {1, 5, 7}) {
    for (int sign : {1, -1}) {
      CAPTURE(T);
      QuantizedActs x;
      quantize_acts(std::vector<float>(static_cast<size_t>(T * cols), 3.0f * static_cast<float>(sign)).data(),
                    T, cols, ActScale::per_token, x);
      CHECK(x.q.at({T - 1, 7}) == 127 * sign);
      CHECK(x.gsum.at({T - 1, 3}) == 128 * 127 * sign);
      for (KernelIsa isa : available_isas()) {
        CAPTURE(isa_name(isa));
        const std::vector<int32_t> acc = group_sums(w, x, isa);
        int64_t bad = 0;
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t j = 0; j < rows; ++j) {
            for (int64_t g = 0; g < G; ++g) bad += acc[static_cast<size_t>((t * w.rows_padded + j) * G + g)] != 2 * 128 * 127 * sign;
          }
        }
        CHECK(bad == 0);
        // y = Σ_g s·1·(2·128·127·sign − 128·127·sign) = 1024 · 127 · sign · (3/127) = 3072 · sign.
        const std::vector<float> y = gemm(w, x, isa, rows);
        for (int64_t t = 0; t < T; ++t) {
          CHECK(y[static_cast<size_t>(t * rows + 18)] == doctest::Approx(3072.0 * sign).epsilon(1e-6));
        }
      }
    }
  }
}

TEST_CASE("ternary_gemm_rows writes only its rows; threads give the same result") {
  Rng rng = make_rng(5);
  const int64_t rows = 70, cols = 512, T = 9;
  const PackedTernary w = random_packed(rows, cols, rng);
  const QuantizedActs x = random_acts(T, cols, ActScale::per_token, rng);
  for (KernelIsa isa : available_isas()) {
    CAPTURE(isa_name(isa));
    const std::vector<float> full = gemm(w, x, isa, rows);
    std::vector<float> part(static_cast<size_t>(T * rows), -99.0f);
    ternary_gemm_rows(w, x, 16, 32, part.data(), rows, isa);
    ternary_gemm_rows(w, x, 64, 80, part.data(), rows, isa);  // r1 = rows_padded
    int64_t bad = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < rows; ++j) {
        const size_t k = static_cast<size_t>(t * rows + j);
        const bool mine = (j >= 16 && j < 32) || j >= 64;
        bad += mine ? part[k] != full[k] : part[k] != -99.0f;
      }
    }
    CHECK(bad == 0);
    const int nt = num_threads();
    set_num_threads(1);
    CHECK(gemm(w, x, isa, rows) == full);
    set_num_threads(nt);
  }
  std::vector<float> y(static_cast<size_t>(T * rows));
  CHECK(error_of([&] { ternary_gemm_rows(w, x, 8, 32, y.data(), rows, KernelIsa::scalar); })
            .find("multiples of 16") != std::string::npos);
  QuantizedActs other = random_acts(T, 256, ActScale::per_token, rng);
  CHECK(error_of([&] { ternary_gemm(w, other, y.data(), rows, KernelIsa::scalar); }).find("columns") !=
        std::string::npos);
  CHECK(error_of([&] { ternary_gemm(w, x, y.data(), rows - 1, KernelIsa::scalar); }).find("ldy") !=
        std::string::npos);
}

TEST_CASE("decode (T ≤ 3): row-block pairs, an odd block count and ranges split at odd blocks") {
  // 7 row blocks (the last ragged): the SIMD decode kernels take row blocks in pairs from r0, so
  // ranges of 1, 3 and 5 blocks starting at odd and even blocks end with an unpaired block.
  Rng rng = make_rng(9);
  const int64_t rows = 109, cols = 640;
  const PackedTernary w = random_packed(rows, cols, rng);
  const std::vector<std::vector<int64_t>> splits = {{0, 112}, {0, 16, 64, 112}, {0, 48, 80, 112},
                                                    {0, 80, 96, 112}};
  for (int64_t T : {1, 2, 3}) {
    for (ActScale mode : {ActScale::per_token, ActScale::per_group}) {
      const QuantizedActs x = random_acts(T, cols, mode, rng);
      const std::vector<float> ref = gemm(w, x, KernelIsa::scalar, rows);
      const std::vector<int32_t> sums_ref = group_sums(w, x, KernelIsa::scalar);
      for (KernelIsa isa : available_isas()) {
        const std::string isa_str = isa_name(isa);
        CAPTURE(isa_str);
        CAPTURE(T);
        CHECK(group_sums(w, x, isa) == sums_ref);
        for (const std::vector<int64_t>& cut : splits) {
          std::vector<float> y(static_cast<size_t>(T * rows), -99.0f);
          for (size_t k = 0; k + 1 < cut.size(); ++k) {
            ternary_gemm_rows(w, x, cut[k], cut[k + 1], y.data(), rows, isa);
          }
          CHECK(y == ref);  // same integer sums and f32 epilogue order: bit-identical
        }
      }
    }
  }
}

TEST_CASE("quantize_acts follows the hand formula (half to even, per token and per group)") {
  // Hand row: m = 127 so inv = 1: 63.5 → 64, 62.5 → 62, −0.5 → 0, 1.5 → 2, 2.5 → 2, −127 → −127.
  std::vector<float> x(256, 0.0f);
  const std::vector<float> head = {127.0f, 63.5f, 62.5f, -0.5f, 1.5f, 2.5f, -127.0f, 10.25f};
  for (size_t i = 0; i < head.size(); ++i) x[i] = head[i];
  x[200] = 50.0f;  // group 1 has m = 50
  QuantizedActs q;
  quantize_acts(x.data(), 1, 256, ActScale::per_token, q);
  const std::vector<int> expect = {127, 64, 62, 0, 2, 2, -127, 10};
  for (size_t i = 0; i < expect.size(); ++i) CHECK(q.q.at({0, static_cast<int64_t>(i)}) == expect[i]);
  CHECK(q.scale.at({0}) == doctest::Approx(1.0));
  CHECK(q.gsum.at({0, 0}) == 127 + 64 + 62 + 2 + 2 - 127 + 10);
  CHECK(q.gsum.at({0, 1}) == 50);
  quantize_acts(x.data(), 1, 256, ActScale::per_group, q);
  CHECK(q.scale.shape() == Shape({1, 2}));
  CHECK(q.scale.at({0, 1}) == doctest::Approx(50.0 / 127));
  CHECK(q.q.at({0, 200}) == 127);
  CHECK(q.gsum.at({0, 1}) == 127);

  // Random rows against the formula written with std::nearbyint (not the library's rounding trick).
  Rng rng = make_rng(6);
  const int64_t T = 4, cols = 384;
  const Tensor xr = Tensor::randn({T, cols}, rng, 2.0);
  std::vector<float> xhat(static_cast<size_t>(T * cols));
  for (ActScale mode : {ActScale::per_token, ActScale::per_group}) {
    quantize_acts(xr.data<float>(), T, cols, mode, q);
    fake_quantize_acts(xr.data<float>(), T, cols, mode, xhat.data());
    int64_t bad = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < cols; ++i) {
        const float* xt = xr.data<float>() + t * cols;
        const int64_t lo = mode == ActScale::per_group ? i / 128 * 128 : 0;
        const int64_t hi = mode == ActScale::per_group ? lo + 128 : cols;
        float m = 0;
        for (int64_t k = lo; k < hi; ++k) m = std::fmax(m, std::fabs(xt[k]));
        const float inv = 127.0f / m;
        const float want = std::fmin(std::fmax(std::nearbyint(xt[i] * inv), -127.0f), 127.0f);
        const float s = mode == ActScale::per_group ? static_cast<float>(q.scale.at({t, i / 128}))
                                                    : static_cast<float>(q.scale.at({t}));
        bad += q.q.at({t, i}) != want;
        bad += s != m / 127.0f;
        bad += xhat[static_cast<size_t>(t * cols + i)] != want * s;
        bad += std::fabs(xt[i] - want * s) > 0.5001 * s;
      }
    }
    CHECK(bad == 0);
  }
  // All-zero token: scale 0, q 0.
  std::vector<float> z(128, 0.0f);
  quantize_acts(z.data(), 1, 128, ActScale::per_token, q);
  CHECK(q.scale.at({0}) == 0.0);
  CHECK(q.gsum.at({0, 0}) == 0);
  CHECK(error_of([&] { quantize_acts(z.data(), 1, 100, ActScale::per_token, q); }).find("multiple of 128") !=
        std::string::npos);
}

TEST_CASE("quantize_acts + ternary_gemm approximates the float product") {
  Rng rng = make_rng(7);
  const int64_t rows = 33, cols = 512, T = 2;
  Tensor codes;
  const PackedTernary w = random_packed(rows, cols, rng, &codes);
  const Tensor xf = Tensor::randn({T, cols}, rng);
  QuantizedActs x;
  quantize_acts(xf.data<float>(), T, cols, ActScale::per_group, x);
  const std::vector<float> y = gemm(w, x, best_isa(), rows);
  const Tensor s = unpack_scales(w);
  double err = 0, norm = 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < rows; ++j) {
      double ref = w.bias.at({j});
      for (int64_t i = 0; i < cols; ++i) ref += codes.at({j, i}) * s.at({j, i / 128}) * xf.at({t, i});
      err += std::pow(y[static_cast<size_t>(t * rows + j)] - ref, 2);
      norm += ref * ref;
    }
  }
  CHECK(std::sqrt(err / norm) < 0.02);  // int8 activation noise, not a layout error
}

TEST_CASE("TQ_KERNEL resolution") {
  const std::vector<KernelIsa> avail = available_isas();
  REQUIRE(!avail.empty());
  CHECK(avail.front() == KernelIsa::scalar);
  CHECK(resolve_kernel_isa(nullptr) == avail.back());
  CHECK(resolve_kernel_isa("") == avail.back());
  CHECK(resolve_kernel_isa("scalar") == KernelIsa::scalar);
  for (KernelIsa isa : {KernelIsa::avx2, KernelIsa::avxvnni, KernelIsa::avx512vnni}) {
    bool have = false;
    for (KernelIsa a : avail) have = have || a == isa;
    if (have) {
      CHECK(resolve_kernel_isa(isa_name(isa)) == isa);
    } else {
      const std::string msg = error_of([&] { resolve_kernel_isa(isa_name(isa)); });
      CHECK(msg.find("TQ_KERNEL") != std::string::npos);
      CHECK(msg.find("available: scalar") != std::string::npos);
    }
  }
  const std::string msg = error_of([&] { resolve_kernel_isa("avx9000"); });
  CHECK(msg.find("TQ_KERNEL") != std::string::npos);
  CHECK(best_isa() == resolve_kernel_isa(std::getenv("TQ_KERNEL")));
}

TEST_CASE("packed tensors at unaligned offsets (as in a mapped file) give the same result") {
  Rng rng = make_rng(8);
  const int64_t rows = 40, cols = 384, T = 5;
  const PackedTernary w = random_packed(rows, cols, rng);
  const QuantizedActs x = random_acts(T, cols, ActScale::per_group, rng);
  PackedTernary u = w;
  Tensor raw = Tensor::zeros({w.codes.numel() + 1}, DType::u8);
  u.codes = raw.slice(0, 1, w.codes.numel() + 1).view(w.codes.shape());
  u.codes.copy_from(w.codes);
  REQUIRE(reinterpret_cast<uintptr_t>(u.codes.raw_data()) % 2 == 1);
  for (KernelIsa isa : available_isas()) {
    CAPTURE(isa_name(isa));
    CHECK(gemm(u, x, isa, rows) == gemm(w, x, KernelIsa::scalar, rows));
  }
}
