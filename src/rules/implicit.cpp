#include "bilevel/rules/implicit.h"

#include <cmath>
#include <functional>
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

// a ← a + c ⊙ b, per example.
void axpy_(States& a, const Tensor& c, const States& b) {
  for (size_t k = 0; k < a.size(); ++k) a[k].add_(per_example(c, a[k]) * b[k]);
}

States zeros_like(const States& a) {
  States out(a.size());
  for (size_t k = 0; k < a.size(); ++k) out[k] = torch::zeros_like(a[k]);
  return out;
}

struct SymmetricSolve {
  States z;
  int64_t iterations = 0;
  Tensor indefinite;  // [B] bool: the operator showed non-positive curvature on this example's Krylov space
};

using Operator = std::function<States(const States&)>;

// Conjugate gradient (Hestenes & Stiefel 1952), one independent system per example. Correct only for a
// positive definite operator: on an indefinite one p·Ap can be ≤ 0, and the step is then skipped (α = 0), which
// stalls the example (recorded in `indefinite`).
SymmetricSolve conjugate_gradient(const Operator& A, const States& b, int64_t max_steps, double tol) {
  SymmetricSolve out;
  out.z = zeros_like(b);
  States r(b.size()), p(b.size());
  for (size_t k = 0; k < b.size(); ++k) r[k] = b[k].clone(), p[k] = b[k].clone();
  const Tensor rhs2 = dot(r, r);
  Tensor rr = rhs2.clone();
  out.indefinite = torch::zeros_like(rr, torch::kBool);
  const double tiny = std::numeric_limits<double>::min();
  for (int64_t it = 0; it < max_steps; ++it) {
    const Tensor active = rr > tol * tol * rhs2;
    if (!active.any().item<bool>()) break;
    States Ap = A(p);
    Tensor pAp = dot(p, Ap);
    out.indefinite |= active & (pAp <= 0);
    Tensor alpha = torch::where(pAp > tiny, rr / pAp.clamp_min(tiny), torch::zeros_like(rr));
    axpy_(out.z, alpha, p);
    axpy_(r, -alpha, Ap);
    Tensor rr_new = dot(r, r);
    Tensor beta = torch::where(rr > tiny, rr_new / rr.clamp_min(tiny), torch::zeros_like(rr));
    for (size_t k = 0; k < p.size(); ++k) p[k] = r[k] + per_example(beta, p[k]) * p[k];
    rr = rr_new;
    out.iterations = it + 1;
  }
  return out;
}

// MINRES (Paige & Saunders 1975, "Solution of sparse indefinite systems of linear equations", SIAM J. Numer.
// Anal. 12(4)), one independent system per example: the Lanczos process builds an orthonormal basis V_j of the
// Krylov space of A and b and the tridiagonal T_j = V_jᵀ A V_j; z_j = V_j y_j minimises ‖b − A z‖ over that
// space, y_j from a QR factorisation of the (j+1)×j extended tridiagonal by Givens rotations, updated one column
// per step. Needs A symmetric only (indefinite is fine); ‖b − A z_j‖ = |φ̄_{j+1}| is known without forming it.
// `indefinite` flags examples where an LDLᵀ pivot of T_j is ≤ 0, i.e. A has negative curvature on the Krylov
// space (where CG would break down).
SymmetricSolve minres(const Operator& A, const States& b, int64_t max_steps, double tol) {
  SymmetricSolve out;
  out.z = zeros_like(b);
  const double tiny = std::numeric_limits<float>::min();
  const Tensor beta1 = dot(b, b).sqrt();  // [B]
  auto zero = torch::zeros_like(beta1);
  out.indefinite = torch::zeros_like(beta1, torch::kBool);
  // Lanczos vectors v_{j−1}, v_j; search directions d_{j−1}, d_{j−2}.
  States v_prev = zeros_like(b), v(b.size());
  for (size_t k = 0; k < b.size(); ++k) v[k] = b[k] / per_example(beta1.clamp_min(tiny), b[k]);
  States d1 = zeros_like(b), d2 = zeros_like(b);
  Tensor b_cur = zero.clone();                                   // T(j, j−1): 0 for j = 1
  Tensor c1 = torch::ones_like(beta1), s1 = zero.clone();         // rotation j−1
  Tensor c2 = torch::ones_like(beta1), s2 = zero.clone();         // rotation j−2
  Tensor phibar = beta1.clone();                                 // rotated right-hand side, row j
  Tensor pivot = torch::ones_like(beta1);                        // LDLᵀ pivot of T_{j−1}
  for (int64_t j = 1; j <= max_steps; ++j) {
    const Tensor active = phibar.abs() > tol * beta1;
    if (!active.any().item<bool>()) break;
    // Lanczos step: p = A v_j − b_j v_{j−1} − α_j v_j, b_{j+1} = ‖p‖.
    States p = A(v);
    axpy_(p, -b_cur, v_prev);
    const Tensor alpha = dot(v, p);
    axpy_(p, -alpha, v);
    const Tensor b_next = dot(p, p).sqrt();
    // Curvature: pivots of T_j.
    const Tensor piv = j == 1 ? alpha : alpha - b_cur * b_cur / torch::where(pivot.abs() > tiny, pivot, torch::full_like(pivot, tiny));
    out.indefinite |= active & (piv <= 0);
    pivot = piv;
    // Column j of the extended tridiagonal (b_j, α_j, b_{j+1}) through rotations j−2 and j−1, then a new one.
    const Tensor eps = s2 * b_cur;
    const Tensor dtil = c2 * b_cur;
    const Tensor delta = c1 * dtil + s1 * alpha;
    const Tensor gtil = -s1 * dtil + c1 * alpha;
    const Tensor gamma = (gtil * gtil + b_next * b_next).sqrt().clamp_min(tiny);
    const Tensor c = gtil / gamma, s = b_next / gamma;
    const Tensor phi = c * phibar;
    // d_j = (v_j − δ_j d_{j−1} − ε_j d_{j−2}) / γ_j;  z ← z + φ_j d_j.
    States d(b.size());
    for (size_t k = 0; k < b.size(); ++k)
      d[k] = (v[k] - per_example(delta, v[k]) * d1[k] - per_example(eps, v[k]) * d2[k]) / per_example(gamma, v[k]);
    for (size_t k = 0; k < b.size(); ++k)  // where(): an example that stopped keeps its z even if d overflows
      out.z[k] = torch::where(per_example(active, d[k]), out.z[k] + per_example(phi, d[k]) * d[k], out.z[k]);
    phibar = torch::where(active, -s * phibar, phibar);
    // Shift.
    d2 = std::move(d1);
    d1 = std::move(d);
    c2 = c1, s2 = s1, c1 = c, s1 = s;
    v_prev = std::move(v);
    v = States(b.size());
    for (size_t k = 0; k < b.size(); ++k) v[k] = p[k] / per_example(b_next.clamp_min(tiny), p[k]);
    b_cur = b_next;
    out.iterations = j;
  }
  return out;
}

}  // namespace

ImplicitDifferentiation::ImplicitDifferentiation(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : EnergyRule(std::move(objective), std::move(options)) {}

std::vector<std::string> ImplicitDifferentiation::diagnostic_columns() const {
  return {"free_residual", "free_steps", "implicit_residual", "implicit_steps", "implicit_indefinite"};
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
      Tensor o = k >= 2 ? energy.maps().linearized(k - 1, w[k - 2], energy.layer_pool(batch_, free_, k - 1))
                              .view(s[k - 1].sizes())
                        : torch::zeros_like(s[k - 1]);
      if (k < S) energy.maps().feedback_add(k, w[k], energy.layer_pool(batch_, free_, k), 1.0, o);
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
  Tensor indefinite = torch::zeros({batch_.size}, torch::kBool);  // per example: negative curvature seen
  if (opt_.implicit_method == "cg" || opt_.implicit_method == "minres") {
    // (I − D^½ K D^½) z = D^½ g, per example.
    auto apply_A = [&](const States& z) {
      States t(S);
      for (int64_t k = 0; k < S; ++k) t[k] = sq[k] * z[k];
      States kt = apply_K(t);
      States out(S);
      for (int64_t k = 0; k < S; ++k) out[k] = z[k] - sq[k] * kt[k];
      return out;
    };
    States rhs(S);
    for (int64_t k = 0; k < S; ++k) rhs[k] = sq[k] * g[k];
    const SymmetricSolve sol = opt_.implicit_method == "cg"
                                   ? conjugate_gradient(apply_A, rhs, opt_.implicit_steps, opt_.implicit_tol)
                                   : minres(apply_A, rhs, opt_.implicit_steps, opt_.implicit_tol);
    iters = sol.iterations;
    indefinite = sol.indefinite;
    for (int64_t k = 0; k < S; ++k) w[k] = sq[k] * sol.z[k];
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
    energy.maps().param_grad_add(l, w[l], energy.layer_input(batch_, free_, l), pool, coeff, gW, &gb);
    if (l >= 1) energy.maps().param_grad_add(l, s[l], w[l - 1], pool, coeff, gW, nullptr);
  }
  energy.add_readout_grad(batch_, free_, coeff);

  stats.diagnostics = {{"free_residual", fs.residual},
                       {"free_steps", double(fs.steps)},
                       {"implicit_residual", residual},
                       {"implicit_steps", double(iters)},
                       {"implicit_indefinite", indefinite.to(torch::kDouble).mean().item<double>()}};
  return stats;
}

}  // namespace bilevel
