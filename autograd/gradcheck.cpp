#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "autograd/tape.h"
#include "core/rng.h"

namespace tq::autograd {

namespace {

std::vector<int64_t> sample(int64_t n, int64_t cap, Rng& rng) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  if (n <= cap) return idx;
  for (int64_t i = 0; i < cap; ++i) {  // partial Fisher-Yates
    const int64_t j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - i)));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  idx.resize(static_cast<size_t>(cap));
  std::sort(idx.begin(), idx.end());
  return idx;
}

Tensor eval_plain(const GradFn& fn, const std::vector<Tensor>& xs) {
  NoGradGuard no_grad;
  std::vector<Var> vs;
  for (const Tensor& x : xs) vs.emplace_back(x, false);
  return fn(vs).value().contiguous();
}

}  // namespace

GradCheckResult check_gradients(const GradFn& fn, const std::vector<Tensor>& inputs,
                                const GradCheckOptions& opts) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    TQ_CHECK(inputs[i].dtype() == DType::f64, "[gradcheck] input {} is {}; gradient checks run in f64", i,
             inputs[i].str());
  }
  std::vector<bool> wrt = opts.wrt.empty() ? std::vector<bool>(inputs.size(), true) : opts.wrt;
  TQ_CHECK(wrt.size() == inputs.size(), "[gradcheck] wrt has {} entries for {} inputs", wrt.size(), inputs.size());
  Rng rng(opts.seed);
  const Tensor y0 = eval_plain(fn, inputs);
  const std::vector<int64_t> outs = sample(y0.numel(), opts.max_outputs, rng);
  std::vector<std::vector<int64_t>> ins(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (wrt[i]) ins[i] = sample(inputs[i].numel(), opts.max_inputs, rng);

  // Analytical rows: one backward pass per sampled output element.
  // analytic[i][k][o]: d out[outs[o]] / d input_i[ins[i][k]]
  std::vector<std::vector<std::vector<double>>> analytic(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    analytic[i].assign(ins[i].size(), std::vector<double>(outs.size(), 0.0));
  for (size_t o = 0; o < outs.size(); ++o) {
    std::vector<Var> vs;
    for (size_t i = 0; i < inputs.size(); ++i) vs.emplace_back(inputs[i].clone(), static_cast<bool>(wrt[i]));
    Tape tape;
    RecordScope rec(tape);
    const Var y = fn(vs);
    TQ_CHECK(y.requires_grad(), "[gradcheck] output does not depend on any differentiated input");
    Tensor seed = Tensor::zeros(y.shape(), DType::f64);
    seed.view({seed.numel()}).set({outs[o]}, 1.0);
    tape.backward(y, seed);
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!wrt[i] || !vs[i].has_grad()) continue;
      const Tensor g = vs[i].grad();
      for (size_t k = 0; k < ins[i].size(); ++k) analytic[i][k][o] = g.flat(ins[i][k]);
    }
  }

  // Numerical columns: two plain evaluations per sampled input element.
  GradCheckResult r;
  std::ostringstream bad;
  int64_t shown = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (size_t k = 0; k < ins[i].size(); ++k) {
      std::vector<Tensor> xp = inputs, xm = inputs;
      xp[i] = inputs[i].clone();
      xm[i] = inputs[i].clone();
      const int64_t e = ins[i][k];
      const double v = inputs[i].flat(e);
      xp[i].view({xp[i].numel()}).set({e}, v + opts.eps);
      xm[i].view({xm[i].numel()}).set({e}, v - opts.eps);
      const Tensor yp = eval_plain(fn, xp), ym = eval_plain(fn, xm);
      for (size_t o = 0; o < outs.size(); ++o) {
        const double num = (yp.flat(outs[o]) - ym.flat(outs[o])) / (2 * opts.eps);
        const double ana = analytic[i][k][o];
        const double err = std::fabs(num - ana);
        ++r.entries;
        r.max_abs_err = std::max(r.max_abs_err, std::isnan(err) ? INFINITY : err);
        if (!(err <= opts.atol + opts.rtol * std::fabs(num))) {
          r.ok = false;
          if (shown++ < 8) {
            bad << "  input " << i << " element " << e << ", output " << outs[o] << ": analytic " << ana
                << " numeric " << num << "\n";
          }
        }
      }
    }
  }
  std::ostringstream rep;
  rep << (r.ok ? "gradcheck ok" : "gradcheck FAILED") << ": " << r.entries << " Jacobian entries, max abs err "
      << r.max_abs_err << "\n"
      << bad.str();
  r.report = rep.str();
  return r;
}

}  // namespace tq::autograd
