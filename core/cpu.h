// Runtime CPU feature detection (cpuid + xgetbv: a feature counts only when the OS saves its
// registers) and the dispatch target. TQ_CPU=ref|avx2|avx512 forces a lower target for tests and bug
// reports; asking for a target the CPU lacks is an error.
#pragma once

#include <string>

namespace tq {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx_vnni = false;
  bool avx512_bf16 = false;
  bool gfni = false;  // GF2P8AFFINEQB (the AVX-512 prefill tile decode uses it: Note [GFNI tile decode])
};

// What the hardware and OS support (detected once).
const CpuFeatures& cpu_features_detected();
// What kernels may use: the detected features limited by TQ_CPU.
const CpuFeatures& cpu_features();

enum class CpuTarget { ref, avx2, avx512 };
CpuTarget cpu_target();  // best target allowed by cpu_features()
const char* cpu_target_name(CpuTarget target);
std::string cpu_features_str(const CpuFeatures& f);  // "avx2 fma avx512f ..."
std::string cpu_model_name();                          // brand string, e.g. "AMD EPYC ..."

}  // namespace tq
