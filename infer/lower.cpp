#include "infer/lower.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "infer/fused_ops.h"
#include "infer/packed_model.h"
#include "nn/attention.h"

namespace tq::infer {

quant::QuantConfig quant_config_from_json(const Json& j, const std::string& source) {
  const std::string ctx = source + ": quantization_config";
  TQ_CHECK(j.is_object(), "[{}] expected an object, got {}", ctx, json_kind(j));
  json_check_keys(j,
                  {"quant_method", "method", "granularity", "group_size", "lambda", "layers",
                   "minima_eps", "minima_grad"},
                  ctx);
  quant::QuantConfig c;
  TQ_CHECK(!(j.contains("quant_method") && j.contains("method")),
           "[{}] give one of quant_method / method, not both", ctx);
  if (j.contains("quant_method")) c.method = json_get<std::string>(j, "quant_method", ctx);
  if (j.contains("method")) c.method = json_get<std::string>(j, "method", ctx);
  if (j.contains("granularity")) {
    c.granularity = quant::parse_granularity(json_get<std::string>(j, "granularity", ctx));
  }
  c.group_size = json_get_or<int64_t>(j, "group_size", c.group_size, ctx);
  c.lambda = json_get_or<double>(j, "lambda", c.lambda, ctx);
  c.minima_eps = json_get_or<double>(j, "minima_eps", c.minima_eps, ctx);
  c.minima_grad = json_get_or<std::string>(j, "minima_grad", c.minima_grad, ctx);
  if (j.contains("layers")) c.layers = json_get<std::vector<std::string>>(j, "layers", ctx);
  try {
    c.validate();
  } catch (const Error& e) {
    TQ_THROW("[{}] {}", ctx, e.what());
  }
  return c;
}

Json quant_config_to_json(const quant::QuantConfig& c) {
  return Json{{"quant_method", c.method},
              {"granularity", quant::granularity_name(c.granularity)},
              {"group_size", c.group_size},
              {"lambda", c.lambda},
              {"layers", c.layers}};
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
  // LM head: int8 per-row (s_j = max|W_j| / 127), f32, or bf16.
  const Tensor hw = model.lm_head_weight().value().to(DType::f32).contiguous();
  const int64_t V = cfg.vocab_size, C = cfg.hidden_size;
  if (opts.lm_head == "int8") {
    Tensor q = Tensor::empty({V, C}, DType::i8);
    Tensor s = Tensor::empty({V});
    for (int64_t j = 0; j < V; ++j) {
      s.data<float>()[j] =
          quantize_row_per_token(hw.data<float>() + j * C, C, q.data<int8_t>() + j * C);
    }
    plan.tensors.emplace_back("lm_head.weight", q);
    plan.tensors.emplace_back("lm_head.scale", s);
  } else if (opts.lm_head == "bf16") {
    plan.tensors.emplace_back("lm_head.weight", hw.to(DType::bf16));
  } else {
    plan.tensors.emplace_back("lm_head.weight", hw.clone());
  }
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
