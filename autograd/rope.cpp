#include "autograd/rope.h"

#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace tq::autograd {

std::vector<double> rope_inv_freq(const RopeConfig& cfg) {
  TQ_CHECK(cfg.head_dim > 0 && cfg.head_dim % 2 == 0,
           "[rope_inv_freq] head_dim must be positive and even, got {}", cfg.head_dim);
  TQ_CHECK(cfg.theta > 0, "[rope_inv_freq] theta must be positive, got {}", cfg.theta);
  TQ_CHECK(cfg.type == "default" || cfg.type == "llama3",
           "[rope_inv_freq] unknown rope type '{}' — hint: supported types are 'default' and 'llama3'",
           cfg.type);
  const int64_t half = cfg.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv[static_cast<size_t>(i)] =
        1.0 / std::pow(cfg.theta, static_cast<double>(2 * i) / static_cast<double>(cfg.head_dim));
  }
  if (cfg.type == "default") return inv;

  // llama3: matches transformers' _compute_llama3_parameters term by term.
  TQ_CHECK(cfg.factor > 0 && cfg.original_max_position_embeddings > 0 &&
               cfg.high_freq_factor != cfg.low_freq_factor,
           "[rope_inv_freq] llama3 needs factor > 0 (got {}), original_max_position_embeddings > 0 "
           "(got {}) and high_freq_factor != low_freq_factor (got {} and {})",
           cfg.factor, cfg.original_max_position_embeddings, cfg.high_freq_factor,
           cfg.low_freq_factor);
  const double pi = 3.14159265358979323846;
  const double old_ctx = static_cast<double>(cfg.original_max_position_embeddings);
  const double low_freq_wavelen = old_ctx / cfg.low_freq_factor;
  const double high_freq_wavelen = old_ctx / cfg.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * pi / f;
    const double inv_llama = wavelen > low_freq_wavelen ? f / cfg.factor : f;
    const double smooth =
        (old_ctx / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor - cfg.low_freq_factor);
    const double smoothed = (1 - smooth) * inv_llama / cfg.factor + smooth * inv_llama;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = medium ? smoothed : inv_llama;
  }
  return inv;
}

namespace {

void check_rope_args(const Tensor& x, const std::vector<double>& inv_freq, const char* op) {
  TQ_CHECK(x.dim() == 4, "[{}] x must be [B, T, H, D], got {}", op, shape_str(x.shape()));
  const int64_t D = x.size(3);
  TQ_CHECK(D % 2 == 0 && static_cast<int64_t>(inv_freq.size()) * 2 == D,
           "[{}] x {} needs an even head_dim D with inv_freq of size D/2, got inv_freq [{}]", op,
           shape_str(x.shape()), inv_freq.size());
}

// cos/sin tables [T, D/2] in the element type, from angles computed in double.
template <class T>
void rope_tables(int64_t Tn, const std::vector<double>& inv_freq, int64_t pos0, std::vector<T>& c,
                 std::vector<T>& s) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  c.resize(static_cast<size_t>(Tn * half));
  s.resize(static_cast<size_t>(Tn * half));
  for (int64_t t = 0; t < Tn; ++t) {
    const double pos = static_cast<double>(pos0 + t);
    for (int64_t i = 0; i < half; ++i) {
      const double a = pos * inv_freq[static_cast<size_t>(i)];
      c[static_cast<size_t>(t * half + i)] = static_cast<T>(std::cos(a));
      s[static_cast<size_t>(t * half + i)] = static_cast<T>(std::sin(a));
    }
  }
}

// out = R(sign·angle) x over rows of [B, T, H, D]; sign = +1 forward, −1 backward (transpose).
template <class T>
void rope_rotate(const T* x, T* out, int64_t B, int64_t Tn, int64_t H, int64_t D, const T* c,
                 const T* s, bool transpose) noexcept {
  const int64_t half = D / 2;
  const T sign = transpose ? T(-1) : T(1);
  parallel_for(B * Tn, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t t = bt % Tn;
      const T* ct = c + t * half;
      const T* st = s + t * half;
      for (int64_t h = 0; h < H; ++h) {
        const T* xr = x + (bt * H + h) * D;
        T* orow = out + (bt * H + h) * D;
        for (int64_t d = 0; d < half; ++d) {
          const T x1 = xr[d], x2 = xr[d + half];
          const T sn = sign * st[d];
          orow[d] = x1 * ct[d] - x2 * sn;
          orow[d + half] = x2 * ct[d] + x1 * sn;
        }
      }
    }
  });
}

}  // namespace

Var rope(const Var& x, const std::vector<double>& inv_freq, int64_t pos0) {
  const Tensor xv = x.value().contiguous();
  check_rope_args(xv, inv_freq, "rope");
  const int64_t B = xv.size(0), Tn = xv.size(1), H = xv.size(2), D = xv.size(3);
  Tensor out = Tensor::empty(xv.shape(), xv.dtype());
  dispatch_float(xv.dtype(), "rope", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> c, s;
    rope_tables<T>(Tn, inv_freq, pos0, c, s);
    rope_rotate<T>(xv.data<T>(), out.data<T>(), B, Tn, H, D, c.data(), s.data(), false);
  });
  return make_result("rope", std::move(out), {x}, [x, inv_freq, pos0, B, Tn, H, D](const Tensor& g) {
    const Tensor gc = g.contiguous();
    Tensor gx = Tensor::empty(gc.shape(), gc.dtype());
    dispatch_float(gc.dtype(), "rope_backward", [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> c, s;
      rope_tables<T>(Tn, inv_freq, pos0, c, s);
      rope_rotate<T>(gc.data<T>(), gx.data<T>(), B, Tn, H, D, c.data(), s.data(), true);
    });
    accumulate_grad(x, gx);
  });
}

Var rope_composed(const Var& x, const std::vector<double>& inv_freq, int64_t pos0) {
  check_rope_args(x.value(), inv_freq, "rope_composed");
  const int64_t Tn = x.size(1), D = x.size(3), half = D / 2;
  Tensor c = Tensor::empty({1, Tn, 1, D}, DType::f64);
  Tensor s = Tensor::empty({1, Tn, 1, D}, DType::f64);
  double* cp = c.data<double>();
  double* sp = s.data<double>();
  for (int64_t t = 0; t < Tn; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos0 + t) * inv_freq[static_cast<size_t>(i)];
      cp[t * D + i] = cp[t * D + i + half] = std::cos(a);
      sp[t * D + i] = sp[t * D + i + half] = std::sin(a);
    }
  }
  const Var cos_v = Var::constant(c.to(x.dtype()));
  const Var sin_v = Var::constant(s.to(x.dtype()));
  const Var rotated = concat({neg(slice(x, 3, half, D)), slice(x, 3, 0, half)}, 3);
  return add(mul(x, cos_v), mul(rotated, sin_v));
}

}  // namespace tq::autograd
