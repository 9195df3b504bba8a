// The inference engine: a LLaMA lowered (infer/lower.h) to a flat plan over preallocated buffers —
// packed ternary linears (fused QKV and gate|up, Tequila bias in the epilogue, before RoPE), RMSNorm
// fused with int8 activation quantization, RoPE, causal GQA attention over an f16 or f32 KV cache, SwiGLU
// fused with quantization, residual adds and an int8 / f32 / bf16 / q4 LM head. Unquantized models lower
// to the same plan with dense f32 or bf16 linears (the reference path). See docs/infer.md.
//
//   auto eng = infer::lower(model, {});                       // or load_engine(path_or_dir)
//   eng->forward(ids.data(), n, logits.data(), true);         // prefill: logits [n, V]
//   eng->forward(&next, 1, logits.data(), false);             // decode: logits [V]
//   infer::save_packed(*eng, "model.tqpk");                   // infer/packed_model.h
//
// Legend: T tokens in a step, C hidden, H heads, Hkv KV heads, D head_dim, F FFN width, V vocab,
// L layers, S max context.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"
#include "infer/kernels.h"
#include "infer/language_model.h"
#include "infer/step_profile.h"
#include "nn/llama_config.h"

namespace tq::infer {

struct EngineOptions {
  int64_t max_context = 0;         // 0: min(config max_position_embeddings, 8192)
  int64_t max_batch_tokens = 512;  // tokens per step; longer prompts run in chunks
  kq::ActScale act_scale = kq::ActScale::per_token;  // int8 activation scales of ternary linears
  std::string lm_head = "int8";    // int8 (per-row weights) | f32 | bf16 | q4 (infer/q4_head.h)
  std::string dense_dtype = "f32";  // weights of dense (unquantized) linears: f32 | bf16
  bool dense = false;  // lower quantized linears as dense t∘α + c (fake-quant weights, f32 acts)
  std::string kv_cache = "auto";  // auto (f16 where the AVX-512 row kernels run, else f32) | f16 | f32
  int threads = 0;     // 0: tq::num_threads()
  bool profile = false;  // time decode steps by op (Engine::step_profile; infer/step_profile.h)
  void validate() const;  // names the offending field
};

// The lowered weights: named tensors plus a JSON description (config, quantization, matrix kinds).
// This is exactly what the packed model file stores (infer/packed_model.h).
struct EnginePlan {
  nn::LlamaConfig config;
  Json meta;  // {"quantization": ..., "lm_head": "int8", "matrices": {name: {kind, rows, cols, ...}}}
  std::vector<std::pair<std::string, Tensor>> tensors;
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

class Engine : public LanguageModel {
 public:
  // Validates the plan (shapes, dtypes, kinds); errors name `source` (a file path or "lower").
  Engine(EnginePlan plan, const EngineOptions& opts, const std::string& source = "lower");
  ~Engine() override;

  int32_t vocab_size() const override;
  int64_t max_context() const override;
  int64_t position() const override;
  void reset() override;
  void forward(const int32_t* ids, int64_t n, float* logits, bool all_logits) override;
  std::string describe() const override;

  const EnginePlan& plan() const;
  const EngineOptions& options() const;
  bool ternary() const;            // every projection is packed ternary
  size_t weights_bytes() const;    // all plan tensors (embedding included)
  size_t bytes_per_token() const;  // weights a decode step reads (no embedding table, no KV cache)
  kq::KernelIsa isa() const;
  int threads() const;
  const char* kv_cache_type() const;  // "f16" | "f32" (EngineOptions::kv_cache resolved)
  size_t kv_cache_bytes() const;      // K and V of all layers for max_context() positions
  // With EngineOptions::profile: the time of the decode steps (forward with n = 1) so far, by op;
  // nullptr otherwise. reset() it between measurements.
  StepProfile* step_profile();
  // Bytes of weights each kind of op reads per decoded token (linears, LM head, norm weights).
  std::array<double, kStepOps> step_op_bytes() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tq::infer
