#include "infer/lower.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "infer/fused_ops.h"
#include "infer/packed_model.h"
#include "infer/q4_head.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "nn/attention.h"

namespace tq::infer {

quant::QuantConfig quant_config_from_json(const Json& j, const std::string& source) {
  const std::string ctx = source + ": quantization_config";
  TQ_CHECK(j.is_object(), "[{}] expected an object, got {}", ctx, json_kind(j));
  json_check_keys(j,
                  {"quant_method", "method", "bits", "granularity", "group_size", "lambda", "layers",
                   "modules_to_quantize", "minima_eps", "minima_grad"},
                  ctx);
  quant::QuantConfig c;
  // The trainer (train/checkpoint.cpp) writes quant_method "tequila" (the family, HF style) and
  // method (the QAT method); a lone quant_method is the method itself.
  const auto family = json_get_or<std::string>(j, "quant_method", "", ctx);
  if (j.contains("method")) {
    c.method = json_get<std::string>(j, "method", ctx);
    TQ_CHECK(family.empty() || family == "tequila" || family == c.method,
             "[{}] quant_method '{}' contradicts method '{}'", ctx, family, c.method);
  } else if (!family.empty()) {
    c.method = family;
  }
  if (j.contains("bits")) {
    const auto bits = json_get<double>(j, "bits", ctx);
    TQ_CHECK(std::abs(bits - 1.58) < 0.01 || bits == 2.0,
             "[{}] field 'bits' is {}, expected 1.58 (ternary)", ctx, bits);
  }
  if (j.contains("granularity")) {
    c.granularity = quant::parse_granularity(json_get<std::string>(j, "granularity", ctx));
  }
  c.group_size = json_get_or<int64_t>(j, "group_size", c.group_size, ctx);
  c.lambda = json_get_or<double>(j, "lambda", c.lambda, ctx);
  c.minima_eps = json_get_or<double>(j, "minima_eps", c.minima_eps, ctx);
  c.minima_grad = json_get_or<std::string>(j, "minima_grad", c.minima_grad, ctx);
  TQ_CHECK(!(j.contains("layers") && j.contains("modules_to_quantize")),
           "[{}] give one of layers / modules_to_quantize, not both", ctx);
  if (j.contains("layers")) c.layers = json_get<std::vector<std::string>>(j, "layers", ctx);
  if (j.contains("modules_to_quantize")) {
    c.layers = json_get<std::vector<std::string>>(j, "modules_to_quantize", ctx);
  }
  try {
    c.validate();
  } catch (const Error& e) {
    TQ_THROW("[{}] {}", ctx, e.what());
  }
  return c;
}

// The trainer's layout (train/checkpoint.cpp quantization_config_json).
Json quant_config_to_json(const quant::QuantConfig& c) {
  return Json{{"quant_method", "tequila"},
              {"method", c.method},
              {"bits", 1.58},
              {"granularity", quant::granularity_name(c.granularity)},
              {"group_size", c.group_size},
              {"lambda", c.lambda},
              {"modules_to_quantize", c.layers}};
}

namespace {

struct Piece {  // one projection's contribution to a fused matrix
  std::string name;
  const nn::Linear* lin = nullptr;
  const quant::QuantLinear* ql = nullptr;  // non-null: ternary (unless opts.dense)
};

// α [out, n_groups] at the view's granularity -> α per 128-group [out, in/128].
Tensor alpha_per_128(const quant::TernaryView& v, int64_t out, int64_t in, const std::string& name) {
  const int64_t G = in / kq::kPackGroup;
  Tensor a = Tensor::empty({out, G});
  const Tensor src = v.alpha.to(DType::f32).contiguous();
  const float* s = src.data<float>();
  float* d = a.data<float>();
  if (v.granularity == quant::Granularity::group) {
    TQ_CHECK(v.group_size % kq::kPackGroup == 0,
             "[lower] {}: group_size {} cannot be packed: the packed layout keeps one scale per "
             "128 inputs — hint: train with group_size a multiple of 128 (or channel / tensor "
             "granularity), or lower with EngineOptions::dense",
             name, v.group_size);
    const int64_t per = v.group_size / kq::kPackGroup, ng = in / v.group_size;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t g = 0; g < G; ++g) d[r * G + g] = s[r * ng + g / per];
    }
  } else {
    const bool tensor = v.granularity == quant::Granularity::tensor;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t g = 0; g < G; ++g) d[r * G + g] = s[tensor ? 0 : r];
    }
  }
  return a;
}

// Appends the tensors of one fused matrix `mat` (rows of pieces concatenated) to the plan.
void add_matrix(EnginePlan& plan, const std::string& mat, const std::vector<Piece>& pieces,
                const EngineOptions& opts) {
  const int64_t cols = pieces[0].lin->in_features();
  int64_t rows = 0;
  int n_ternary = 0;
  for (const Piece& p : pieces) {
    TQ_CHECK(p.lin->in_features() == cols, "[lower] {}: in_features differ", p.name);
    TQ_CHECK(!p.lin->bias().defined() || p.ql == nullptr,
             "[lower] {}: a QuantLinear with a bias is not supported", p.name);
    rows += p.lin->out_features();
    n_ternary += (p.ql != nullptr && p.ql->config().method != "none" && !opts.dense) ? 1 : 0;
  }
  TQ_CHECK(n_ternary == 0 || n_ternary == static_cast<int>(pieces.size()),
           "[lower] {}: the fused projections mix quantized and unquantized layers ({} of {} "
           "quantized) — hint: quantize all of q/k/v (and gate/up) or none, or use "
           "EngineOptions::dense",
           mat, n_ternary, pieces.size());
  Json& m = plan.meta["matrices"][mat];
  m["rows"] = rows;
  m["cols"] = cols;
  if (n_ternary > 0) {
    TQ_CHECK(cols % kq::kPackGroup == 0,
             "[lower] {}: in_features {} is not a multiple of 128 (packed ternary groups)", mat,
             cols);
    Tensor codes = Tensor::empty({rows, cols}, DType::i8);
    Tensor alpha = Tensor::empty({rows, cols / kq::kPackGroup});
    Tensor bias = Tensor::empty({rows});
    int64_t r0 = 0;
    for (const Piece& p : pieces) {
      const quant::TernaryView v = p.ql->export_ternary();
      const int64_t out = p.lin->out_features();
      codes.slice(0, r0, r0 + out).copy_from(v.codes);
      alpha.slice(0, r0, r0 + out).copy_from(alpha_per_128(v, out, cols, p.name));
      bias.slice(0, r0, r0 + out).copy_from(v.bias.to(DType::f32));
      r0 += out;
    }
    kq::PackedTernary pk = kq::pack_ternary(codes, alpha, bias);
    m["kind"] = "ternary";
    m["rows_padded"] = pk.rows_padded;
    plan.tensors.emplace_back(mat + ".codes", pk.codes);
    plan.tensors.emplace_back(mat + ".scales", pk.scales);
    plan.tensors.emplace_back(mat + ".bias", pk.bias);
    return;
  }
  m["kind"] = "dense";
  Tensor w = Tensor::empty({rows, cols});
  Tensor b;
  bool any_bias = false;
  for (const Piece& p : pieces) {
    any_bias = any_bias || p.lin->bias().defined() ||
               (p.ql != nullptr && p.ql->config().method != "none");
  }
  if (any_bias) b = Tensor::zeros({rows});
  int64_t r0 = 0;
  for (const Piece& p : pieces) {
    const int64_t out = p.lin->out_features();
    if (p.ql != nullptr && p.ql->config().method != "none") {
      // Fake-quant weights t∘α and the bias c: the training forward's weights exactly.
      const quant::TernaryView v = p.ql->export_ternary();
      w.slice(0, r0, r0 + out).copy_from(quant::dequantize(v));
      b.slice(0, r0, r0 + out).copy_from(v.bias.to(DType::f32));
    } else {
      w.slice(0, r0, r0 + out).copy_from(p.lin->weight().value());
      if (p.lin->bias().defined()) b.slice(0, r0, r0 + out).copy_from(p.lin->bias().value());
    }
    r0 += out;
  }
  plan.tensors.emplace_back(mat + ".weight", opts.dense_dtype == "bf16" ? w.to(DType::bf16) : w);
  if (b.defined()) plan.tensors.emplace_back(mat + ".bias", b);
}

// The direct child `name` of `parent` as an M (Module::child is protected).
template <class M>
const M& sub(const nn::Module& parent, const std::string& name) {
  for (const auto& [n, m] : parent.named_children()) {
    if (n != name) continue;
    const auto* p = dynamic_cast<const M*>(m.get());
    TQ_CHECK(p != nullptr, "[lower] child '{}' of {} is a {}, not the expected type", name,
             parent.type_name(), m->type_name());
    return *p;
  }
  TQ_THROW("[lower] {} has no child '{}'", parent.type_name(), name);
}

Piece piece(const nn::Module& parent, const std::string& child, const std::string& prefix) {
  Piece p;
  p.name = prefix + child;
  p.lin = &sub<nn::Linear>(parent, child);
  p.ql = dynamic_cast<const quant::QuantLinear*>(p.lin);
  return p;
}

}  // namespace

namespace {

// LM head tensors from an f32 [V, C] weight, as opts.lm_head asks.
void add_head(EnginePlan& plan, const Tensor& hw, int64_t V, int64_t C, const std::string& kind) {
  if (kind == "q4") {  // See Note [q4 LM head layout]
    const Q4Head h = q4_head_pack(hw.contiguous().data<float>(), V, C, "lm_head");
    plan.tensors.emplace_back("lm_head.codes", h.codes);
    plan.tensors.emplace_back("lm_head.scales", h.scales);
    return;
  }
  if (kind == "int8") {
    Tensor q = Tensor::empty({V, C}, DType::i8);
    Tensor s = Tensor::empty({V});
    const float* w = hw.data<float>();
    int8_t* qp = q.data<int8_t>();
    float* sp = s.data<float>();
    parallel_for(V, 64, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) sp[j] = quantize_row_per_token(w + j * C, C, qp + j * C);
    });
    plan.tensors.emplace_back("lm_head.weight", q);
    plan.tensors.emplace_back("lm_head.scale", s);
  } else if (kind == "bf16") {
    plan.tensors.emplace_back("lm_head.weight", hw.to(DType::bf16));
  } else {
    plan.tensors.emplace_back("lm_head.weight", hw.is_contiguous() ? hw : hw.contiguous());
  }
}

Tensor random_uniform(const Shape& shape, uint64_t seed, float lo, float hi) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  const int64_t n = t.numel();
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    Rng rng(seed ^ (static_cast<uint64_t>(b) * 0x9E3779B97F4A7C15ull));
    for (int64_t i = b; i < e; ++i) p[i] = static_cast<float>(rng.uniform(lo, hi));
  });
  return t;
}

}  // namespace

EnginePlan lower_plan(const nn::LlamaForCausalLM& model, const EngineOptions& opts) {
  opts.validate();
  EnginePlan plan;
  plan.config = model.config();
  const nn::LlamaConfig& cfg = plan.config;
  plan.meta = Json::object();
  plan.meta["matrices"] = Json::object();
  plan.meta["lm_head"] = opts.lm_head;
  plan.meta["quantization"] = nullptr;
  plan.tensors.emplace_back("embed_tokens",
                            model.model().embed_tokens().weight().value().to(DType::f32).contiguous());
  const nn::ModuleList& layers = model.model().layers();
  for (int64_t l = 0; l < layers.size(); ++l) {
    const auto& layer = layers.at<nn::LlamaDecoderLayer>(l);
    const std::string hf = fmt::format("model.layers.{}.", l), p = fmt::format("layers.{}.", l);
    const auto& attn = sub<nn::LlamaAttention>(layer, "self_attn");
    const auto& mlp = sub<nn::LlamaMLP>(layer, "mlp");
    plan.tensors.emplace_back(p + "attn_norm",
                              sub<nn::RMSNorm>(layer, "input_layernorm").weight().value().clone());
    plan.tensors.emplace_back(
        p + "mlp_norm", sub<nn::RMSNorm>(layer, "post_attention_layernorm").weight().value().clone());
    const std::string ha = hf + "self_attn.", hm = hf + "mlp.";
    std::vector<Piece> qkv = {piece(attn, "q_proj", ha), piece(attn, "k_proj", ha),
                              piece(attn, "v_proj", ha)};
    add_matrix(plan, p + "qkv", qkv, opts);
    add_matrix(plan, p + "o", {piece(attn, "o_proj", ha)}, opts);
    add_matrix(plan, p + "gate_up", {piece(mlp, "gate_proj", hm), piece(mlp, "up_proj", hm)}, opts);
    add_matrix(plan, p + "down", {piece(mlp, "down_proj", hm)}, opts);
    if (plan.meta["quantization"].is_null() && qkv[0].ql != nullptr) {
      plan.meta["quantization"] = quant_config_to_json(qkv[0].ql->config());
    }
  }
  plan.tensors.emplace_back("norm",
                            sub<nn::RMSNorm>(model.model(), "norm").weight().value().clone());
  // LM head: int8 per-row (s_j = max|W_j| / 127), f32, bf16, or q4 (infer/q4_head.h).
  const Tensor hw = model.lm_head_weight().value().to(DType::f32).contiguous();
  add_head(plan, hw.clone(), cfg.vocab_size, cfg.hidden_size, opts.lm_head);
  return plan;
}


EnginePlan random_plan(const nn::LlamaConfig& cfg_in, const EngineOptions& opts, uint64_t seed,
                       bool ternary) {
  opts.validate();
  EnginePlan plan;
  plan.config = cfg_in;
  plan.config.validate("random_plan");
  const nn::LlamaConfig& cfg = plan.config;
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, F = cfg.intermediate_size;
  const int64_t H = cfg.num_attention_heads, Hkv = cfg.resolved_kv_heads(),
                D = cfg.resolved_head_dim();
  plan.meta = Json::object();
  plan.meta["matrices"] = Json::object();
  plan.meta["lm_head"] = opts.lm_head;
  plan.meta["quantization"] = nullptr;
  plan.meta["random"] = true;
  plan.tensors.emplace_back("embed_tokens", random_uniform({V, C}, seed, -0.05f, 0.05f));
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, uint64_t s) {
    Json& m = plan.meta["matrices"][name];
    m["rows"] = rows;
    m["cols"] = cols;
    if (ternary) {
      TQ_CHECK(cols % kq::kPackGroup == 0, "[random_plan] {}: cols {} not a multiple of 128", name,
               cols);
      Tensor codes = Tensor::empty({rows, cols}, DType::i8);
      int8_t* cp = codes.data<int8_t>();
      parallel_for(rows, 16, [&](int64_t b, int64_t e) {
        Rng rng(s ^ (static_cast<uint64_t>(b) * 0x9E3779B97F4A7C15ull));
        // 8 codes per random word: byte % 3 (bias 1/256 towards -1, irrelevant for speed runs).
        for (int64_t i = b * cols; i < e * cols; i += 8) {
          uint64_t r = rng.next_u64();
          for (int64_t k = 0; k < 8 && i + k < e * cols; ++k, r >>= 8) {
            cp[i + k] = static_cast<int8_t>(static_cast<int>((r & 0xff) % 3) - 1);
          }
        }
      });
      kq::PackedTernary pk = kq::pack_ternary(codes, Tensor::full({rows, cols / kq::kPackGroup}, 0.02),
                                              Tensor::full({rows}, 0.001));
      m["kind"] = "ternary";
      m["rows_padded"] = pk.rows_padded;
      plan.tensors.emplace_back(name + ".codes", pk.codes);
      plan.tensors.emplace_back(name + ".scales", pk.scales);
      plan.tensors.emplace_back(name + ".bias", pk.bias);
    } else {
      m["kind"] = "dense";
      Tensor w = random_uniform({rows, cols}, s, -0.02f, 0.02f);
      plan.tensors.emplace_back(name + ".weight",
                                opts.dense_dtype == "bf16" ? w.to(DType::bf16) : w);
    }
  };
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = fmt::format("layers.{}.", l);
    const uint64_t s = seed + 1000 * static_cast<uint64_t>(l + 1);
    plan.tensors.emplace_back(p + "attn_norm", Tensor::ones({C}));
    plan.tensors.emplace_back(p + "mlp_norm", Tensor::ones({C}));
    matrix(p + "qkv", (H + 2 * Hkv) * D, C, s + 1);
    matrix(p + "o", C, H * D, s + 2);
    matrix(p + "gate_up", 2 * F, C, s + 3);
    matrix(p + "down", C, F, s + 4);
  }
  plan.tensors.emplace_back("norm", Tensor::ones({C}));
  add_head(plan, random_uniform({V, C}, seed + 7, -0.05f, 0.05f), V, C, opts.lm_head);
  return plan;
}

std::unique_ptr<Engine> lower(const nn::LlamaForCausalLM& model, const EngineOptions& opts) {
  return std::make_unique<Engine>(lower_plan(model, opts), opts, "lower");
}

std::unique_ptr<Engine> load_engine(const std::string& path_or_dir, const EngineOptions& opts) {
  namespace fs = std::filesystem;
  TQ_CHECK(fs::exists(path_or_dir), "[load_engine] {} does not exist", path_or_dir);
  if (!fs::is_directory(path_or_dir)) return load_packed(path_or_dir, opts);
  std::unique_ptr<nn::LlamaForCausalLM> model = nn::load_llama(path_or_dir);
  const Json& qj = model->config().quantization_config;
  if (!qj.is_null()) {
    const quant::QuantConfig qc = quant_config_from_json(qj, path_or_dir + "/config.json");
    quant::quantize_model(*model, qc);
  }
  return lower(*model, opts);
}

}  // namespace tq::infer
