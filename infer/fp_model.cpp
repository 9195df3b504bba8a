#include "infer/fp_model.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/logging.h"
#include "infer/lower.h"

namespace tq::infer {

namespace {

class FpModel final : public LanguageModel {
 public:
  explicit FpModel(std::shared_ptr<const nn::LlamaForCausalLM> model) : model_(std::move(model)) {
    TQ_CHECK(model_ != nullptr, "[fp_model] null model");
    // named_modules() is not const; it only lists the children.
    for (const auto& [name, m] : const_cast<nn::LlamaForCausalLM&>(*model_).named_modules()) {
      (void)name;
      if (dynamic_cast<const quant::QuantLinear*>(m) != nullptr) ++quant_linears_;
    }
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(model_->config().vocab_size); }
  int64_t max_context() const override { return model_->config().max_position_embeddings; }
  int64_t position() const override { return static_cast<int64_t>(ctx_.size()); }
  void reset() override { ctx_.clear(); }

  void forward(const int32_t* ids, int64_t n, float* logits, bool all_logits) override {
    TQ_CHECK(n >= 1, "[fp_model] forward needs at least one token, got {}", n);
    const int64_t V = vocab_size(), T0 = position();
    TQ_CHECK(T0 + n <= max_context(),
             "[fp_model] context overflow: {} tokens held + {} new > max_context {} — hint: shorten the "
             "prompt or --max-tokens", T0, n, max_context());
    for (int64_t i = 0; i < n; ++i)
      TQ_CHECK(ids[i] >= 0 && ids[i] < V, "[fp_model] token {} at position {} is outside the vocabulary [0, {})",
               ids[i], T0 + i, V);
    ctx_.insert(ctx_.end(), ids, ids + n);
    const int64_t T = position();
    Tensor in = Tensor::empty({1, T}, DType::i32);  // [1, T]
    std::memcpy(in.data<int32_t>(), ctx_.data(), static_cast<size_t>(T) * sizeof(int32_t));
    autograd::NoGradGuard no_grad;
    const Tensor out = model_->forward(in).value().contiguous();  // [1, T, V]
    const float* src = out.data<float>();
    if (all_logits) {
      std::memcpy(logits, src + T0 * V, static_cast<size_t>(n * V) * sizeof(float));
    } else {
      std::memcpy(logits, src + (T - 1) * V, static_cast<size_t>(V) * sizeof(float));
    }
  }

  std::string describe() const override {
    return quant_linears_ == 0 ? "fp32 training graph"
                               : fmt::format("fake-quant training graph ({} QuantLinear)", quant_linears_);
  }

 private:
  std::shared_ptr<const nn::LlamaForCausalLM> model_;
  std::vector<int32_t> ctx_;  // [T] the tokens in the context
  int64_t quant_linears_ = 0;
};

}  // namespace

std::unique_ptr<LanguageModel> make_fp_model(std::shared_ptr<const nn::LlamaForCausalLM> model) {
  return std::make_unique<FpModel>(std::move(model));
}

std::shared_ptr<nn::LlamaForCausalLM> load_model_for_inference(const std::string& dir) {
  std::shared_ptr<nn::LlamaForCausalLM> model = nn::load_llama(dir);
  const Json& qc = model->config().quantization_config;
  if (!qc.is_null()) {
    const quant::QuantConfig cfg = quant_config_from_json(qc, dir + "/config.json");
    const int64_t swapped = quant::quantize_model(*model, cfg);
    TQ_CHECK(swapped > 0, "[fp_model] {}/config.json has a quantization_config but none of its layers {} "
             "matched a linear layer", dir, Json(cfg.layers).dump());
    spdlog::debug("load_model_for_inference: {} linears -> QuantLinear ({})", swapped, cfg.method);
  }
  return model;
}

int64_t parameter_bytes(const nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    (void)name;
    bytes += static_cast<int64_t>(p.value().nbytes());
  }
  return bytes;
}

}  // namespace tq::infer
