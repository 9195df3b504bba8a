#include "core/cpu.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/logging.h"

namespace tq {

namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool fma = (c >> 12) & 1;
  const bool f16c = (c >> 29) & 1;
  const bool avx = (c >> 28) & 1;
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM and YMM state
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;       // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!avx || !os_avx) return f;
  f.fma = fma;
  f.f16c = f16c;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = (b >> 5) & 1;
  if (os_avx512) {
    f.avx512f = (b >> 16) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512_vnni = (c >> 11) & 1;
  }
  f.gfni = (c >> 8) & 1;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) {
    f.avx_vnni = (a1 >> 4) & 1;
    f.avx512_bf16 = os_avx512 && ((a1 >> 5) & 1);
  }
  return f;
}

CpuFeatures limit(CpuFeatures f) {
  const char* env = std::getenv("TQ_CPU");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return f;
  const std::string want = env;
  auto drop512 = [](CpuFeatures& g) {
    g.avx512f = g.avx512bw = g.avx512vl = g.avx512_vnni = g.avx512_bf16 = false;
  };
  if (want == "avx512") {
    TQ_CHECK(f.avx512f && f.avx512bw && f.avx512vl,
             "[cpu] TQ_CPU=avx512 but this CPU lacks AVX-512F/BW/VL ({})", cpu_features_str(f));
  } else if (want == "avx2") {
    TQ_CHECK(f.avx2 && f.fma, "[cpu] TQ_CPU=avx2 but this CPU lacks AVX2/FMA ({})", cpu_features_str(f));
    drop512(f);
  } else if (want == "ref") {
    f = CpuFeatures{};
  } else {
    TQ_THROW("[cpu] TQ_CPU='{}' is not one of ref, avx2, avx512, auto", want);
  }
  return f;
}

}  // namespace

const CpuFeatures& cpu_features_detected() {
  static const CpuFeatures f = detect();
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures g = limit(cpu_features_detected());
    spdlog::debug("cpu: features {} (TQ_CPU={})", cpu_features_str(g),
                  std::getenv("TQ_CPU") ? std::getenv("TQ_CPU") : "unset");
    return g;
  }();
  return f;
}

CpuTarget cpu_target() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl) return CpuTarget::avx512;
  if (f.avx2 && f.fma) return CpuTarget::avx2;
  return CpuTarget::ref;
}

const char* cpu_target_name(CpuTarget target) {
  switch (target) {
    case CpuTarget::ref: return "ref";
    case CpuTarget::avx2: return "avx2";
    case CpuTarget::avx512: return "avx512";
  }
  return "?";
}

std::string cpu_features_str(const CpuFeatures& f) {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx_vnni, "avx_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.gfni, "gfni");
  return s.empty() ? "none" : s;
}

std::string cpu_model_name() {
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000004u) return "unknown CPU";
  char brand[49] = {0};
  for (unsigned i = 0; i < 3; ++i) {
    unsigned r[4];
    __get_cpuid(0x80000002u + i, &r[0], &r[1], &r[2], &r[3]);
    std::memcpy(brand + 16 * i, r, 16);
  }
  std::string s = brand;
  const size_t first = s.find_first_not_of(' ');
  const size_t last = s.find_last_not_of(' ');
  return first == std::string::npos ? "unknown CPU" : s.substr(first, last - first + 1);
}

}  // namespace tq
