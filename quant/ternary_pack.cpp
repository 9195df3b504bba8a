// Packing ternary weights into VNNI-ordered 2-bit tiles, ISA selection and the kernel dispatch.
// See Note [Packed ternary tile] (ternary_pack.h) and docs/formats.md, "Packed ternary weights".
#include "quant/ternary_pack.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/cpu.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/parallel.h"
#include "quant/ternary_kernels.h"

namespace tq::quant {

namespace {

struct KernelTable {
  detail::GemmRowsFn gemm = nullptr;
  detail::GroupSumsFn sums = nullptr;
};

// Whether ternary_gemm runs the GFNI build of isa's kernels (Note [GFNI tile decode]).
bool gfni_build(KernelIsa isa) {
#if defined(TQ_HAVE_KERNEL_AVX512VNNI) && defined(TQ_HAVE_KERNEL_AVX512GFNI)
  return isa == KernelIsa::avx512vnni && cpu_features().gfni;
#else
  (void)isa;
  return false;
#endif
}

// The kernels compiled into this build (the ISA files are built only when the compiler takes the
// flags; see quant/CMakeLists.txt).
KernelTable kernels_for(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return {detail::gemm_rows_scalar, detail::group_sums_scalar};
#ifdef TQ_HAVE_KERNEL_AVX2
    case KernelIsa::avx2: return {detail::gemm_rows_avx2, detail::group_sums_avx2};
#endif
#ifdef TQ_HAVE_KERNEL_AVXVNNI
    case KernelIsa::avxvnni: return {detail::gemm_rows_avxvnni, detail::group_sums_avxvnni};
#endif
#ifdef TQ_HAVE_KERNEL_AVX512VNNI
    case KernelIsa::avx512vnni:
#ifdef TQ_HAVE_KERNEL_AVX512GFNI
      if (gfni_build(isa)) return {detail::gemm_rows_avx512gfni, detail::group_sums_avx512gfni};
#endif
      return {detail::gemm_rows_avx512vnni, detail::group_sums_avx512vnni};
#endif
    default: return {};
  }
}

bool cpu_has(KernelIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case KernelIsa::scalar: return true;
    case KernelIsa::avx2: return f.avx2 && f.fma && f.f16c;
    case KernelIsa::avxvnni: return f.avx2 && f.fma && f.f16c && f.avx_vnni;
    case KernelIsa::avx512vnni:
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni && f.fma && f.f16c;
  }
  return false;
}

std::string isa_list(const std::vector<KernelIsa>& isas) {
  std::string s;
  for (KernelIsa i : isas) {
    if (!s.empty()) s += ", ";
    s += isa_name(i);
  }
  return s;
}

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// α as f16 bits, checked to be representable.
uint16_t alpha_to_f16(double alpha, int64_t row, int64_t group) {
  TQ_CHECK(std::isfinite(alpha) && std::fabs(alpha) < 65504.0,
           "[pack_ternary] alpha[{}, {}] = {} does not fit f16 (|α| < 65504) — hint: the packed format "
           "stores α as f16",
           row, group, alpha);
  return f32_to_f16(static_cast<float>(alpha));
}

}  // namespace

const char* kernel_name(KernelIsa isa) { return gfni_build(isa) ? "avx512vnni+gfni" : isa_name(isa); }

const char* isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return "scalar";
    case KernelIsa::avx2: return "avx2";
    case KernelIsa::avxvnni: return "avxvnni";
    case KernelIsa::avx512vnni: return "avx512vnni";
  }
  return "?";
}

std::vector<KernelIsa> available_isas() {
  std::vector<KernelIsa> out;
  for (KernelIsa isa : {KernelIsa::scalar, KernelIsa::avx2, KernelIsa::avxvnni, KernelIsa::avx512vnni}) {
    if (cpu_has(isa) && kernels_for(isa).gemm != nullptr) out.push_back(isa);
  }
  return out;
}

KernelIsa resolve_kernel_isa(const char* value) {
  const std::vector<KernelIsa> avail = available_isas();
  if (value == nullptr || *value == '\0' || std::strcmp(value, "auto") == 0) return avail.back();
  for (KernelIsa isa : {KernelIsa::scalar, KernelIsa::avx2, KernelIsa::avxvnni, KernelIsa::avx512vnni}) {
    if (std::strcmp(value, isa_name(isa)) != 0) continue;
    for (KernelIsa a : avail) {
      if (a == isa) return isa;
    }
    TQ_THROW("[ternary kernels] TQ_KERNEL={} is not available on this CPU/build (available: {}) — "
             "hint: unset TQ_KERNEL or pick one of those",
             value, isa_list(avail));
  }
  TQ_THROW("[ternary kernels] TQ_KERNEL='{}' is not one of scalar, avx2, avxvnni, avx512vnni, auto "
           "(available here: {})",
           value, isa_list(avail));
}

KernelIsa best_isa() {
  static const KernelIsa isa = [] {
    const KernelIsa i = resolve_kernel_isa(std::getenv("TQ_KERNEL"));
    spdlog::debug("ternary kernels: {} (available: {})", isa_name(i), isa_list(available_isas()));
    return i;
  }();
  return isa;
}

size_t PackedTernary::bytes() const {
  return (codes.defined() ? codes.nbytes() : 0) + (scales.defined() ? scales.nbytes() : 0) +
         (bias.defined() ? bias.nbytes() : 0);
}

PackedTernary pack_ternary(const Tensor& codes_in, const Tensor& alpha_in, const Tensor& bias_in) {
  TQ_CHECK(codes_in.defined() && codes_in.dtype() == DType::i8 && codes_in.dim() == 2,
           "[pack_ternary] codes must be i8 [rows, cols], got {}",
           codes_in.defined() ? codes_in.str() : "undefined");
  const int64_t rows = codes_in.size(0), cols = codes_in.size(1);
  TQ_CHECK(cols > 0 && cols % kPackGroup == 0,
           "[pack_ternary] cols ({}) must be a positive multiple of {} — hint: pad the input dimension",
           cols, kPackGroup);
  const int64_t G = cols / kPackGroup;
  TQ_CHECK(alpha_in.defined() && dtype_is_float(alpha_in.dtype()) &&
               alpha_in.shape() == Shape({rows, G}),
           "[pack_ternary] alpha must be float [{}, {}] (one α per row and 128-group), got {}", rows, G,
           alpha_in.defined() ? alpha_in.str() : "undefined");
  if (bias_in.defined()) {
    TQ_CHECK(dtype_is_float(bias_in.dtype()) && bias_in.shape() == Shape({rows}),
             "[pack_ternary] bias must be float [{}], got {}", rows, bias_in.str());
  }
  const Tensor codes = codes_in.contiguous();
  const Tensor alpha = alpha_in.to(DType::f64).contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.to(DType::f32).contiguous() : Tensor();

  PackedTernary w;
  w.rows = rows;
  w.cols = cols;
  w.rows_padded = round_up(rows, kTileRows);
  w.codes = Tensor::zeros({w.rows_padded / kTileRows, cols / kTileCols, kTileBytes}, DType::u8);
  w.scales = Tensor::zeros({w.rows_padded / kTileRows, G, kTileRows}, DType::f16);
  w.bias = Tensor::zeros({w.rows_padded}, DType::f32);

  const int8_t* c = codes.data<int8_t>();
  uint8_t* out = w.codes.data<uint8_t>();
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t i = 0; i < cols; ++i) {
      const int8_t t = c[j * cols + i];
      TQ_CHECK(t >= -1 && t <= 1, "[pack_ternary] codes[{}, {}] = {} is not in {{-1, 0, 1}}", j, i,
               static_cast<int>(t));
      // See Note [Packed ternary tile]: tile (j/16, i/16), byte 4·(j%16) + i%4, bits 2·((i%16)/4).
      const int64_t rb = j / kTileRows, r = j % kTileRows, kt = i / kTileCols, ii = i % kTileCols;
      uint8_t& byte = out[(rb * (cols / kTileCols) + kt) * kTileBytes + 4 * r + ii % 4];
      byte = static_cast<uint8_t>(byte | ((t + 1) << (2 * (ii / 4))));
    }
  }
  // Padded rows keep code 0 (t = −1) with α = 0: they contribute nothing and are never written.
  // α of row j, group g goes to scales[j/16, g, j%16] (Note [Packed ternary tile]).
  const double* a = alpha.data<double>();
  auto* s = static_cast<uint16_t*>(w.scales.raw_data());
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t g = 0; g < G; ++g) {
      s[(j / kTileRows * G + g) * kTileRows + j % kTileRows] = alpha_to_f16(a[j * G + g], j, g);
    }
  }
  if (bias.defined()) std::memcpy(w.bias.data<float>(), bias.data<float>(), sizeof(float) * rows);
  return w;
}

PackedTernary pack_ternary(const TernaryView& v) {
  TQ_CHECK(v.codes.defined() && v.codes.dim() == 2 && v.alpha.defined(),
           "[pack_ternary] TernaryView needs codes [out, in] and alpha");
  const int64_t rows = v.codes.size(0), cols = v.codes.size(1);
  TQ_CHECK(cols % kPackGroup == 0,
           "[pack_ternary] in ({}) must be a multiple of {} for the packed format", cols, kPackGroup);
  const int64_t G = cols / kPackGroup;
  const Tensor a = v.alpha.to(DType::f64).contiguous();
  Tensor alpha = Tensor::empty({rows, G}, DType::f64);
  double* dst = alpha.data<double>();
  const double* src = a.data<double>();
  switch (v.granularity) {
    case Granularity::tensor:
      TQ_CHECK(a.numel() == 1, "[pack_ternary] tensor granularity needs one α, got {}", a.str());
      for (int64_t k = 0; k < rows * G; ++k) dst[k] = src[0];
      break;
    case Granularity::channel:
      TQ_CHECK(a.numel() == rows, "[pack_ternary] channel granularity needs α [{}, 1], got {}", rows,
               a.str());
      for (int64_t j = 0; j < rows; ++j) {
        for (int64_t g = 0; g < G; ++g) dst[j * G + g] = src[j];
      }
      break;
    case Granularity::group: {
      TQ_CHECK(v.group_size > 0 && v.group_size % kPackGroup == 0,
               "[pack_ternary] group granularity with group_size {}: α must be constant over each "
               "128-input group, so group_size must be a multiple of 128 — hint: quantize with "
               "group_size 128 (or 256, ...) for the packed kernels",
               v.group_size);
      const int64_t n = cols / v.group_size, per = v.group_size / kPackGroup;
      TQ_CHECK(a.shape() == Shape({rows, n}), "[pack_ternary] group α must be [{}, {}], got {}", rows,
               n, a.str());
      for (int64_t j = 0; j < rows; ++j) {
        for (int64_t g = 0; g < G; ++g) dst[j * G + g] = src[j * n + g / per];
      }
      break;
    }
  }
  Tensor codes = v.codes;
  if (codes.dtype() != DType::i8) codes = codes.to(DType::i8);
  return pack_ternary(codes, alpha, v.bias);
}

Tensor unpack_codes(const PackedTernary& w) {
  Tensor out = Tensor::empty({w.rows, w.cols}, DType::i8);
  int8_t* o = out.data<int8_t>();
  const uint8_t* c = w.codes.data<uint8_t>();
  for (int64_t j = 0; j < w.rows; ++j) {
    for (int64_t i = 0; i < w.cols; ++i) {
      const int64_t rb = j / kTileRows, r = j % kTileRows, kt = i / kTileCols, ii = i % kTileCols;
      const uint8_t byte = c[(rb * (w.cols / kTileCols) + kt) * kTileBytes + 4 * r + ii % 4];
      o[j * w.cols + i] = static_cast<int8_t>(((byte >> (2 * (ii / 4))) & 0x03) - 1);
    }
  }
  return out;
}

Tensor unpack_scales(const PackedTernary& w) {
  const int64_t G = w.groups();
  Tensor out = Tensor::empty({w.rows, G}, DType::f32);
  const Tensor tiled = w.scales.contiguous();
  const auto* s = static_cast<const uint16_t*>(tiled.raw_data());
  float* o = out.data<float>();
  for (int64_t j = 0; j < w.rows; ++j) {
    for (int64_t g = 0; g < G; ++g) {
      o[j * G + g] = f16_to_f32(s[(j / kTileRows * G + g) * kTileRows + j % kTileRows]);
    }
  }
  return out;
}

namespace detail {

TernaryArgs make_args(const PackedTernary& w, const QuantizedActs& x) {
  TernaryArgs a;
  a.codes = static_cast<const uint8_t*>(w.codes.raw_data());
  a.scales = static_cast<const uint16_t*>(w.scales.raw_data());
  a.bias = static_cast<const float*>(w.bias.raw_data());
  a.rows = w.rows;
  a.rows_padded = w.rows_padded;
  a.cols = w.cols;
  a.q = static_cast<const int8_t*>(x.q.raw_data());
  a.xscale = static_cast<const float*>(x.scale.raw_data());
  a.gsum = static_cast<const int32_t*>(x.gsum.raw_data());
  a.tokens = x.tokens;
  a.per_group = x.mode == ActScale::per_group;
  return a;
}

}  // namespace detail

namespace {

void check_packed(const PackedTernary& w) {
  const int64_t G = w.cols / kPackGroup;
  TQ_CHECK(w.cols > 0 && w.cols % kPackGroup == 0 && w.rows >= 0 &&
               w.rows_padded == round_up(w.rows, kTileRows),
           "[ternary_gemm] malformed PackedTernary (rows {}, rows_padded {}, cols {})", w.rows,
           w.rows_padded, w.cols);
  TQ_CHECK(w.codes.defined() && w.codes.dtype() == DType::u8 && w.codes.is_contiguous() &&
               w.codes.shape() == Shape({w.rows_padded / kTileRows, w.cols / kTileCols, kTileBytes}),
           "[ternary_gemm] codes must be contiguous u8 [{}, {}, 64], got {}", w.rows_padded / kTileRows,
           w.cols / kTileCols, w.codes.defined() ? w.codes.str() : "undefined");
  TQ_CHECK(w.scales.defined() && w.scales.dtype() == DType::f16 && w.scales.is_contiguous() &&
               w.scales.shape() == Shape({w.rows_padded / kTileRows, G, kTileRows}),
           "[ternary_gemm] scales must be contiguous f16 [{}, {}, 16] (pre-tiled α, see "
           "docs/formats.md), got {} — hint: re-pack the weight with pack_ternary",
           w.rows_padded / kTileRows, G, w.scales.defined() ? w.scales.str() : "undefined");
  TQ_CHECK(w.bias.defined() && w.bias.dtype() == DType::f32 && w.bias.is_contiguous() &&
               w.bias.shape() == Shape({w.rows_padded}),
           "[ternary_gemm] bias must be contiguous f32 [{}], got {}", w.rows_padded,
           w.bias.defined() ? w.bias.str() : "undefined");
}

void check_acts(const PackedTernary& w, const QuantizedActs& x) {
  const int64_t G = w.cols / kPackGroup;
  TQ_CHECK(x.cols == w.cols, "[ternary_gemm] activations have {} columns, the weight {}", x.cols,
           w.cols);
  TQ_CHECK(x.tokens >= 0, "[ternary_gemm] tokens ({}) < 0", x.tokens);
  TQ_CHECK(x.q.defined() && x.q.dtype() == DType::i8 && x.q.is_contiguous() &&
               x.q.shape() == Shape({x.tokens, x.cols}),
           "[ternary_gemm] q must be contiguous i8 [{}, {}], got {} — hint: use quantize_acts",
           x.tokens, x.cols, x.q.defined() ? x.q.str() : "undefined");
  const Shape sshape = x.mode == ActScale::per_group ? Shape({x.tokens, G}) : Shape({x.tokens});
  TQ_CHECK(x.scale.defined() && x.scale.dtype() == DType::f32 && x.scale.is_contiguous() &&
               x.scale.shape() == sshape,
           "[ternary_gemm] scale must be contiguous f32 {} for {}, got {}", shape_str(sshape),
           act_scale_name(x.mode), x.scale.defined() ? x.scale.str() : "undefined");
  TQ_CHECK(x.gsum.defined() && x.gsum.dtype() == DType::i32 && x.gsum.is_contiguous() &&
               x.gsum.shape() == Shape({x.tokens, G}),
           "[ternary_gemm] gsum must be contiguous i32 [{}, {}], got {}", x.tokens, G,
           x.gsum.defined() ? x.gsum.str() : "undefined");
}

void check_isa(KernelIsa isa) {
  TQ_CHECK(cpu_has(isa) && kernels_for(isa).gemm != nullptr,
           "[ternary_gemm] kernel ISA {} is not available here (available: {})", isa_name(isa),
           isa_list(available_isas()));
}

}  // namespace

void ternary_gemm_check(const PackedTernary& w, const QuantizedActs& x, int64_t ldy, KernelIsa isa) {
  check_packed(w);
  check_acts(w, x);
  TQ_CHECK(ldy >= w.rows, "[ternary_gemm] ldy ({}) < rows ({})", ldy, w.rows);
  check_isa(isa);
}

void ternary_gemm_rows_unchecked(const PackedTernary& w, const QuantizedActs& x, int64_t r0,
                                 int64_t r1, float* y, int64_t ldy, KernelIsa isa) noexcept {
  if (r0 >= r1 || x.tokens == 0) return;
  kernels_for(isa).gemm(detail::make_args(w, x), r0, r1, y, ldy);
}

void ternary_gemm_rows(const PackedTernary& w, const QuantizedActs& x, int64_t r0, int64_t r1,
                       float* y, int64_t ldy, KernelIsa isa) {
  ternary_gemm_check(w, x, ldy, isa);
  TQ_CHECK(r0 >= 0 && r0 <= r1 && r1 <= w.rows_padded && r0 % kTileRows == 0 && r1 % kTileRows == 0,
           "[ternary_gemm_rows] rows [{}, {}) must be multiples of 16 within [0, {}]", r0, r1,
           w.rows_padded);
  TQ_CHECK(y != nullptr || x.tokens == 0 || r0 == r1, "[ternary_gemm_rows] y is null");
  ternary_gemm_rows_unchecked(w, x, r0, r1, y, ldy, isa);
}

void ternary_gemm(const PackedTernary& w, const QuantizedActs& x, float* y, int64_t ldy,
                  KernelIsa isa) {
  ternary_gemm_check(w, x, ldy, isa);
  TQ_CHECK(y != nullptr || x.tokens == 0 || w.rows == 0, "[ternary_gemm] y is null");
  if (x.tokens == 0 || w.rows == 0) return;
  const detail::TernaryArgs args = detail::make_args(w, x);
  const detail::GemmRowsFn fn = kernels_for(isa).gemm;
  parallel_for(w.rows_padded / kTileRows, 2, [&](int64_t b, int64_t e) {
    fn(args, b * kTileRows, e * kTileRows, y, ldy);
  });
}

void ternary_group_sums(const PackedTernary& w, const QuantizedActs& x, int32_t* acc, KernelIsa isa) {
  check_packed(w);
  check_acts(w, x);
  check_isa(isa);
  TQ_CHECK(acc != nullptr || x.tokens == 0, "[ternary_group_sums] acc is null");
  if (x.tokens == 0 || w.rows_padded == 0) return;
  kernels_for(isa).sums(detail::make_args(w, x), 0, w.rows_padded, acc);
}

}  // namespace tq::quant
