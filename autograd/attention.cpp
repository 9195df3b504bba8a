#include "autograd/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/dispatch.h"
#include "core/gemm.h"
#include "core/parallel.h"

namespace tq::autograd {

namespace {

struct AttnDims {
  int64_t B, T, H, Hkv, D;
};

AttnDims check_attention_args(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  TQ_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "[{}] q, k, v must be [B, T, H, D], [B, T, Hkv, D], [B, T, Hkv, D]; got {}, {}, {}", op,
           shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  TQ_CHECK(k.shape() == v.shape(), "[{}] k {} and v {} must have the same shape", op,
           shape_str(k.shape()), shape_str(v.shape()));
  TQ_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
           "[{}] q {} and k/v {} must agree in B, T and D", op, shape_str(q.shape()),
           shape_str(k.shape()));
  TQ_CHECK(k.size(2) > 0 && q.size(2) % k.size(2) == 0,
           "[{}] query heads H = {} must be a multiple of kv heads Hkv = {} (q {}, k {})", op,
           q.size(2), k.size(2), shape_str(q.shape()), shape_str(k.shape()));
  TQ_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(),
           "[{}] q, k, v must share a dtype, got {}, {}, {}", op, q.str(), k.str(), v.str());
  return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
}

// Rows handed to one parallel_for chunk: enough work per thread that tiny heads stay serial.
int64_t row_grain(int64_t T) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(T, 1)); }

GemmShape make_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                    int64_t ldc) {
  GemmShape s;
  s.trans_a = ta;
  s.trans_b = tb;
  s.M = M;
  s.N = N;
  s.K = K;
  s.lda = lda;
  s.ldb = ldb;
  s.ldc = ldc;
  return s;
}

// S [T, T] = scale · Q_h K_gᵀ for one (b, h); Q_h rows are H*D apart, K_g rows Hkv*D apart.
template <class T>
void attention_scores(const AttnDims& d, T scale, const T* qh, const T* kg, T* S) {
  gemm(make_gemm(false, true, d.T, d.T, d.D, d.H * d.D, d.Hkv * d.D, d.T), scale, qh, kg, T(0), S);
}

template <class T>
void attention_forward(const AttnDims& d, double scale, const T* q, const T* k, const T* v, T* out,
                       T* lse) {
  const int64_t Tn = d.T, rep = d.H / d.Hkv;
  std::vector<T> S(static_cast<size_t>(Tn * Tn));
  T* sp = S.data();
  // Serial over (b, h): gemm runs its own threads and must not be called inside a parallel region.
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t h = 0; h < d.H; ++h) {
      const int64_t g = h / rep;
      const T* qh = q + b * Tn * d.H * d.D + h * d.D;
      const T* kg = k + b * Tn * d.Hkv * d.D + g * d.D;
      const T* vg = v + b * Tn * d.Hkv * d.D + g * d.D;
      T* oh = out + b * Tn * d.H * d.D + h * d.D;
      T* lse_bh = lse + (b * d.H + h) * Tn;
      attention_scores<T>(d, static_cast<T>(scale), qh, kg, sp);
      parallel_for(Tn, row_grain(Tn), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          T* row = sp + t * Tn;
          T m = row[0];
          for (int64_t s = 1; s <= t; ++s) m = std::max(m, row[s]);
          double sum = 0;
          for (int64_t s = 0; s <= t; ++s) {
            row[s] = std::exp(row[s] - m);
            sum += static_cast<double>(row[s]);
          }
          const T inv = static_cast<T>(1.0 / sum);
          for (int64_t s = 0; s <= t; ++s) row[s] *= inv;
          for (int64_t s = t + 1; s < Tn; ++s) row[s] = T(0);
          lse_bh[t] = static_cast<T>(static_cast<double>(m) + std::log(sum));
        }
      });
      gemm(make_gemm(false, false, Tn, d.D, Tn, Tn, d.Hkv * d.D, d.H * d.D), T(1), sp, vg, T(0), oh);
    }
  }
}

template <class T>
void attention_backward(const AttnDims& d, double scale, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv) {
  const int64_t Tn = d.T, D = d.D, rep = d.H / d.Hkv;
  std::vector<T> P(static_cast<size_t>(Tn * Tn)), dS(static_cast<size_t>(Tn * Tn));
  T* pp = P.data();
  T* dsp = dS.data();
  const T sc = static_cast<T>(scale);
  // dk, dv start at zero and accumulate over the query heads of each kv group (beta = 1); the
  // serial (b, h) loop keeps that race-free.
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t h = 0; h < d.H; ++h) {
      const int64_t g = h / rep;
      const int64_t qoff = b * Tn * d.H * D + h * D;
      const int64_t koff = b * Tn * d.Hkv * D + g * D;
      const T* lse_bh = lse + (b * d.H + h) * Tn;
      attention_scores<T>(d, sc, q + qoff, k + koff, pp);
      // dP = dO V_gᵀ
      gemm(make_gemm(false, true, Tn, Tn, D, d.H * D, d.Hkv * D, Tn), T(1), dout + qoff, v + koff,
           T(0), dsp);
      parallel_for(Tn, row_grain(Tn), [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          T* prow = pp + t * Tn;
          T* dsrow = dsp + t * Tn;
          const T* orow = out + qoff + t * d.H * D;
          const T* dorow = dout + qoff + t * d.H * D;
          T delta = 0;  // rowsum(dO ∘ O) = rowsum(P ∘ dP)
          for (int64_t j = 0; j < D; ++j) delta += dorow[j] * orow[j];
          for (int64_t s = 0; s <= t; ++s) {
            prow[s] = std::exp(prow[s] - lse_bh[t]);
            dsrow[s] = prow[s] * (dsrow[s] - delta);
          }
          for (int64_t s = t + 1; s < Tn; ++s) prow[s] = dsrow[s] = T(0);
        }
      });
      // dQ_h = scale · dS K_g;  dK_g += scale · dSᵀ Q_h;  dV_g += Pᵀ dO_h
      gemm(make_gemm(false, false, Tn, D, Tn, Tn, d.Hkv * D, d.H * D), sc, dsp, k + koff, T(0),
           dq + qoff);
      gemm(make_gemm(true, false, Tn, D, Tn, Tn, d.H * D, d.Hkv * D), sc, dsp, q + qoff, T(1),
           dk + koff);
      gemm(make_gemm(true, false, Tn, D, Tn, Tn, d.H * D, d.Hkv * D), T(1), pp, dout + qoff, T(1),
           dv + koff);
    }
  }
}

}  // namespace

Var causal_attention(const Var& q, const Var& k, const Var& v, double scale) {
  const Tensor qv = q.value().contiguous();
  const Tensor kv = k.value().contiguous();
  const Tensor vv = v.value().contiguous();
  const AttnDims d = check_attention_args(qv, kv, vv, "causal_attention");
  TQ_CHECK(std::isfinite(scale), "[causal_attention] scale must be finite, got {}", scale);
  Tensor out = Tensor::empty(qv.shape(), qv.dtype());
  Tensor lse = Tensor::empty({d.B, d.H, d.T}, qv.dtype());  // [B, H, T]
  if (qv.numel() > 0) {
    dispatch_float(qv.dtype(), "causal_attention", [&](auto tag) {
      using T = decltype(tag);
      attention_forward<T>(d, scale, qv.data<T>(), kv.data<T>(), vv.data<T>(), out.data<T>(),
                           lse.data<T>());
    });
  }
  return make_result(
      "causal_attention", out, {q, k, v},
      [q, k, v, qv, kv, vv, out, lse, d, scale](const Tensor& g) {
        const Tensor gc = g.contiguous();
        Tensor dq = Tensor::empty(qv.shape(), qv.dtype());
        Tensor dk = Tensor::zeros(kv.shape(), kv.dtype());
        Tensor dv = Tensor::zeros(vv.shape(), vv.dtype());
        if (qv.numel() > 0) {
          dispatch_float(qv.dtype(), "causal_attention_backward", [&](auto tag) {
            using T = decltype(tag);
            attention_backward<T>(d, scale, qv.data<T>(), kv.data<T>(), vv.data<T>(), out.data<T>(),
                                  lse.data<T>(), gc.data<T>(), dq.data<T>(), dk.data<T>(),
                                  dv.data<T>());
          });
        }
        accumulate_grad(q, dq);
        accumulate_grad(k, dk);
        accumulate_grad(v, dv);
      });
}

Var causal_attention_composed(const Var& q, const Var& k, const Var& v, double sm_scale) {
  const AttnDims d = check_attention_args(q.value(), k.value(), v.value(), "causal_attention_composed");
  const int64_t rep = d.H / d.Hkv;
  // [B, T, Hkv, D] -> [B, H, T, D], repeating each kv head rep times (HF repeat_kv).
  auto expand_kv = [&](const Var& x) {
    const Var xt = transpose(x, 1, 2);  // [B, Hkv, T, D]
    if (rep == 1) return xt;
    const Var x5 = reshape(xt, {d.B, d.Hkv, 1, d.T, d.D});
    return reshape(broadcast_to(x5, {d.B, d.Hkv, rep, d.T, d.D}), {d.B, d.H, d.T, d.D});
  };
  const Var qh = transpose(q, 1, 2);                       // [B, H, T, D]
  const Var kh = expand_kv(k);                             // [B, H, T, D]
  const Var vh = expand_kv(v);                             // [B, H, T, D]
  Tensor mask = Tensor::zeros({d.T, d.T}, DType::f64);     // [T, T]: −inf where s > t
  for (int64_t t = 0; t < d.T; ++t) {
    for (int64_t s = t + 1; s < d.T; ++s) mask.set({t, s}, -std::numeric_limits<double>::infinity());
  }
  const Var scores = add(scale(matmul(qh, transpose(kh, 2, 3)), sm_scale),
                         Var::constant(mask.to(q.dtype())));  // [B, H, T, T]
  return transpose(matmul(softmax(scores), vh), 1, 2);      // [B, T, H, D]
}

}  // namespace tq::autograd
