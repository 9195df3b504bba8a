#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <omp.h>

#include "autograd/rope.h"
#include "core/cpu.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "core/spin_barrier.h"
#include "core/work_shares.h"
#include "infer/fused_ops.h"
#include "infer/kv_cache.h"
#include "infer/q4_head.h"

namespace tq::infer {

void EngineOptions::validate() const {
  TQ_CHECK(max_context >= 0, "[EngineOptions] max_context {} must be >= 0 (0: config maximum)",
           max_context);
  TQ_CHECK(max_batch_tokens >= 1, "[EngineOptions] max_batch_tokens {} must be >= 1",
           max_batch_tokens);
  TQ_CHECK(lm_head == "int8" || lm_head == "f32" || lm_head == "bf16" || lm_head == "q4",
           "[EngineOptions] lm_head '{}' must be int8 | f32 | bf16 | q4", lm_head);
  TQ_CHECK(dense_dtype == "f32" || dense_dtype == "bf16",
           "[EngineOptions] dense_dtype '{}' must be f32 | bf16", dense_dtype);
  TQ_CHECK(kv_cache == "auto" || kv_cache == "f16" || kv_cache == "f32",
           "[EngineOptions] kv_cache '{}' must be auto | f16 | f32", kv_cache);
  TQ_CHECK(threads >= 0, "[EngineOptions] threads {} must be >= 0 (0: all)", threads);
}

const Tensor* EnginePlan::find(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

namespace {

// One (fused) projection: packed ternary, or dense f32/bf16 weights with an optional f32 bias.
struct Mat {
  bool ternary = false;
  int64_t rows = 0, cols = 0;
  kq::PackedTernary packed;
  Tensor w;  // dense: f32 or bf16 [rows, cols]
  Tensor b;  // dense: f32 [rows] or undefined
};

struct Layer {
  const float* attn_norm = nullptr;  // [C]
  const float* mlp_norm = nullptr;   // [C]
  Mat qkv, o, gu, down;              // qkv rows q|k|v; gu rows gate|up
};

// Where each op's work runs: inside the step's one parallel region (every thread calls the step
// function; run() is the thread's share followed by a barrier), or, when the plan has a dense
// linear (oneDNN must be called outside a region), one region per op.
struct Ctx {
  bool in_region = false;
  int tid = 0, nt = 1;
  SpinBarrier* bar = nullptr;  // in a region: the team's barrier (Note [Decode with few barriers])
  const StepMarker* mark = nullptr;  // EngineOptions::profile: this thread's marks, set by step()
  void marked(StepOp op) const {
    if (mark != nullptr) (*mark)(op);
  }
  void sync() const {
    if (bar != nullptr) {
      bar->wait();
    } else {
#pragma omp barrier
    }
  }
  template <class F>
  void sync(F&& idle) const {  // idle(): SpinBarrier::wait(idle); omp barriers have no idle hook
    if (bar != nullptr) {
      bar->wait(idle);
    } else {
#pragma omp barrier
    }
  }
  // One op of a step: in a region the thread's share, then a barrier (its time charged to `wait`);
  // else the op on this thread or in a parallel region of its own (barrier time inside `op`).
  template <class F>
  void run(StepOp op, const F& f) const {
    if (in_region) {
      f(tid, nt);
      marked(op);
      sync();
      marked(StepOp::wait);
      return;
    }
    if (nt == 1) {
      f(0, 1);
    } else {
      const int n = nt;
#pragma omp parallel num_threads(n)
      f(omp_get_thread_num(), omp_get_num_threads());
    }
    marked(op);
  }
};

inline void split(int64_t n, int tid, int nt, int64_t& b, int64_t& e) {
  b = n * tid / nt;
  e = n * (tid + 1) / nt;
}

// Note [Warm while waiting]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// In a decode step the two threads rarely reach a barrier together: on this shared VM one core runs
// a few % slower than the other from one op to the next, and the early thread used to spin for ≈ 8%
// of the step. Each core's memory pipeline then idles, although the bandwidth available here grows
// with the number of cores streaming (the read probe: ≈ 33 GB/s on 1 thread, ≈ 65 on 2). So a thread
// that waits reads the start of its own share of the next op's weights (codes and, 1/16 as many, α;
// or its LM-head rows), 4 KiB per call of SpinBarrier::wait's idle hook, up to kWarmBytes, which
// then sit in its L2 when the op starts. The reads are plain 8-byte loads, one per 64-byte line,
// so many are in flight at once (the read probe's pattern); results are unaffected.
constexpr size_t kWarmBytes = size_t{384} << 10;  // of the primary span; L2 is 1 MiB on this CPU

// Note [Work stealing]
// ~~~~~~~~~~~~~~~~~~~~
// Equal static shares still leave one thread waiting at each barrier of a step when its core runs
// slower for a while (≈ 7% of a decode step on this VM, measured per barrier). So inside a step's
// region each packed linear and the LM head hand out their rows through tq::WorkShares (one per op:
// 4 per layer, then the head; `steps` numbers the runs): a thread claims from the front of its own
// static share, in order, so its weight stream is the same as before, and when that is done it
// takes chunks from the back of the other's share. Own claims take half of what is left (whole
// chunks, at least one), so a thread makes ≈ 6 claims per op instead of one per chunk (fewer atomic
// claims and kernel restarts; tg128 on 2 threads 80 → 85% of the read probe, medians of 9 rounds
// alternating binaries). Chunks: decode ≈ 128 KiB of codes (a multiple of 4 row blocks, which the
// GEMV takes together); prefill 16 row blocks × all T tokens; head kHeadChunkRows rows. Each row is
// still computed by exactly one thread with the same arithmetic, so the logits do not change.
// Warming (Note [Warm while waiting]) still covers the last stretch: the start of the next op's
// static share is where its owner begins.
// Note [bf16 decode without AVX512-BF16]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The dense bf16 path is the baseline packed ternary decode is compared with (tqinfer bench --dense
// bf16). gemm_bf16 runs oneDNN's bf16 GEMM where the CPU has AVX512-BF16, and otherwise widens both
// operands to f32 first — for a decode step that is the whole weight matrix, rewritten on every
// call (minutes per token at the 1B shape on an AVX2 CPU). Up to kBf16RowTokens tokens, such CPUs
// take row dot products over the bf16 weights instead: each weight read once, as for the packed
// path. The activations are the same bf16-rounded ones; the sums are f32 in a fixed order.
constexpr int64_t kBf16RowTokens = 8;

constexpr int64_t kHeadChunkRows = 256;  // 512 KiB of the int8 head at C = 2048; a multiple of 16
// ≈ 128 KiB of codes per decode chunk, a multiple of 4 row blocks (the GEMV takes 4 at a time)
inline int64_t decode_chunk_blocks(const kq::PackedTernary& w) {
  const int64_t block_bytes = w.cols / kq::kTileCols * kq::kTileBytes;
  return std::max<int64_t>(4, (int64_t{128} << 10) / block_bytes / 4 * 4);
}

// Note [KV prefetch]
// ~~~~~~~~~~~~~~~~~~
// In a decode step a layer's KV cache was last touched one token earlier, ≈ 500 MB of weight reads
// ago, so it is cold: attend_group over 64 cached positions ran ≈ 6× slower cold than warm here
// (latency-bound, ≈ 2.5 µs per KV head). So each thread asks for the start of the K and V of the
// next KV head it attends (up to kKvPrefetchBytes of each; the hardware prefetcher carries a longer
// cache on) while it computes the current one, and for its first head just before the barrier that
// precedes attention. `tqinfer bench --profile`, tg128 on 2 threads, 3 alternated rounds: attention
// 0.33 → 0.29 ms per token (no change at tg512, where the 32 KiB cover a quarter of a head).
// Earlier still, right before the gate|up linear of layer l (and before the LM head for layer 0 of
// the next token), each thread asks for the same start of all its KV heads of layer l + 1 into L2
// (prefetcht1, ≤ 256 KiB per thread with 4 heads): the GEMVs that follow stream megabytes, so those
// lines arrive among them instead of one latency at a time during attention. tg128 on 2 threads,
// 10 rounds alternating the variants (order swapped every round): attention 0.21–0.33 → 0.15–0.25 ms
// per token (medians 0.27 → 0.17); the linears' time did not move beyond the noise. K and V are
// asked for line by line in step: the same prefetches issued as all of K, then all of V, gained
// nothing (4 alternated rounds, attention 0.27–0.30 ms both ways; our guess is that a burst longer
// than the miss queue loses its tail). Since the ninth session both prefetches are KvCache::prefetch
// (K and V line by line in step; the in-attention one into L1 had asked for K, then V: attention at
// tg128 stayed at 0.17–0.19 ms on the f32 cache, 3 alternated rounds). The limit is in bytes, so an
// f16 cache (Note [f16 KV cache]) gets twice the positions. Prefetches only; results are unaffected.
constexpr int64_t kKvPrefetchBytes = int64_t{32} << 10;

class Warm {
 public:
  Warm() = default;
  // Primary span [p, p + n) up to kWarmBytes; the secondary [p2, p2 + n2) in proportion.
  Warm(const void* p, size_t n, const void* p2, size_t n2)
      : p_(static_cast<const uint8_t*>(p)), n_(std::min(n, kWarmBytes)),
        p2_(static_cast<const uint8_t*>(p2)),
        n2_(n == 0 ? 0 : std::min(n2, n2 * n_ / n)) {}
  bool operator()() {  // touch the next 4 KiB (and its share of the secondary); false when done
    if (at_ >= n_) return false;
    const size_t end = std::min(n_, at_ + 4096);
    uint64_t acc = touch(p_, at_, end);
    if (p2_ != nullptr && n2_ > 0) {
      const size_t b2 = at_ * n2_ / n_, e2 = end >= n_ ? n2_ : end * n2_ / n_;
      acc ^= touch(p2_, b2, e2);
    }
    at_ = end;
    sink_ = sink_ ^ acc;
    return at_ < n_;
  }

 private:
  static uint64_t touch(const uint8_t* p, size_t b, size_t e) {
    uint64_t acc = 0;
    for (size_t i = b & ~size_t{63}; i + sizeof(uint64_t) <= e; i += 64) {
      uint64_t v;
      std::memcpy(&v, p + i, sizeof v);
      acc ^= v;
    }
    return acc;
  }
  const uint8_t* p_ = nullptr;
  size_t n_ = 0;
  const uint8_t* p2_ = nullptr;
  size_t n2_ = 0;
  size_t at_ = 0;
  volatile uint64_t sink_ = 0;
};

}  // namespace

struct Engine::State {
  EnginePlan plan;
  EngineOptions opts;
  std::string source;
  int64_t C = 0, H = 0, Hkv = 0, D = 0, F = 0, V = 0, L = 0, S = 0, Tc = 0, G_c = 0;
  float eps = 0;
  const float* embed = nullptr;       // [V, C]
  const float* final_norm = nullptr;  // [C]
  std::vector<Layer> layers;
  std::string head_kind;  // int8 | f32 | bf16 | q4
  Tensor head_w;          // i8 / f32 / bf16 [V, C]
  const float* head_s = nullptr;  // int8: per-row scale [V]
  Tensor head_sum;                // int8: i32 [V] row sums Σ_i w[j, i] (fused_ops.h lm_head_int8)
  Tensor head_codes, head_scales;  // q4: u8 [Vp/16, C/8, 64], f16 [Vp/16, C/32, 16]
                                   // (Note [q4 LM head layout])
  Tensor hgs;                      // q4: i32 [Tc, C/32] group sums of hq (q4_act_group_sums)
  void build_head_q4();
  // One token's head activations from its normed hidden state hn [C]: int8 (and for q4 the 32-group
  // sums) for the quantized heads; returns the int8 scale (0 for the f32 / bf16 heads).
  float head_quantize(const float* hn, int8_t* q, int32_t* gsums) const;
  // logits [nT, V] rows [b, e) of the LM head for nT consecutive tokens (hn, q, qs, gsums: their rows).
  void head_rows(int64_t b, int64_t e, const float* hn, const int8_t* q, const float* qs,
                 const int32_t* gsums, int64_t nT, float* logits) const;
  bool all_ternary = true;
  int nt = 1;
  kq::KernelIsa isa{};
  int64_t pos = 0;
  // Row shares of the packed ops inside a step's region (Note [Work stealing]): 4 per layer (qkv,
  // o, gu, down), then the head; `steps` counts steps (read by every thread of the step's region).
  std::vector<WorkShares> shares;
  std::unique_ptr<StepProfile> prof;  // EngineOptions::profile
  uint64_t steps = 0;

  // Buffers (Tc = max tokens per step, S = max context).
  Tensor x, xn, qkv, att, tmp, gu, hf;  // f32 [Tc, C | C | qkv_rows | H*D | C | 2F | F]
  KvCache kv;                           // f32 | f16 (Note [f16 KV cache])
  Tensor scores;                        // f32 [nt, H/Hkv · round_up(S, 16)]
  Tensor rope_cos, rope_sin;            // f32 [S, D/2]
  Tensor hq;                            // i8 [Tc, C] (int8 head activations)
  Tensor hs;                            // f32 [Tc]
  Tensor xb;                            // bf16 [Tc, max(C, H*D, F)] (bf16 dense inputs)
  Tensor xr;  // f32, ≤ kBf16RowTokens rows of width K back to back (Note [bf16 decode without AVX512-BF16])
  kq::QuantizedActs qa_c, qa_hd, qa_f;  // int8 activations entering ternary linears: [T] views
  kq::QuantizedActs full_c, full_hd, full_f;  // ... of these [Tc] buffers
  int64_t view_T = -1;                        // T of the views (rebuilt only when T changes)
  void set_tokens(int64_t T);

  void build();
  Mat make_mat(const std::string& name) const;
  void alloc();
  void step(const int32_t* ids, int64_t T, float* logits, bool all_logits, bool want_head, Ctx ctx);
  // Decode of one token inside the step's parallel region (all-ternary plans, nt > 1) with 5
  // barriers per layer instead of 9: see Note [Decode with few barriers].
  void decode_step(int32_t id, float* logits, const Ctx& ctx);
  // This thread's share of a packed linear / of the LM head, for Note [Warm while waiting].
  Warm warm_rows(const Mat& m, int tid, int n) const;
  Warm warm_head(int tid, int n) const;
  // Note [KV prefetch]: the cached K and V (up to kKvPrefetchBytes each) of thread tid's KV heads
  // of layer l, into L2.
  void prefetch_layer_kv(int64_t l, int tid, int n) const;
  // Private per-thread buffers of decode_step; xn and hf also take prefill's rows that only feed
  // int8 quantization (Note [Prefill rows that only feed int8]).
  struct ThreadScratch {
    Tensor h, xn, hf;     // f32 [C] (the residual stream), [C], [F]
    Tensor hq;            // i8 [C] (int8 head activations)
    Tensor hgs;           // i32 [C/32] (q4 head: group sums of hq)
    kq::QuantizedActs qc, qhd, qf;  // one token of C, H·D, F
  };
  std::vector<ThreadScratch> scratch;
  void linear(const Mat& m, int64_t op, const Tensor& in_f32, const kq::QuantizedActs& in_q, int64_t T,
              Tensor& out, const Ctx& ctx);
  // Thread tid's rows of packed op `op` (4·layer + 0..3) for T tokens, or of the LM head (nT tokens):
  // chunks through shares[op] inside a step's region (Note [Work stealing]), else the static split.
  void packed_rows(const kq::PackedTernary& w, int64_t op, const kq::QuantizedActs& a, int64_t T,
                   float* y, int64_t ldy, int tid, int n, bool in_region);
  void head_share(const float* hn, const int8_t* q, const float* qs, const int32_t* gsums, int64_t nT,
                  float* logits, int tid, int n, bool in_region);
};

Mat Engine::State::make_mat(const std::string& name) const {
  const Json& mats = plan.meta.at("matrices");
  TQ_CHECK(mats.contains(name), "[engine] {}: matrices.{} missing from the plan", source, name);
  const Json& m = mats.at(name);
  const std::string ctx = source + ": matrices." + name;
  Mat out;
  const auto kind = json_get<std::string>(m, "kind", ctx);
  out.rows = json_get<int64_t>(m, "rows", ctx);
  out.cols = json_get<int64_t>(m, "cols", ctx);
  TQ_CHECK(out.rows > 0 && out.cols > 0, "[engine] {}: rows/cols must be positive", ctx);
  auto need = [&](const std::string& t) -> const Tensor& {
    const Tensor* p = plan.find(name + "." + t);
    TQ_CHECK(p != nullptr, "[engine] {}: tensor {}.{} missing", source, name, t);
    return *p;
  };
  if (kind == "ternary") {
    out.ternary = true;
    const auto rp = json_get<int64_t>(m, "rows_padded", ctx);
    TQ_CHECK(rp >= out.rows && rp % kq::kTileRows == 0 && rp - out.rows < kq::kTileRows,
             "[engine] {}: rows_padded {} is not rows {} rounded up to 16", ctx, rp, out.rows);
    TQ_CHECK(out.cols % kq::kPackGroup == 0, "[engine] {}: cols {} is not a multiple of 128", ctx,
             out.cols);
    const Tensor& codes = need("codes");
    const Tensor& scales = need("scales");
    const Tensor& bias = need("bias");
    const Shape code_shape{rp / kq::kTileRows, out.cols / kq::kTileCols, kq::kTileBytes};
    TQ_CHECK(codes.dtype() == DType::u8 && codes.shape() == code_shape && codes.is_contiguous() &&
                 static_cast<int64_t>(codes.nbytes()) == packed_code_bytes(rp, out.cols),
             "[engine] {}.codes: {}, expected contiguous u8{}", ctx, codes.str(),
             shape_str(code_shape));
    const Shape scale_shape{rp / kq::kTileRows, out.cols / kq::kPackGroup, kq::kTileRows};
    TQ_CHECK(scales.dtype() == DType::f16 && scales.shape() == scale_shape,
             "[engine] {}.scales: {}, expected f16{} (pre-tiled α) — hint: re-run `tqinfer "
             "convert` with this build",
             ctx, scales.str(), shape_str(scale_shape));
    TQ_CHECK(bias.dtype() == DType::f32 && bias.shape() == Shape({rp}),
             "[engine] {}.bias: {}, expected f32[{}]", ctx, bias.str(), rp);
    out.packed.rows = out.rows;
    out.packed.cols = out.cols;
    out.packed.rows_padded = rp;
    out.packed.codes = codes;
    out.packed.scales = scales;
    out.packed.bias = bias;
  } else if (kind == "dense") {
    out.w = need("weight");
    TQ_CHECK((out.w.dtype() == DType::f32 || out.w.dtype() == DType::bf16) &&
                 out.w.shape() == Shape({out.rows, out.cols}) && out.w.is_contiguous(),
             "[engine] {}.weight: {}, expected contiguous f32|bf16[{}, {}]", ctx, out.w.str(),
             out.rows, out.cols);
    if (const Tensor* b = plan.find(name + ".bias")) {
      TQ_CHECK(b->dtype() == DType::f32 && b->shape() == Shape({out.rows}),
               "[engine] {}.bias: {}, expected f32[{}]", ctx, b->str(), out.rows);
      out.b = *b;
    }
  } else {
    TQ_THROW("[engine] {}: kind '{}' must be ternary | dense", ctx, kind);
  }
  return out;
}

void Engine::State::build() {
  const nn::LlamaConfig& cfg = plan.config;
  cfg.validate(source);
  C = cfg.hidden_size;
  H = cfg.num_attention_heads;
  Hkv = cfg.resolved_kv_heads();
  D = cfg.resolved_head_dim();
  F = cfg.intermediate_size;
  V = cfg.vocab_size;
  L = cfg.num_hidden_layers;
  eps = static_cast<float>(cfg.rms_norm_eps);
  S = opts.max_context > 0 ? opts.max_context : std::min<int64_t>(cfg.max_position_embeddings, 8192);
  Tc = std::min(opts.max_batch_tokens, S);
  auto vec = [&](const std::string& name, int64_t n) -> const float* {
    const Tensor* t = plan.find(name);
    TQ_CHECK(t != nullptr, "[engine] {}: tensor {} missing", source, name);
    TQ_CHECK(t->dtype() == DType::f32 && t->numel() == n && t->is_contiguous(),
             "[engine] {}: tensor {} is {}, expected contiguous f32 with {} elements", source, name,
             t->str(), n);
    return t->data<float>();
  };
  embed = vec("embed_tokens", V * C);
  final_norm = vec("norm", C);
  layers.resize(static_cast<size_t>(L));
  const int64_t qkv_rows = (H + 2 * Hkv) * D;
  for (int64_t l = 0; l < L; ++l) {
    Layer& ly = layers[static_cast<size_t>(l)];
    const std::string p = fmt::format("layers.{}.", l);
    ly.attn_norm = vec(p + "attn_norm", C);
    ly.mlp_norm = vec(p + "mlp_norm", C);
    ly.qkv = make_mat(p + "qkv");
    ly.o = make_mat(p + "o");
    ly.gu = make_mat(p + "gate_up");
    ly.down = make_mat(p + "down");
    auto shape = [&](const Mat& m, const char* n, int64_t r, int64_t c) {
      TQ_CHECK(m.rows == r && m.cols == c, "[engine] {}: {}{} is [{}, {}], expected [{}, {}]",
               source, p, n, m.rows, m.cols, r, c);
    };
    shape(ly.qkv, "qkv", qkv_rows, C);
    shape(ly.o, "o", C, H * D);
    shape(ly.gu, "gate_up", 2 * F, C);
    shape(ly.down, "down", C, F);
    for (const Mat* m : {&ly.qkv, &ly.o, &ly.gu, &ly.down}) all_ternary = all_ternary && m->ternary;
  }
  head_kind = json_get<std::string>(plan.meta, "lm_head", source);
  TQ_CHECK(head_kind == opts.lm_head,
           "[engine] {}: the plan's LM head is {} but the options ask for {} — hint: lower again "
           "with lm_head = {}, or load with EngineOptions::lm_head = \"{}\"",
           source, head_kind, opts.lm_head, opts.lm_head, head_kind);
  if (head_kind == "q4") {
    build_head_q4();  // its own tensors: lm_head.codes, lm_head.scales
  } else {
    const Tensor* hw = plan.find("lm_head.weight");
    TQ_CHECK(hw != nullptr, "[engine] {}: tensor lm_head.weight missing", source);
    const DType want = head_kind == "int8" ? DType::i8 : head_kind == "f32" ? DType::f32 : DType::bf16;
    TQ_CHECK(hw->dtype() == want && hw->shape() == Shape({V, C}) && hw->is_contiguous(),
             "[engine] {}: lm_head.weight is {}, expected {}[{}, {}]", source, hw->str(),
             dtype_name(want), V, C);
    head_w = *hw;
  }
  if (head_kind == "int8") {
    head_s = vec("lm_head.scale", V);
    head_sum = Tensor::empty({V}, DType::i32);
    const int8_t* w = head_w.data<int8_t>();
    int32_t* hsum = head_sum.data<int32_t>();
    const int64_t C_ = C;
    parallel_for(V, 1024, [&](int64_t b, int64_t e) { int8_row_sums(w, b, e, C_, hsum); });
  }
  nt = opts.threads > 0 ? opts.threads : num_threads();
  isa = kq::best_isa();
  alloc();
}

// The q4 head's tensors, checked against Note [q4 LM head layout] (errors name the file and tensor).
void Engine::State::build_head_q4() {
  TQ_CHECK(C % kQ4Group == 0,
           "[engine] {}: lm_head q4 needs hidden_size {} to be a multiple of {} — hint: use lm_head "
           "int8",
           source, C, kQ4Group);
  const int64_t nb = (V + kQ4TileRows - 1) / kQ4TileRows;
  auto need = [&](const char* name, DType dt, const Shape& shape) -> const Tensor& {
    const Tensor* t = plan.find(name);
    TQ_CHECK(t != nullptr, "[engine] {}: tensor {} missing (lm_head q4)", source, name);
    TQ_CHECK(t->dtype() == dt && t->shape() == shape && t->is_contiguous(),
             "[engine] {}: tensor {} is {}, expected contiguous {}{} (lm_head q4, V = {}, C = {})",
             source, name, t->str(), dtype_name(dt), shape_str(shape), V, C);
    return *t;
  };
  head_codes = need("lm_head.codes", DType::u8, Shape{nb, C / kQ4TileCols, kQ4TileBytes});
  head_scales = need("lm_head.scales", DType::f16, Shape{nb, C / kQ4Group, kQ4TileRows});
}

void Engine::State::set_tokens(int64_t T) {
  if (T == view_T) return;
  if (full_c.cols % kq::kPackGroup == 0) act_buffers_view(full_c, T, qa_c);
  if (full_hd.cols % kq::kPackGroup == 0) act_buffers_view(full_hd, T, qa_hd);
  if (full_f.cols % kq::kPackGroup == 0) act_buffers_view(full_f, T, qa_f);
  view_T = T;
}

void Engine::State::alloc() {
  const int64_t HD = H * D;
  x = Tensor::zeros({Tc, C});
  xn = Tensor::zeros({Tc, C});
  qkv = Tensor::zeros({Tc, (H + 2 * Hkv) * D});
  att = Tensor::zeros({Tc, HD});
  tmp = Tensor::zeros({Tc, C});
  gu = Tensor::zeros({Tc, 2 * F});
  hf = Tensor::zeros({Tc, F});
  // auto: f16 where the row kernels convert it with F16C (AVX2 / AVX-512), f32 on the reference path.
  const bool f16_kv = opts.kv_cache == "f16" ||
                      (opts.kv_cache == "auto" && std::string(fused_ops_isa()) != "reference");
  kv = KvCache(L, Hkv, S, D, f16_kv ? KvType::f16 : KvType::f32);
  scores = Tensor::zeros({nt, H / Hkv * ((S + 15) / 16 * 16)});
  hq = Tensor::zeros({Tc, C}, DType::i8);
  hs = Tensor::zeros({Tc});
  if (head_kind == "q4") hgs = Tensor::zeros({Tc, C / kQ4Group}, DType::i32);
  if (!all_ternary && opts.dense_dtype == "bf16") {
    xb = Tensor::zeros({Tc, std::max({C, HD, F})}, DType::bf16);
    if (!cpu_features().avx512_bf16) xr = Tensor::zeros({std::min(Tc, kBf16RowTokens) * std::max({C, HD, F})});
  }
  act_buffers_alloc(full_c, Tc, C, opts.act_scale);
  act_buffers_alloc(full_hd, Tc, HD, opts.act_scale);
  act_buffers_alloc(full_f, Tc, F, opts.act_scale);
  if (opts.profile) prof = std::make_unique<StepProfile>(nt);
  scratch.resize(static_cast<size_t>(nt));
  for (ThreadScratch& sc : scratch) {
    sc.xn = Tensor::zeros({C});
    sc.hf = Tensor::zeros({F});
  }
  if (all_ternary && nt > 1) {
    TQ_CHECK(V < WorkShares::kMaxUnits, "[engine] {}: vocabulary of {} rows; decode on {} threads "
             "handles at most {}", source, V, nt, WorkShares::kMaxUnits - 1);
    shares.clear();
    shares.reserve(static_cast<size_t>(4 * L + 1));
    for (int64_t i = 0; i < 4 * L + 1; ++i) shares.emplace_back(nt);
    for (ThreadScratch& sc : scratch) {
      sc.h = Tensor::zeros({C});
      sc.hq = Tensor::zeros({C}, DType::i8);
      if (head_kind == "q4") sc.hgs = Tensor::zeros({C / kQ4Group}, DType::i32);
      act_buffers_alloc(sc.qc, 1, C, opts.act_scale);
      act_buffers_alloc(sc.qhd, 1, HD, opts.act_scale);
      act_buffers_alloc(sc.qf, 1, F, opts.act_scale);
    }
  }
  set_tokens(Tc);
  // Validate every packed matrix against its activations once: the step calls the unchecked
  // kernel inside its parallel region (Note [No throw in parallel regions]).
  for (const Layer& ly : layers) {
    if (ly.qkv.ternary) kq::ternary_gemm_check(ly.qkv.packed, qa_c, qkv.size(1), isa);
    if (ly.o.ternary) kq::ternary_gemm_check(ly.o.packed, qa_hd, tmp.size(1), isa);
    if (ly.gu.ternary) kq::ternary_gemm_check(ly.gu.packed, qa_c, gu.size(1), isa);
    if (ly.down.ternary) kq::ternary_gemm_check(ly.down.packed, qa_f, tmp.size(1), isa);
  }
  // RoPE tables: angles in double, as autograd::rope (HF LlamaRotaryEmbedding).
  const std::vector<double> inv = autograd::rope_inv_freq(plan.config.rope_config());
  const int64_t half = D / 2;
  rope_cos = Tensor::empty({S, half});
  rope_sin = Tensor::empty({S, half});
  float* cp = rope_cos.data<float>();
  float* sp = rope_sin.data<float>();
  for (int64_t p = 0; p < S; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * inv[static_cast<size_t>(i)];
      cp[p * half + i] = static_cast<float>(std::cos(a));
      sp[p * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

// out [T, m.rows] = in · Wᵀ (+ bias). Ternary: int8 activations `in_q`, rows split in 16-row tiles
// over the threads. Dense: f32 `in_f32` through core/gemm (outside any parallel region).
void Engine::State::linear(const Mat& m, int64_t op, const Tensor& in_f32,
                           const kq::QuantizedActs& in_q, int64_t T, Tensor& out, const Ctx& ctx) {
  float* y = out.data<float>();
  const int64_t ldy = out.size(1);
  if (m.ternary) {
    ctx.run(StepOp::gemv,
            [&](int tid, int n) { packed_rows(m.packed, op, in_q, T, y, ldy, tid, n, ctx.in_region); });
    return;
  }
  TQ_DEBUG_ASSERT(!ctx.in_region);
  const int64_t K = m.cols;
  GemmShape gs;
  gs.trans_b = true;
  gs.M = T;
  gs.N = m.rows;
  gs.K = K;
  gs.lda = in_f32.size(1);
  gs.ldb = K;
  gs.ldc = ldy;
  if (m.w.dtype() == DType::f32) {
    gemm(gs, 1.0f, in_f32.data<float>(), m.w.data<float>(), 0.0f, y);
  } else {
    const float* xp = in_f32.data<float>();
    const auto* wp = static_cast<const uint16_t*>(m.w.raw_data());
    if (T <= kBf16RowTokens && xr.defined()) {
      // Note [bf16 decode without AVX512-BF16]: the bf16-rounded activations, widened back, [T, K].
      float* xrp = xr.data<float>();
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < K; ++i) xrp[t * K + i] = bf16_to_f32(f32_to_bf16(xp[t * gs.lda + i]));
      }
      parallel_for(m.rows, 64, [&](int64_t r0, int64_t r1) { lm_head_bf16(wp, r0, r1, K, xrp, T, y, ldy); });
    } else {
      const int64_t lda = xb.size(1);
      uint16_t* xbp = static_cast<uint16_t*>(xb.raw_data());
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < K; ++i) xbp[t * lda + i] = f32_to_bf16(xp[t * gs.lda + i]);
      }
      gs.lda = lda;
      gemm_bf16(gs, 1.0f, xbp, wp, 0.0f, y);
    }
  }
  if (m.b.defined()) {
    const float* bp = m.b.data<float>();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < m.rows; ++j) y[t * ldy + j] += bp[j];
    }
  }
  ctx.marked(StepOp::gemv);
}

// One step of T <= Tc tokens at positions pos .. pos+T-1. Every thread runs this function when
// ctx.in_region; all shared writes happen inside ctx.run.
void Engine::State::step(const int32_t* ids, int64_t T, float* logits, bool all_logits,
                         bool want_head, Ctx ctx) {
  const int64_t p0 = pos, HD = H * D, half = D / 2, group = H / Hkv;
  const int64_t qkv_ld = qkv.size(1);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  float* xp = x.data<float>();
  float* xnp = xn.data<float>();
  float* tp = tmp.data<float>();
  float* qkvp = qkv.data<float>();
  float* attp = att.data<float>();
  float* gup = gu.data<float>();
  float* hfp = hf.data<float>();
  const float* cosp = rope_cos.data<float>();
  const float* sinp = rope_sin.data<float>();
  // EngineOptions::profile: every thread of a region marks its own ops and waits (Ctx::run); with
  // one parallel region per op, the calling thread marks and barrier waits stay inside the ops.
  const StepMarker mark(prof.get(), ctx.in_region ? ctx.tid : 0);
  ctx.mark = &mark;
  // Note [Prefill rows that only feed int8]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
  // A norm's or SwiGLU's f32 output row that enters a ternary linear is read only by its int8
  // quantization, right after it is written, so it goes to the thread's scratch xn / hf (L1)
  // instead of xn / hf ([T, C] and [T, F]: 4 and 16 MiB at 512 tokens of the 1B shape, in L3), which
  // prefill then no longer writes and re-reads. Dense linears read xn / hf, so those are still
  // written there. Same values, same order: results are unchanged. pp512 on 2 threads, 3 alternated
  // rounds: norms 0.061–0.065 → 0.052–0.054 ms per prompt token, SwiGLU 0.074–0.077 → 0.067–0.071.
  auto row_c = [&](int tid) { return scratch[static_cast<size_t>(tid)].xn.data<float>(); };
  auto row_f = [&](int tid) { return scratch[static_cast<size_t>(tid)].hf.data<float>(); };

  ctx.run(StepOp::other, [&](int tid, int n) {
    int64_t b, e;
    split(T, tid, n, b, e);
    for (int64_t t = b; t < e; ++t) std::memcpy(xp + t * C, embed + ids[t] * C, sizeof(float) * C);
  });
  for (int64_t l = 0; l < L; ++l) {
    const Layer& ly = layers[static_cast<size_t>(l)];
    // x += tmp (the previous layer's down projection), RMSNorm, int8 quantization.
    ctx.run(StepOp::norm_quant, [&](int tid, int n) {
      int64_t b, e;
      split(T, tid, n, b, e);
      for (int64_t t = b; t < e; ++t) {
        if (l > 0) add_rows(xp + t * C, tp + t * C, C);
        float* y = ly.qkv.ternary ? row_c(tid) : xnp + t * C;
        rms_norm_row(xp + t * C, ly.attn_norm, C, eps, y);
        if (ly.qkv.ternary) quantize_act_row(y, t, qa_c);
      }
    });
    linear(ly.qkv, 4 * l, xn, qa_c, T, qkv, ctx);  // Tequila bias added here, before RoPE
    // RoPE on one head of token t (h < H: q head; H <= h < H+Hkv: k head, then k and v cached).
    auto rope_head = [&](int64_t t, int64_t h) {
      const int64_t p = p0 + t;
      float* v = qkvp + t * qkv_ld + h * D;
      rope_row(v, cosp + p * half, sinp + p * half, half);
      if (h >= H) {
        const int64_t kh = h - H;
        kv.store(l, kh, p, v, qkvp + t * qkv_ld + (H + Hkv + kh) * D);
      }
    };
    if (T == 1) {
      // Decode: one op, KV heads dealt round-robin; each thread caches its KV head, then attends
      // with the q heads of its group, so no barrier is needed between RoPE and attention.
      ctx.run(StepOp::attention, [&](int tid, int n) {
        float* sc = scores.data<float>() + tid * scores.size(1);
        for (int64_t kh = tid; kh < Hkv; kh += n) {
          rope_head(0, H + kh);
          for (int64_t h = kh * group; h < (kh + 1) * group; ++h) rope_head(0, h);
          kv.attend(l, kh, qkvp + kh * group * D, group, D, p0 + 1, scale, sc, attp + kh * group * D,
                    D);
        }
      });
    } else {
      ctx.run(StepOp::attention, [&](int tid, int n) {
        int64_t b, e;
        split(T * (H + Hkv), tid, n, b, e);
        for (int64_t i = b; i < e; ++i) rope_head(i / (H + Hkv), i % (H + Hkv));
      });
      // Causal GQA attention, (token, KV head) pairs dealt round-robin (causal rows differ in cost);
      // each pair is the group of q heads sharing that KV head.
      ctx.run(StepOp::attention, [&](int tid, int n) {
        float* sc = scores.data<float>() + tid * scores.size(1);
        for (int64_t i = tid; i < T * Hkv; i += n) {
          const int64_t t = i / Hkv, kh = i % Hkv;
          kv.attend(l, kh, qkvp + t * qkv_ld + kh * group * D, group, D, p0 + t + 1, scale, sc,
                    attp + t * HD + kh * group * D, D);
        }
      });
    }
    if (ly.o.ternary) {
      ctx.run(StepOp::norm_quant, [&](int tid, int n) {
        int64_t b, e;
        split(T, tid, n, b, e);
        for (int64_t t = b; t < e; ++t) quantize_act_row(attp + t * HD, t, qa_hd);
      });
    }
    linear(ly.o, 4 * l + 1, att, qa_hd, T, tmp, ctx);
    ctx.run(StepOp::norm_quant, [&](int tid, int n) {
      int64_t b, e;
      split(T, tid, n, b, e);
      for (int64_t t = b; t < e; ++t) {
        add_rows(xp + t * C, tp + t * C, C);
        float* y = ly.gu.ternary ? row_c(tid) : xnp + t * C;
        rms_norm_row(xp + t * C, ly.mlp_norm, C, eps, y);
        if (ly.gu.ternary) quantize_act_row(y, t, qa_c);
      }
    });
    linear(ly.gu, 4 * l + 2, xn, qa_c, T, gu, ctx);
    const int64_t gu_ld = gu.size(1);
    ctx.run(StepOp::swiglu_quant, [&](int tid, int n) {
      int64_t b, e;
      split(T, tid, n, b, e);
      for (int64_t t = b; t < e; ++t) {
        float* y = ly.down.ternary ? row_f(tid) : hfp + t * F;
        swiglu_row(gup + t * gu_ld, gup + t * gu_ld + F, F, y);
        if (ly.down.ternary) quantize_act_row(y, t, qa_f);
      }
    });
    linear(ly.down, 4 * l + 3, hf, qa_f, T, tmp, ctx);
  }
  if (!want_head) {  // a middle chunk of a long prompt: no logits wanted
    mark.end_step();
    return;
  }
  // Final residual, norm and LM head for the tokens whose logits are wanted.
  const int64_t t0 = all_logits ? 0 : T - 1;
  const int64_t nT = T - t0;
  int8_t* hqp = hq.data<int8_t>();
  float* hsp = hs.data<float>();
  int32_t* hgsp = head_kind == "q4" ? hgs.data<int32_t>() : nullptr;
  const int64_t G4 = C / kQ4Group;
  ctx.run(StepOp::norm_quant, [&](int tid, int n) {
    int64_t b, e;
    split(nT, tid, n, b, e);
    for (int64_t t = t0 + b; t < t0 + e; ++t) {
      add_rows(xp + t * C, tp + t * C, C);
      rms_norm_row(xp + t * C, final_norm, C, eps, xnp + t * C);
      hsp[t] = head_quantize(xnp + t * C, hqp + t * C, hgsp != nullptr ? hgsp + t * G4 : nullptr);
    }
  });
  ctx.run(StepOp::head, [&](int tid, int n) {
    head_share(xnp + t0 * C, hqp + t0 * C, hsp + t0, hgsp != nullptr ? hgsp + t0 * G4 : nullptr, nT,
               logits, tid, n, ctx.in_region);
  });
  mark.end_step();
}

float Engine::State::head_quantize(const float* hn, int8_t* q, int32_t* gsums) const {
  if (head_kind != "int8" && head_kind != "q4") return 0.0f;
  const float s = quantize_row_per_token(hn, C, q);
  if (head_kind == "q4") q4_act_group_sums(q, C, gsums);
  return s;
}

void Engine::State::head_rows(int64_t b, int64_t e, const float* hn, const int8_t* q, const float* qs,
                              const int32_t* gsums, int64_t nT, float* logits) const {
  if (b >= e) return;
  if (head_kind == "q4") {
    lm_head_q4(head_codes.data<uint8_t>(), static_cast<const uint16_t*>(head_scales.raw_data()), b, e,
               C, q, qs, gsums, nT, logits, V);
  } else if (head_kind == "int8") {
    lm_head_int8(head_w.data<int8_t>(), head_s, head_sum.data<int32_t>(), b, e, C, q, qs, nT, logits,
                 V);
  } else if (head_kind == "f32") {
    lm_head_f32(head_w.data<float>(), b, e, C, hn, nT, logits, V);
  } else {
    lm_head_bf16(static_cast<const uint16_t*>(head_w.raw_data()), b, e, C, hn, nT, logits, V);
  }
}

void Engine::State::packed_rows(const kq::PackedTernary& w, int64_t op, const kq::QuantizedActs& a,
                                int64_t T, float* y, int64_t ldy, int tid, int n, bool in_region) {
  const int64_t blocks = w.rows_padded / kq::kTileRows;
  int64_t b, e;
  if (in_region && op < static_cast<int64_t>(shares.size()) &&
      n == shares[static_cast<size_t>(op)].threads()) {
    WorkShares& ws = shares[static_cast<size_t>(op)];
    const int64_t chunk = T == 1 ? decode_chunk_blocks(w) : 16;  // prefill: 16 blocks × T tokens
    while (ws.next(tid, blocks, chunk, steps, b, e)) {
      kq::ternary_gemm_rows_unchecked(w, a, b * kq::kTileRows, e * kq::kTileRows, y, ldy, isa);
    }
    return;
  }
  split(blocks, tid, n, b, e);
  if (b < e) kq::ternary_gemm_rows_unchecked(w, a, b * kq::kTileRows, e * kq::kTileRows, y, ldy, isa);
}

void Engine::State::head_share(const float* hn, const int8_t* q, const float* qs,
                               const int32_t* gsums, int64_t nT, float* logits, int tid, int n,
                               bool in_region) {
  int64_t b, e;
  if (in_region && !shares.empty() && n == shares.back().threads()) {  // Note [Work stealing]
    while (shares.back().next(tid, V, kHeadChunkRows, steps, b, e)) {
      head_rows(b, e, hn, q, qs, gsums, nT, logits);
    }
    return;
  }
  split(V, tid, n, b, e);
  head_rows(b, e, hn, q, qs, gsums, nT, logits);
}

Warm Engine::State::warm_rows(const Mat& m, int tid, int n) const {
  int64_t b, e;
  split(m.packed.rows_padded / kq::kTileRows, tid, n, b, e);
  const size_t code_block = static_cast<size_t>(m.packed.cols / kq::kTileCols * kq::kTileBytes);
  const size_t scale_block = static_cast<size_t>(m.packed.groups() * kq::kTileRows) * 2;  // f16
  const auto nb = static_cast<size_t>(e - b), ub = static_cast<size_t>(b);
  return Warm(m.packed.codes.data<uint8_t>() + ub * code_block, nb * code_block,
              static_cast<const uint8_t*>(m.packed.scales.raw_data()) + ub * scale_block,
              nb * scale_block);
}

void Engine::State::prefetch_layer_kv(int64_t l, int tid, int n) const {
  for (int64_t kh = tid; kh < Hkv; kh += n) kv.prefetch(l, kh, pos, kKvPrefetchBytes, false);
}

Warm Engine::State::warm_head(int tid, int n) const {
  if (head_kind != "int8") return {};  // the default head; the others are not warmed
  int64_t b, e;
  split(V, tid, n, b, e);
  return Warm(head_w.data<int8_t>() + b * C, static_cast<size_t>((e - b) * C), nullptr, 0);
}

// Note [Decode with few barriers]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A decode step is bandwidth-bound and short (≈ 0.7 ms per layer), so each barrier (≈ 0.4 µs with
// tq::SpinBarrier, Ctx::sync) counts. Every op whose input is one token's full vector (residual add,
// RMSNorm, int8 quantization, SwiGLU) is computed by every thread redundantly into its own scratch, so
// the only barriers left are after each row-partitioned linear and after attention: 5 per layer.
// That includes the residual stream itself: every thread keeps all of it in its own scratch h and
// adds the shared output of each o / down projection (tmp, read after the barrier that completes it)
// in place, so h never crosses cores. (Until the ninth session the threads wrote their slices of h to
// two shared buffers in turn and each re-read the whole vector, half of it from the other core, at
// every norm: 33 times per token.) The arithmetic is that of step() (same functions, same order), so
// logits are bit-identical.
void Engine::State::decode_step(int32_t id, float* logits, const Ctx& ctx) {
  const int tid = ctx.tid, n = ctx.nt;
  const int64_t p0 = pos, half = D / 2, group = H / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  ThreadScratch& me = scratch[static_cast<size_t>(tid)];
  float* h = me.h.data<float>();
  float* xnp = me.xn.data<float>();
  float* hfp = me.hf.data<float>();
  float* qkvp = qkv.data<float>();
  float* attp = att.data<float>();
  float* gup = gu.data<float>();
  float* tp = tmp.data<float>();
  const float* cosp = rope_cos.data<float>() + p0 * half;
  const float* sinp = rope_sin.data<float>() + p0 * half;
  // EngineOptions::profile: each mark charges the time since the previous one to its op.
  const StepMarker mark(prof.get(), tid);
  std::memcpy(h, embed + static_cast<int64_t>(id) * C, sizeof(float) * static_cast<size_t>(C));
  bool have_tmp = false;
  // h += tmp (the residual, whole in every thread); y = RMSNorm(h)·w.
  auto residual_norm = [&](const float* w) {
    if (have_tmp) add_rows(h, tp, C);
    rms_norm_row(h, w, C, eps, xnp);
  };
  auto rows = [&](const Mat& m, int64_t op, const kq::QuantizedActs& a, float* y, int64_t ldy) {
    packed_rows(m.packed, op, a, 1, y, ldy, tid, n, true);
  };
  for (int64_t l = 0; l < L; ++l) {
    const Layer& ly = layers[static_cast<size_t>(l)];
    residual_norm(ly.attn_norm);
    quantize_act_row(xnp, 0, me.qc);
    mark(StepOp::norm_quant);
    rows(ly.qkv, 4 * l, me.qc, qkvp, qkv.size(1));
    mark(StepOp::gemv);
    // The cached positions 0..p0-1 of KV head kh into L1 (Note [KV prefetch]); p0 is written below.
    auto prefetch_kv = [&](int64_t kh) { kv.prefetch(l, kh, p0, kKvPrefetchBytes, true); };
    if (tid < Hkv) prefetch_kv(tid);
    ctx.sync(warm_rows(ly.o, tid, n));
    mark(StepOp::wait);
    float* sc = scores.data<float>() + tid * scores.size(1);
    for (int64_t kh = tid; kh < Hkv; kh += n) {
      if (kh + n < Hkv) prefetch_kv(kh + n);
      float* k = qkvp + (H + kh) * D;
      rope_row(k, cosp, sinp, half);
      kv.store(l, kh, p0, k, qkvp + (H + Hkv + kh) * D);
      for (int64_t hh = kh * group; hh < (kh + 1) * group; ++hh) rope_row(qkvp + hh * D, cosp, sinp, half);
      kv.attend(l, kh, qkvp + kh * group * D, group, D, p0 + 1, scale, sc, attp + kh * group * D, D);
    }
    mark(StepOp::attention);
    ctx.sync(warm_rows(ly.o, tid, n));
    mark(StepOp::wait);
    quantize_act_row(attp, 0, me.qhd);
    mark(StepOp::norm_quant);
    rows(ly.o, 4 * l + 1, me.qhd, tp, tmp.size(1));
    have_tmp = true;
    mark(StepOp::gemv);
    ctx.sync(warm_rows(ly.gu, tid, n));
    mark(StepOp::wait);
    residual_norm(ly.mlp_norm);
    quantize_act_row(xnp, 0, me.qc);
    mark(StepOp::norm_quant);
    if (l + 1 < L) prefetch_layer_kv(l + 1, tid, n);  // into L2 (Note [KV prefetch])
    rows(ly.gu, 4 * l + 2, me.qc, gup, gu.size(1));
    mark(StepOp::gemv);
    ctx.sync(warm_rows(ly.down, tid, n));
    mark(StepOp::wait);
    swiglu_row(gup, gup + F, F, hfp);
    quantize_act_row(hfp, 0, me.qf);
    mark(StepOp::swiglu_quant);
    rows(ly.down, 4 * l + 3, me.qf, tp, tmp.size(1));
    mark(StepOp::gemv);
    ctx.sync(l + 1 < L ? warm_rows(layers[static_cast<size_t>(l + 1)].qkv, tid, n) : warm_head(tid, n));
    mark(StepOp::wait);
  }
  // Final residual and norm (redundant per thread), then this thread's rows of the LM head.
  add_rows(h, tp, C);
  rms_norm_row(h, final_norm, C, eps, xnp);
  int8_t* hqp = me.hq.data<int8_t>();
  int32_t* gsp = me.hgs.defined() ? me.hgs.data<int32_t>() : nullptr;
  const float hsv = head_quantize(xnp, hqp, gsp);
  mark(StepOp::norm_quant);
  prefetch_layer_kv(0, tid, n);  // the next token's first layer
  head_share(xnp, hqp, &hsv, gsp, 1, logits, tid, n, true);
  mark(StepOp::head);
  ctx.sync(warm_rows(layers[0].qkv, tid, n));  // the next token starts there
  mark(StepOp::wait);
  mark.end_step();
}

Engine::Engine(EnginePlan plan, const EngineOptions& opts, const std::string& source)
    : s_(std::make_unique<State>()) {
  opts.validate();
  s_->plan = std::move(plan);
  s_->opts = opts;
  s_->source = source;
  s_->build();
}

Engine::~Engine() = default;

int32_t Engine::vocab_size() const { return static_cast<int32_t>(s_->V); }
int64_t Engine::max_context() const { return s_->S; }
int64_t Engine::position() const { return s_->pos; }
void Engine::reset() { s_->pos = 0; }
const EnginePlan& Engine::plan() const { return s_->plan; }
const EngineOptions& Engine::options() const { return s_->opts; }
bool Engine::ternary() const { return s_->all_ternary; }
kq::KernelIsa Engine::isa() const { return s_->isa; }
int Engine::threads() const { return s_->nt; }
const char* Engine::kv_cache_type() const { return kv_type_name(s_->kv.type()); }
size_t Engine::kv_cache_bytes() const { return s_->kv.bytes(); }
StepProfile* Engine::step_profile() { return s_->prof.get(); }

std::array<double, kStepOps> Engine::step_op_bytes() const {
  std::array<double, kStepOps> b{};
  for (const auto& [name, t] : s_->plan.tensors) {
    StepOp op = StepOp::gemv;  // layers.{l}.{q|k|v|o|gate|up|down}...: the linears
    if (name == "embed_tokens") {
      op = StepOp::other;  // one row a token
      b[static_cast<size_t>(op)] += static_cast<double>(s_->C) * sizeof(float);
      continue;
    }
    if (name.rfind("lm_head", 0) == 0) {
      op = StepOp::head;
    } else if (name.find("norm") != std::string::npos) {
      op = StepOp::norm_quant;
    }
    b[static_cast<size_t>(op)] += static_cast<double>(t.nbytes());
  }
  return b;
}

size_t Engine::weights_bytes() const {
  size_t n = 0;
  for (const auto& [name, t] : s_->plan.tensors) n += t.nbytes();
  return n;
}

size_t Engine::bytes_per_token() const {
  size_t n = 0;
  for (const auto& [name, t] : s_->plan.tensors) {
    if (name != "embed_tokens") n += t.nbytes();
  }
  return n + static_cast<size_t>(s_->C) * sizeof(float);  // + one embedding row
}

std::string Engine::describe() const {
  const State& s = *s_;
  return fmt::format("{} (lm_head {}, {} activations, {} KV cache), {} threads",
                     s.all_ternary ? fmt::format("packed ternary {}", kq::kernel_name(s.isa))
                                   : fmt::format("dense {}", s.opts.dense_dtype),
                     s.head_kind,
                     s.opts.act_scale == kq::ActScale::per_token ? "per-token" : "per-group",
                     kv_type_name(s.kv.type()), s.nt);
}

void Engine::forward(const int32_t* ids, int64_t n, float* logits, bool all_logits) {
  State& s = *s_;
  TQ_CHECK(n >= 1, "[Engine::forward] n = {} tokens, need at least 1", n);
  TQ_CHECK(ids != nullptr && logits != nullptr, "[Engine::forward] null ids or logits");
  TQ_CHECK(s.pos + n <= s.S,
           "[Engine::forward] context full: {} + {} tokens exceed max_context {} — hint: reset() "
           "or raise EngineOptions::max_context",
           s.pos, n, s.S);
  for (int64_t i = 0; i < n; ++i) {
    TQ_CHECK(ids[i] >= 0 && ids[i] < s.V, "[Engine::forward] token id {} at {} outside [0, {})",
             ids[i], i, s.V);
  }
  for (int64_t done = 0; done < n;) {
    const int64_t T = std::min(s.Tc, n - done);
    const bool want_head = all_logits || done + T == n;
    float* out = all_logits ? logits + done * s.V : logits;
    s.set_tokens(T);
    ++s.steps;  // before the region: every thread of it reads the same value
    if (s.all_ternary && s.nt > 1) {
      // The whole step in one parallel region; ops are separated by barriers (Ctx::run).
      const int nt = s.nt;
      SpinBarrier bar(nt);
#pragma omp parallel num_threads(nt)
      {
        Ctx ctx;
        ctx.in_region = true;
        ctx.tid = omp_get_thread_num();
        ctx.nt = omp_get_num_threads();
        ctx.bar = ctx.nt == bar.size() ? &bar : nullptr;  // a smaller team: omp barriers
        if (T == 1 && ctx.nt == nt && want_head && !s.shares.empty()) {
          s.decode_step(ids[done], out, ctx);
        } else {
          s.step(ids + done, T, out, all_logits, want_head, ctx);
        }
      }
    } else {
      Ctx ctx;
      ctx.nt = s.nt;
      s.step(ids + done, T, out, all_logits, want_head, ctx);
    }
    s.pos += T;
    done += T;
  }
}

}  // namespace tq::infer
