// AVX-VNNI ternary kernels (compiled with -mavx2 -mfma -mf16c -mavxvnni): VEX VPDPBUSD on 8-row
// halves of each tile, for CPUs with AVX-VNNI but without AVX-512. Body: ternary_kernels_ymm.inc.
#define TQ_YMM_SUFFIX avxvnni
#define TQ_YMM_VNNI 1
#include "quant/ternary_kernels_ymm.inc"
