#include "bilevel/rules/implicit.h"

#include <cmath>
#include <limits>

namespace bilevel {
namespace {

using torch::Tensor;
using States = std::vector<Tensor>;

// Per-example Σ over all layers of a ⊙ b: [B].
Tensor dot(const States& a, const States& b) {
  Tensor d = (a[0] * b[0]).flatten(1).sum(1);
  for (size_t k = 1; k < a.size(); ++k) d += (a[k] * b[k]).flatten(1).sum(1);
  return d;
}

double frob(const States& a) {
  double s = 0.0;
  for (const auto& t : a) s += t.pow(2).sum().item<double>();
  return std::sqrt(s);
}

// Broadcast a per-example [B] to t's shape.
Tensor per_example(const Tensor& v, const Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return v.view(shape);
}

}  // namespace

ImplicitDifferentiation::ImplicitDifferentiation(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : EnergyRule(std::move(objective), std::move(options)) {}

std::vector<std::string> ImplicitDifferentiation::diagnostic_columns() const {
  return {"free_residual", "free_steps", "implicit_residual", "implicit_steps"};
}

StepStats ImplicitDifferentiation::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  auto energy = energy_of(net);
  StepStats stats;
  const SolveStats fs = free_phase(energy, x, y);
  output_stats(energy, stats);

  const int64_t S = energy.num_states();
  const States& s = free_.s;
  const Neuron& neuron = energy.neuron();
  // K w: (K w)_k = A_{k−1} w_{k−1} + A_kᵀ w_{k+1}, switches at s*.
  auto apply_K = [&](const States& w) {
    States out(S);
    for (int64_t k = 1; k <= S; ++k) {
      Tensor o = k >= 2 ? energy.linearized(k - 1, w[k - 2], energy.layer_pool(batch_, free_, k - 1))
                              .view(s[k - 1].sizes())
                        : torch::zeros_like(s[k - 1]);
      if (k < S) energy.feedback_add(k, w[k], energy.layer_pool(batch_, free_, k), 1.0, o);
      out[k - 1] = o;
    }
    return out;
  };

  States D(S), sq(S), g(S);
  for (int64_t k = 1; k <= S; ++k) {
    D[k - 1] = neuron.drho_from_state(s[k - 1]);
    sq[k - 1] = D[k - 1].sqrt();
    g[k - 1] = torch::zeros_like(s[k - 1]);
  }
  {
    Tensor d = objective_->grad(energy.output(batch_, free_), batch_.labels);
    if (energy.output_is_state())
      g[S - 1] = d;
    else
      g[S - 1] = d.mm(net->layer(net->num_layers() - 1).weight).view(s[S - 1].sizes());
  }
  States Dg(S);
  for (int64_t k = 0; k < S; ++k) Dg[k] = D[k] * g[k];

  States w(S);
  int64_t iters = 0;
  if (opt_.implicit_method == "cg") {
    // (I − D^½ K D^½) z = D^½ g, per example.
    auto apply_A = [&](const States& z) {
      States t(S);
      for (int64_t k = 0; k < S; ++k) t[k] = sq[k] * z[k];
      States kt = apply_K(t);
      States out(S);
      for (int64_t k = 0; k < S; ++k) out[k] = z[k] - sq[k] * kt[k];
      return out;
    };
    States z(S), r(S), p(S);
    for (int64_t k = 0; k < S; ++k) {
      z[k] = torch::zeros_like(s[k]);
      r[k] = sq[k] * g[k];
      p[k] = r[k].clone();
    }
    const Tensor rhs2 = dot(r, r);
    Tensor rr = rhs2.clone();
    const double tiny = std::numeric_limits<double>::min();
    for (int64_t it = 0; it < opt_.implicit_steps; ++it) {
      if ((rr <= opt_.implicit_tol * opt_.implicit_tol * rhs2).all().item<bool>()) break;
      States Ap = apply_A(p);
      Tensor pAp = dot(p, Ap);
      Tensor alpha = torch::where(pAp > tiny, rr / pAp.clamp_min(tiny), torch::zeros_like(rr));
      for (int64_t k = 0; k < S; ++k) {
        z[k].add_(per_example(alpha, z[k]) * p[k]);
        r[k].sub_(per_example(alpha, r[k]) * Ap[k]);
      }
      Tensor rr_new = dot(r, r);
      Tensor b = torch::where(rr > tiny, rr_new / rr.clamp_min(tiny), torch::zeros_like(rr));
      for (int64_t k = 0; k < S; ++k) p[k] = r[k] + per_example(b, p[k]) * p[k];
      rr = rr_new;
      iters = it + 1;
    }
    for (int64_t k = 0; k < S; ++k) w[k] = sq[k] * z[k];
  } else {
    // Neumann / fixed-point iteration w ← D (g + K w).
    w = Dg;
    for (int64_t it = 0; it < opt_.implicit_steps; ++it) {
      States kw = apply_K(w);
      double change = 0.0, scale = 0.0;
      for (int64_t k = 0; k < S; ++k) {
        Tensor nw = D[k] * (g[k] + kw[k]);
        change = std::max(change, max_abs_diff(nw, w[k]));
        scale = std::max(scale, nw.abs().max().item<double>());
        w[k] = nw;
      }
      iters = it + 1;
      if (change <= opt_.implicit_tol * scale) break;
    }
  }
  // Relative residual of the linear system in w-form.
  double residual;
  {
    States kw = apply_K(w), res(S);
    for (int64_t k = 0; k < S; ++k) res[k] = w[k] - D[k] * (g[k] + kw[k]);
    const double denom = frob(Dg);
    residual = denom > 0 ? frob(res) / denom : frob(res);
  }

  const double coeff = 1.0 / double(batch_.size);
  for (int64_t l = 0; l < S; ++l) {
    const Layer& L = net->layer(l);
    Tensor& gW = grad_buffer(L.weight);
    Tensor& gb = grad_buffer(L.bias);
    const Tensor& pool = energy.layer_pool(batch_, free_, l);
    energy.param_grad_add(l, w[l], energy.layer_input(batch_, free_, l), pool, coeff, gW, &gb);
    if (l >= 1) energy.param_grad_add(l, s[l], w[l - 1], pool, coeff, gW, nullptr);
  }
  energy.add_readout_grad(batch_, free_, coeff);

  stats.diagnostics = {{"free_residual", fs.residual},
                       {"free_steps", double(fs.steps)},
                       {"implicit_residual", residual},
                       {"implicit_steps", double(iters)}};
  return stats;
}

}  // namespace bilevel
