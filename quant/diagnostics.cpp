// Dead-zone diagnostics (spec §11). measure(): one export pass (codes, Δ) per QuantLinear, then one
// fused pass over the weights that counts dead weights, boundary mass and the |w|/Δ histogram and
// compares every code with the one stored at the previous call (flip rates, re-entry tracking).
#include "quant/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel.h"

namespace tq::quant {

namespace {

// Counters of one layer type (or of all layers) for one measure() call.
struct Acc {
  int64_t layers = 0, n = 0, dead = 0, boundary = 0;
  std::vector<int64_t> hist;
  // flips since the previous measurement (layers measured before only)
  int64_t compared = 0, prev_dead = 0, prev_active = 0, escapes = 0, reentries = 0, sign_flips = 0;
  int64_t reentered = 0, settled = 0;              // tracked weights resolved at this call
  int64_t reentered_total = 0, settled_total = 0;  // since the first call

  void add(const Acc& o) {
    layers += o.layers;
    n += o.n;
    dead += o.dead;
    boundary += o.boundary;
    if (hist.size() < o.hist.size()) hist.resize(o.hist.size(), 0);
    for (size_t b = 0; b < o.hist.size(); ++b) hist[b] += o.hist[b];
    compared += o.compared;
    prev_dead += o.prev_dead;
    prev_active += o.prev_active;
    escapes += o.escapes;
    reentries += o.reentries;
    sign_flips += o.sign_flips;
    reentered += o.reentered;
    settled += o.settled;
    reentered_total += o.reentered_total;
    settled_total += o.settled_total;
  }
};

Json ratio(int64_t num, int64_t den) {
  return den > 0 ? Json(static_cast<double>(num) / static_cast<double>(den)) : Json(nullptr);
}

Json to_json(const Acc& a, const DeadZoneOptions& o) {
  Json j;
  j["n_layers"] = a.layers;
  j["n_weights"] = a.n;
  j["dead_fraction"] = ratio(a.dead, a.n);
  j["boundary_mass"] = ratio(a.boundary, a.n);
  j["hist"] = a.hist;
  const bool flips = a.compared > 0;
  j["escape_rate"] = flips ? ratio(a.escapes, a.prev_dead) : Json(nullptr);
  j["reentry_rate"] = flips ? ratio(a.reentries, a.prev_active) : Json(nullptr);
  j["sign_flip_rate"] = flips ? ratio(a.sign_flips, a.prev_active) : Json(nullptr);
  j["escapes"] = flips ? Json(a.escapes) : Json(nullptr);
  j["reentries"] = flips ? Json(a.reentries) : Json(nullptr);
  j["sign_flips"] = flips ? Json(a.sign_flips) : Json(nullptr);
  j["reentry_ratio"] = ratio(a.reentered, a.reentered + a.settled);
  j["reentry_ratio_total"] = ratio(a.reentered_total, a.reentered_total + a.settled_total);
  (void)o;
  return j;
}

// The codes and Δ a layer's method uses. `none` has no quantizer: AbsMean's dead zone stands in
// (channel granularity when the group size does not divide in_features).
TernaryView view_of(const QuantLinear& q) {
  const QuantConfig& c = q.config();
  if (c.method != "none") return q.export_ternary();
  Granularity g = c.granularity;
  if (g == Granularity::group && (c.group_size <= 0 || q.in_features() % c.group_size != 0))
    g = Granularity::channel;
  return quantize_ternary(q.weight().value(), Quantizer::absmean, g, c.group_size, 0.0);
}

double median_of(std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  const size_t h = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h), v.end());
  const double hi = v[h];
  if (v.size() % 2 == 1) return hi;
  const double lo = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(h));
  return 0.5 * (lo + hi);
}

Json finite_or_null(double x) {
  return std::isfinite(x) ? Json(x) : Json(nullptr);
}

}  // namespace

std::string layer_type_of(const std::string& module_name) {
  const size_t dot = module_name.rfind('.');
  return dot == std::string::npos ? module_name : module_name.substr(dot + 1);
}

void DeadZoneOptions::validate() const {
  TQ_CHECK(hist_bins >= 1 && hist_bins <= 100000,
           "[DeadZoneMonitor] hist_bins must be in [1, 100000], got {}", hist_bins);
  TQ_CHECK(std::isfinite(hist_max) && hist_max > 0,
           "[DeadZoneMonitor] hist_max must be > 0, got {}", hist_max);
  TQ_CHECK(std::isfinite(boundary_width) && boundary_width > 0,
           "[DeadZoneMonitor] boundary_width must be > 0, got {}", boundary_width);
  TQ_CHECK(reentry_window >= 1 && reentry_window <= 62,
           "[DeadZoneMonitor] reentry_window (k, in measurements) must be in [1, 62], got {} — "
           "hint: the age "
           "is kept in 6 bits per weight",
           reentry_window);
  TQ_CHECK(gsnr_max_samples >= 0, "[DeadZoneMonitor] gsnr_max_samples must be >= 0, got {}",
           gsnr_max_samples);
}

DeadZoneMonitor::DeadZoneMonitor(DeadZoneOptions opts) : opts_(std::move(opts)) {
  opts_.validate();
}

Json DeadZoneMonitor::measure(const nn::Module& model, int64_t step) {
  // named_modules() is non-const only because it hands out mutable pointers; nothing is modified.
  auto modules = const_cast<nn::Module&>(model).named_modules();
  std::map<std::string, Acc> by_type;
  Acc all;
  all.hist.assign(static_cast<size_t>(opts_.hist_bins), 0);
  const int64_t bins = opts_.hist_bins;
  const double bin_scale = static_cast<double>(bins) / opts_.hist_max;
  const double width = opts_.boundary_width;
  const int k = static_cast<int>(opts_.reentry_window);
  for (auto& [name, m] : modules) {
    const auto* q = dynamic_cast<const QuantLinear*>(m);
    if (q == nullptr) continue;
    const TernaryView v = view_of(*q);
    const Tensor w = q->weight().value().contiguous();
    const int64_t out = w.size(0), in = w.size(1);
    const int64_t G = v.granularity == Granularity::group ? v.group_size : in;
    const int64_t ng = v.granularity == Granularity::group ? in / G : 1;
    const bool per_tensor = v.granularity == Granularity::tensor;
    const Tensor delta = v.delta.to(DType::f64).contiguous();
    const double* dp = delta.data<double>();
    const int8_t* cp = v.codes.data<int8_t>();

    LayerState& st = state_[name];
    const bool has_prev =
        st.shape == w.shape() && static_cast<int64_t>(st.packed.size()) == out * in;
    if (!has_prev) {
      st = LayerState{};
      st.shape = w.shape();
      st.packed.assign(static_cast<size_t>(out * in), 0);
    }
    uint8_t* sp = st.packed.data();

    Acc layer;
    layer.hist.assign(static_cast<size_t>(bins), 0);
    std::mutex mu;
    dispatch_float(w.dtype(), "DeadZoneMonitor::measure", [&](auto tag) {
      using T = decltype(tag);
      const T* wp = w.data<T>();
      parallel_for(out, 4, [&](int64_t b, int64_t e) {
        Acc a;
        a.hist.assign(static_cast<size_t>(bins), 0);
        for (int64_t j = b; j < e; ++j) {
          for (int64_t g = 0; g < ng; ++g) {
            const double d = per_tensor ? dp[0] : dp[j * ng + g];
            const double inv = d > 0 ? 1.0 / d : 0.0;
            for (int64_t i = g * G; i < (g + 1) * G; ++i) {
              const int64_t idx = j * in + i;
              const int c = cp[idx];
              const double r = std::abs(static_cast<double>(wp[idx])) * inv;
              a.dead += c == 0 ? 1 : 0;
              a.boundary += std::abs(r - 1.0) < width ? 1 : 0;
              const double bf = r * bin_scale;
              const int64_t bin =
                  bf >= static_cast<double>(bins - 1) ? bins - 1 : static_cast<int64_t>(bf);
              ++a.hist[static_cast<size_t>(bin)];
              int age = sp[idx] >> 2;
              if (has_prev) {
                const int p = (sp[idx] & 3) - 1;
                if (p == 0) {
                  ++a.prev_dead;
                } else {
                  ++a.prev_active;
                }
                if (age > 0) {  // left the dead zone `age` measurements ago, not back yet
                  if (c == 0) {
                    ++a.reentered;
                    age = 0;
                  } else if (++age > k) {
                    ++a.settled;
                    age = 0;
                  }
                }
                if (p == 0 && c != 0) {
                  ++a.escapes;
                  age = 1;
                } else if (p != 0 && c == 0) {
                  ++a.reentries;
                } else if (p != 0 && c != 0 && p != c) {
                  ++a.sign_flips;
                }
              }
              sp[idx] = static_cast<uint8_t>((c + 1) | (age << 2));
            }
          }
        }
        a.n = (e - b) * in;
        std::lock_guard<std::mutex> lock(mu);
        layer.add(a);
      });
    });
    layer.layers = 1;
    layer.compared = has_prev ? layer.n : 0;
    st.reentered_total += layer.reentered;
    st.settled_total += layer.settled;
    layer.reentered_total = st.reentered_total;
    layer.settled_total = st.settled_total;
    Acc& t = by_type[layer_type_of(name)];
    if (t.hist.empty()) t.hist.assign(static_cast<size_t>(bins), 0);
    t.add(layer);
    all.add(layer);
  }
  Json j = to_json(all, opts_);
  j["step"] = step;
  j["hist_max"] = opts_.hist_max;
  j["reentry_window"] = opts_.reentry_window;
  for (const auto& [type, a] : by_type) j[type] = to_json(a, opts_);
  return j;
}

Json DeadZoneMonitor::bias_cosine(const QuantLinear& layer, const Tensor& x) {
  const int64_t in = layer.in_features(), out = layer.out_features();
  TQ_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in && x.numel() > 0,
           "[bias_cosine] input must be [..., {}] (the layer's in_features), got {}", in,
           x.defined() ? shape_str(x.shape()) : std::string("undefined"));
  const int64_t T = x.numel() / in;
  const Tensor xs = x.to(DType::f32).contiguous();
  const TernaryView v = view_of(layer);
  const Tensor w = layer.weight().value().to(DType::f32).contiguous();
  const double lambda = layer.config().lambda;
  // Wd = W∘D [out, in]; sign(X) [T, in]
  Tensor wd = Tensor::empty({out, in}, DType::f32), sx = Tensor::empty({T, in}, DType::f32);
  const float* wp = w.data<float>();
  const int8_t* cp = v.codes.data<int8_t>();
  float* wdp = wd.data<float>();
  for (int64_t k = 0; k < out * in; ++k) wdp[k] = cp[k] == 0 ? wp[k] : 0.f;
  const float* xp = xs.data<float>();
  float* sxp = sx.data<float>();
  std::vector<double> sbar(static_cast<size_t>(in), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < in; ++i) {
      const float s = xp[t * in + i] > 0.f ? 1.f : (xp[t * in + i] < 0.f ? -1.f : 0.f);
      sxp[t * in + i] = s;
      sbar[static_cast<size_t>(i)] += s;
    }
  for (double& s : sbar) s /= static_cast<double>(T);
  std::vector<double> dep(static_cast<size_t>(out)), c(static_cast<size_t>(out));
  for (int64_t j = 0; j < out; ++j) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < in; ++i) {
      a += static_cast<double>(wdp[j * in + i]) * sbar[static_cast<size_t>(i)];
      b += static_cast<double>(wdp[j * in + i]);
    }
    dep[static_cast<size_t>(j)] = lambda * a;
    c[static_cast<size_t>(j)] = lambda * b;
  }
  auto norm = [](const std::vector<double>& u) {
    return std::sqrt(std::inner_product(u.begin(), u.end(), u.begin(), 0.0));
  };
  const double nd = norm(dep), nc = norm(c);
  const double cosine = nd > 0 && nc > 0
                            ? std::inner_product(dep.begin(), dep.end(), c.begin(), 0.0) / (nd * nc)
                            : std::nan("");
  // Per token: B = sign(X)·Wdᵀ [T, out], cos(B_t, c) averaged over the tokens with B_t ≠ 0.
  Tensor bt = Tensor::empty({T, out}, DType::f32);
  gemm_contiguous<float>(false, true, T, out, in, sxp, wdp, 0.f, bt.data<float>());
  double cos_sum = 0;
  int64_t cos_n = 0;
  const float* bp = bt.data<float>();
  for (int64_t t = 0; t < T && nc > 0; ++t) {
    double dot = 0, nb = 0;
    for (int64_t j = 0; j < out; ++j) {
      dot += static_cast<double>(bp[t * out + j]) * c[static_cast<size_t>(j)];
      nb += static_cast<double>(bp[t * out + j]) * static_cast<double>(bp[t * out + j]);
    }
    if (nb > 0) {
      cos_sum += dot / (std::sqrt(nb) * nc);
      ++cos_n;
    }
  }
  Json j;
  j["cosine"] = finite_or_null(cosine);
  j["cosine_token_mean"] = cos_n > 0 ? Json(cos_sum / static_cast<double>(cos_n)) : Json(nullptr);
  j["dep_norm"] = nd;
  j["bias_norm"] = nc;
  j["tokens"] = T;
  j["lambda"] = lambda;
  return j;
}

Json DeadZoneMonitor::gradient_snr(nn::Module& model,
                                   const std::function<void()>& compute_grads_one_microbatch,
                                   int K) const {
  TQ_CHECK(K >= 2, "[gradient_snr] K (micro-batches) must be >= 2, got {}", K);
  TQ_CHECK(static_cast<bool>(compute_grads_one_microbatch),
           "[gradient_snr] no gradient callback given");
  struct Track {
    std::string type;
    const QuantLinear* q;
    std::vector<int64_t> idx;  // sampled flat indices
    std::vector<uint8_t> dead;
    std::vector<double> sum, sumsq;
  };
  std::vector<Track> tracks;
  for (auto& [name, m] : model.named_modules()) {
    const auto* q = dynamic_cast<const QuantLinear*>(m);
    if (q == nullptr) continue;
    Track t;
    t.type = layer_type_of(name);
    t.q = q;
    const TernaryView v = view_of(*q);
    const int64_t n = q->weight().numel();
    const int64_t cap = opts_.gsnr_max_samples > 0 ? opts_.gsnr_max_samples : n;
    const int64_t stride = (n + cap - 1) / cap;
    for (int64_t i = 0; i < n; i += stride) {
      t.idx.push_back(i);
      t.dead.push_back(v.codes.data<int8_t>()[i] == 0 ? 1 : 0);
    }
    t.sum.assign(t.idx.size(), 0.0);
    t.sumsq.assign(t.idx.size(), 0.0);
    tracks.push_back(std::move(t));
  }
  for (int k = 0; k < K; ++k) {
    model.zero_grad();
    compute_grads_one_microbatch();
    for (Track& t : tracks) {
      const autograd::Var& wv = t.q->weight();
      if (!wv.has_grad()) continue;  // a zero gradient this pass
      const Tensor g = wv.grad().contiguous();
      dispatch_float(g.dtype(), "gradient_snr", [&](auto tag) {
        using T = decltype(tag);
        const T* gp = g.data<T>();
        for (size_t s = 0; s < t.idx.size(); ++s) {
          const double x = static_cast<double>(gp[t.idx[s]]);
          t.sum[s] += x;
          t.sumsq[s] += x * x;
        }
      });
    }
  }
  struct Pool {
    std::vector<double> dead, active;
  };
  std::map<std::string, Pool> pools;
  Pool all;
  const double invK = 1.0 / static_cast<double>(K);
  for (const Track& t : tracks) {
    Pool& p = pools[t.type];
    for (size_t s = 0; s < t.idx.size(); ++s) {
      const double mean = t.sum[s] * invK;
      const double var = std::max(0.0, t.sumsq[s] * invK - mean * mean);
      const double gsnr = mean * mean / (var + 1e-30);
      (t.dead[s] ? p.dead : p.active).push_back(gsnr);
      (t.dead[s] ? all.dead : all.active).push_back(gsnr);
    }
  }
  auto summary = [](Pool& p) {
    auto mean = [](const std::vector<double>& v) {
      return v.empty() ? std::nan("")
                       : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    };
    Json j;
    j["dead_mean"] = finite_or_null(mean(p.dead));
    j["active_mean"] = finite_or_null(mean(p.active));
    j["dead_median"] = finite_or_null(median_of(p.dead));
    j["active_median"] = finite_or_null(median_of(p.active));
    j["n_dead"] = static_cast<int64_t>(p.dead.size());
    j["n_active"] = static_cast<int64_t>(p.active.size());
    return j;
  };
  Json j = summary(all);
  j["K"] = K;
  for (auto& [type, p] : pools) j[type] = summary(p);
  return j;
}

}  // namespace tq::quant
