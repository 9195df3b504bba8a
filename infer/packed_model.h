// The packed model file: a lowered EnginePlan in one mmap-able file, so serving does not
// re-quantize. Layout (all little-endian; see docs/formats.md "Packed model file"):
//
//   [0, 8)    magic "TQPACKED"
//   [8, 12)   u32 version (kPackedVersion)
//   [12, 16)  u32 reserved, 0
//   [16, 24)  u64 header length N
//   [24, 24+N) header JSON: {"format", "config" (HF LlamaConfig), "meta" (quantization, lm_head,
//             matrices), "tensors": [{"name", "dtype", "shape", "offset", "nbytes"}], "data_bytes"}
//   zero padding to a multiple of 64, then the data section; tensor offsets are relative to it and
//   multiples of 64; the file ends exactly at the end of the data section.
//
//   save_packed(*engine, "model.tqpk");               // atomic: temp file, fsync, rename
//   auto eng = load_packed("model.tqpk", opts);       // tensors view the mapping (no copy)
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "infer/engine.h"

namespace tq::infer {

inline constexpr char kPackedMagic[8] = {'T', 'Q', 'P', 'A', 'C', 'K', 'E', 'D'};
// 2: ternary scales pre-tiled [rows_padded/16, G, 16] (version 1 stored them [rows_padded, G]).
inline constexpr uint32_t kPackedVersion = 2;

void save_packed(const EnginePlan& plan, const std::string& path);
void save_packed(const Engine& engine, const std::string& path);
// Validates magic, version, header, every tensor's dtype/shape/offset/size and the file size;
// errors name the file and the field. Tensors borrow the mapped file (read-only).
EnginePlan read_packed_plan(const std::string& path);
std::unique_ptr<Engine> load_packed(const std::string& path, const EngineOptions& opts = {});
// The rule load_packed applies: o.lm_head left at its default takes the file's head (int8, f32, bf16,
// q4); an explicit other value stays, and the Engine then reports the mismatch.
void follow_packed_head(const EnginePlan& plan, EngineOptions& o, const std::string& path);

}  // namespace tq::infer
