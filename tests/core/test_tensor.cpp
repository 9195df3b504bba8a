// Tensor views/copies/dtypes, the comparison helpers, dtype conversions, errors, RNG and CPU detection.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <cstdint>
#include <limits>

#include "core/cpu.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/test_util.h"

using namespace tq;

TEST_CASE("tensor: factories, 64-byte alignment, contiguity") {
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64, DType::i32, DType::i8, DType::u8}) {
    Tensor t = Tensor::zeros({3, 5}, dt);
    CHECK(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
    CHECK(t.is_contiguous());
    CHECK(t.nbytes() == 15 * dtype_size(dt));
    CHECK(t.at({2, 4}) == 0.0);
    t.set({1, 2}, 7);
    CHECK(t.at({1, 2}) == 7.0);
  }
  Tensor s = Tensor::full({}, 2.5);  // 0-d
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
  Tensor e = Tensor::empty({0, 4});
  CHECK(e.numel() == 0);
  CHECK(e.contiguous().numel() == 0);
  CHECK_THROWS_AS(Tensor::empty({-1}), Error);
}

// Note [Huge pages] (core/tensor.cpp): large allocations are 2 MiB-aligned and advised; whether the
// kernel grants 2 MiB pages depends on its settings, so that part is reported, not checked.
TEST_CASE("tensor: allocations of 4 MiB and more are 2 MiB-aligned, zeroed, and advised for huge pages") {
  const int64_t n = (int64_t{4} << 20) + 1;  // just above the threshold: 3 huge pages
  Tensor big = Tensor::zeros({n}, DType::u8);
  const auto addr = reinterpret_cast<uintptr_t>(big.raw_data());
  const char* off = std::getenv("TQ_HUGE_PAGES");
  if (off == nullptr || std::string(off) != "0") CHECK(addr % (uintptr_t{2} << 20) == 0);
  CHECK(big.flat(0) == 0.0);
  CHECK(big.flat(n - 1) == 0.0);
  Tensor below = Tensor::zeros({(int64_t{4} << 20) / 4 - 16});  // f32, 64 bytes under: 64-byte rule
  CHECK(reinterpret_cast<uintptr_t>(below.raw_data()) % 64 == 0);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_range = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && line.find(' ') != std::string::npos) {
      in_range = lo <= addr && addr < hi;
    } else if (in_range && line.rfind("AnonHugePages:", 0) == 0) {
      MESSAGE("mapping of a 4 MiB tensor: " << line << " (0 where THP is 'never')");
      break;
    }
  }
}

TEST_CASE("tensor: views share storage and keep element strides") {
  Tensor a = Tensor::arange(24, DType::f32).view({2, 3, 4});
  Tensor t = a.transpose(0, 2);  // [4, 3, 2]
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.strides() == Shape{1, 4, 12});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.at({3, 2, 1}) == a.at({1, 2, 3}));
  Tensor c = t.contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.storage().get() != a.storage().get());
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 2; ++k) CHECK(c.at({i, j, k}) == a.at({k, j, i}));
  Tensor sl = a.slice(1, 1, 3);  // [2, 2, 4]
  CHECK(sl.at({1, 0, 2}) == a.at({1, 1, 2}));
  sl.set({0, 0, 0}, -1);  // visible through the base
  CHECK(a.at({0, 1, 0}) == -1);
  CHECK(a.select(1, 2).shape() == Shape{2, 4});
  CHECK(a.select(1, 2).at({1, 3}) == a.at({1, 2, 3}));
  Tensor p = a.permute({2, 0, 1});
  CHECK(p.at({3, 1, 2}) == a.at({1, 2, 3}));
  CHECK(a.view({6, -1}).shape() == Shape{6, 4});
  CHECK_THROWS_WITH_AS(t.view({24}), doctest::Contains("not contiguous"), Error);
  CHECK(t.reshape({24}).at({1}) == a.at({1, 0, 0}));
  Tensor col = Tensor::arange(3).view({3, 1});
  Tensor ex = col.expand({2, 3, 4});
  CHECK(ex.strides() == Shape{0, 1, 0});
  CHECK(ex.at({1, 2, 3}) == 2);
  CHECK(a.unsqueeze(0).shape() == Shape{1, 2, 3, 4});
  CHECK(a.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK_THROWS_WITH_AS(a.slice(1, 2, 5), doctest::Contains("out of bounds"), Error);
}

TEST_CASE("tensor: dtype conversion round trips") {
  Rng rng = test::make_rng(1);
  Tensor x = Tensor::randn({64}, rng, 3.0, DType::f32);
  Tensor d = x.to(DType::f64);
  CHECK(allclose(d.to(DType::f32), x, 0, 0));
  Tensor b = x.to(DType::bf16).to(DType::f32);
  CHECK(allclose(b, x, 1.0 / 128, 0));  // 8 significant bits
  Tensor h = x.to(DType::f16).to(DType::f32);
  CHECK(allclose(h, x, 1.0 / 1024, 1e-7));
  // Round to nearest even and specials.
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(1.00390625f) == 0x3f80);    // exactly half-way: ties to even (down)
  CHECK(f32_to_bf16(1.01171875f) == 0x3f82);    // half-way, odd below: rounds up
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(1e6f) == 0x7c00);            // overflow to inf
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  for (uint32_t bits = 0; bits < 0x7c00; bits += 7) {  // every finite half survives f32 and back
    CHECK(f32_to_f16(f16_to_f32(static_cast<uint16_t>(bits))) == bits);
  }
  Tensor i = Tensor::from_vector<int32_t>({-3, 0, 7}, {3});
  CHECK(i.to(DType::f32).to_vector() == std::vector<double>{-3, 0, 7});
}

TEST_CASE("tensor: compare reports the first mismatch") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3}, {3});
  Tensor b = Tensor::from_vector<float>({1, 2.5f, 3}, {3});
  DiffReport r = compare(a, b, 0, 0.1);
  CHECK_FALSE(r.ok());
  CHECK(r.first_mismatch == 1);
  CHECK(r.max_abs == doctest::Approx(0.5));
  CHECK(compare(a, a, 0, 0).ok());
  CHECK_FALSE(compare(a, a.view({1, 3}), 1, 1).ok());  // shapes differ
  Tensor n = Tensor::from_vector<float>({1, std::nanf(""), 3}, {3});
  CHECK_FALSE(allclose(n, a));
}

TEST_CASE("errors: TQ_CHECK throws tq::Error with the message and location") {
  try {
    TQ_CHECK(1 + 1 == 3, "[component] bad value {} — hint: {}", 42, "fix it");
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(e.message() == "[component] bad value 42 — hint: fix it");
    CHECK(std::string(e.what()).find("test_tensor.cpp") != std::string::npos);
    CHECK(e.line() > 0);
  }
}

TEST_CASE("rng: deterministic, state save/restore, moments") {
  Rng a(42), b(42);
  for (int i = 0; i < 10; ++i) CHECK(a.next_u64() == b.next_u64());
  a.normal();  // leaves a cached spare
  const std::string st = a.state_string();
  std::vector<double> first;
  for (int i = 0; i < 5; ++i) first.push_back(a.normal());
  Rng c(0);
  c.set_state_string(st);
  for (int i = 0; i < 5; ++i) CHECK(c.normal() == first[static_cast<size_t>(i)]);
  CHECK_THROWS_AS(c.set_state_string("garbage"), Error);
  Rng m(7);
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = m.normal();
    s += x;
    s2 += x * x;
  }
  CHECK(std::fabs(s / n) < 0.01);
  CHECK(std::fabs(s2 / n - 1) < 0.01);
  for (int i = 0; i < 1000; ++i) CHECK(m.below(3) < 3);
}

TEST_CASE("cpu: features are consistent with the target") {
  const CpuFeatures& f = cpu_features();
  const CpuTarget t = cpu_target();
  if (t == CpuTarget::avx512) CHECK(f.avx512f);
  if (t == CpuTarget::avx2) CHECK(f.avx2);
  CHECK(!cpu_model_name().empty());
  MESSAGE("cpu: " << cpu_model_name() << " | " << cpu_features_str(cpu_features_detected()));
}
