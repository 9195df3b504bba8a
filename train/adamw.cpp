#include "train/adamw.h"

#include <cmath>
#include <map>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"

namespace tq::train {

namespace {

bool default_decays(const std::string& name, const std::vector<std::string>& no_decay) {
  if (!no_decay.empty()) {
    for (const auto& s : no_decay)
      if (name.find(s) != std::string::npos) return false;
    return true;
  }
  const std::string norm_suffix = "norm.weight";
  const bool is_norm = name.size() >= norm_suffix.size() &&
                       name.compare(name.size() - norm_suffix.size(), norm_suffix.size(),
                                    norm_suffix) == 0;
  // Learnable quantizer scales (lsq/seq `<proj>.weight_scale`) are step sizes, not weights: decaying
  // them would shrink the quantization grid toward zero.
  const std::string scale_suffix = ".weight_scale";
  const bool is_scale = name.size() >= scale_suffix.size() &&
                        name.compare(name.size() - scale_suffix.size(), scale_suffix.size(), scale_suffix) == 0;
  return !is_norm && !is_scale && name.find("embed_tokens") == std::string::npos;
}

template <class T>
void adamw_update(T* w, const T* g, T* m, T* v, int64_t n, double lr, double wd, double b1,
                  double b2, double eps, double bc1, double bc2) {
  const T decay = static_cast<T>(1.0 - lr * wd);
  const T cb1 = static_cast<T>(b1), cb2 = static_cast<T>(b2);
  const T ob1 = static_cast<T>(1.0 - b1), ob2 = static_cast<T>(1.0 - b2);
  const T step_size = static_cast<T>(lr / bc1);
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
  const T ceps = static_cast<T>(eps);
  parallel_for(n, 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      m[i] = cb1 * m[i] + ob1 * g[i];
      v[i] = cb2 * v[i] + ob2 * g[i] * g[i];
      w[i] *= decay;
      w[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + ceps);
    }
  });
}

}  // namespace

AdamW::AdamW(std::vector<std::pair<std::string, autograd::Var>> params, AdamWOptions opts)
    : params_(std::move(params)), opts_(std::move(opts)) {
  TQ_CHECK(opts_.beta1 >= 0.0 && opts_.beta1 < 1.0, "[AdamW] beta1 must be in [0, 1), got {}",
           opts_.beta1);
  TQ_CHECK(opts_.beta2 >= 0.0 && opts_.beta2 < 1.0, "[AdamW] beta2 must be in [0, 1), got {}",
           opts_.beta2);
  TQ_CHECK(opts_.eps > 0.0, "[AdamW] eps must be > 0, got {}", opts_.eps);
  TQ_CHECK(opts_.weight_decay >= 0.0, "[AdamW] weight_decay must be >= 0, got {}",
           opts_.weight_decay);
  for (const auto& [name, p] : params_) {
    const Tensor& w = p.value();
    TQ_CHECK(w.dtype() == DType::f32 || w.dtype() == DType::f64,
             "[AdamW] parameter '{}' has dtype {}; AdamW keeps f32/f64 master weights", name,
             dtype_name(w.dtype()));
    TQ_CHECK(w.is_contiguous(), "[AdamW] parameter '{}' is not contiguous", name);
    decay_.push_back(default_decays(name, opts_.no_decay));
    exp_avg_.push_back(Tensor::zeros(w.shape(), w.dtype()));
    exp_avg_sq_.push_back(Tensor::zeros(w.shape(), w.dtype()));
    steps_.push_back(0);
  }
}

void AdamW::step(double lr) {
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    if (!p.has_grad()) continue;
    Tensor w = p.value();
    Tensor g = p.grad();
    TQ_CHECK(g.dtype() == w.dtype() && g.shape() == w.shape(),
             "[AdamW] gradient of '{}' does not match its parameter", name);
    if (!g.is_contiguous()) g = g.contiguous();
    const int64_t k = ++steps_[i];
    const double bc1 = 1.0 - std::pow(opts_.beta1, static_cast<double>(k));
    const double bc2 = 1.0 - std::pow(opts_.beta2, static_cast<double>(k));
    const double wd = decay_[i] ? opts_.weight_decay : 0.0;
    dispatch_float(w.dtype(), "AdamW::step", [&](auto tag) {
      using T = decltype(tag);
      adamw_update<T>(w.data<T>(), g.data<T>(), exp_avg_[i].data<T>(), exp_avg_sq_[i].data<T>(),
                      w.numel(), lr, wd, opts_.beta1, opts_.beta2, opts_.eps, bc1, bc2);
    });
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::vector<int64_t>& steps, const std::string& source) {
  std::map<std::string, Tensor> by_name(tensors.begin(), tensors.end());
  std::string problems;
  if (steps.size() != params_.size())
    problems += fmt::format("\n  {} step counts for {} parameters", steps.size(), params_.size());
  std::vector<Tensor> found;  // exp_avg, exp_avg_sq per parameter, in order
  for (const auto& [name, p] : params_) {
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      const std::string key = name + suffix;
      auto it = by_name.find(key);
      if (it == by_name.end()) {
        problems += fmt::format("\n  missing '{}'", key);
        continue;
      }
      if (it->second.shape() != p.value().shape())
        problems += fmt::format("\n  '{}' has shape {}, expected {}", key,
                                shape_str(it->second.shape()), shape_str(p.value().shape()));
      found.push_back(it->second);
      by_name.erase(it);
    }
  }
  for (const auto& [key, t] : by_name) problems += fmt::format("\n  unexpected '{}'", key);
  TQ_CHECK(problems.empty(), "[AdamW] optimizer state in {} does not match the model:{}", source,
           problems);
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_from(found[2 * i]);
    exp_avg_sq_[i].copy_from(found[2 * i + 1]);
    steps_[i] = steps[i];
  }
}

double clip_grad_norm(const std::vector<std::pair<std::string, autograd::Var>>& params,
                      double max_norm) {
  double sumsq = 0.0;
  for (const auto& [name, p] : params) {
    if (!p.has_grad()) continue;
    const Tensor g = p.grad().contiguous();
    dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* d = g.data<T>();
      for (int64_t i = 0; i < g.numel(); ++i) sumsq += static_cast<double>(d[i]) * static_cast<double>(d[i]);
    });
  }
  const double norm = std::sqrt(sumsq);
  if (!(max_norm > 0.0) || !std::isfinite(norm) || norm <= max_norm) return norm;
  const double scale = max_norm / (norm + 1e-6);
  for (const auto& [name, p] : params) {
    if (!p.has_grad()) continue;
    Tensor g = p.grad();
    TQ_CHECK(g.is_contiguous(), "[clip_grad_norm] gradient of '{}' is not contiguous", name);
    dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = decltype(tag);
      T* d = g.data<T>();
      const T s = static_cast<T>(scale);
      for (int64_t i = 0; i < g.numel(); ++i) d[i] *= s;
    });
  }
  return norm;
}

}  // namespace tq::train
