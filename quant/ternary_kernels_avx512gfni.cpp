// AVX-512 VNNI ternary kernels for CPUs with GFNI (compiled with the AVX-512 VNNI flags and -mgfni):
// the body of ternary_kernels_zmm.inc with the prefill tiles decoded by VGF2P8AFFINEQB (Note [GFNI
// tile decode]). quant/ternary_pack.cpp picks these where cpu_features().gfni.
#define TQ_ZMM_SUFFIX avx512gfni
#define TQ_ZMM_GFNI 1
#include "quant/ternary_kernels_zmm.inc"
