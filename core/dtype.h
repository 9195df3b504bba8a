// Element types of a Tensor and the conversions between them.
// bf16/f16 are stored as uint16_t bit patterns; conversion to f32 is exact, f32 -> bf16/f16 rounds to
// nearest even (NaN stays NaN). `dtype_of<T>()` maps a C++ type to its DType for templated kernels.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace tq {

enum class DType : uint8_t { f32, bf16, f16, f64, i32, i8, u8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "bf16", ...
bool dtype_is_float(DType dtype);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <>
constexpr DType dtype_of<int8_t>() { return DType::i8; }
template <>
constexpr DType dtype_of<uint8_t>() { return DType::u8; }

}  // namespace tq
