#include "kernel_cases.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "bilevel/kernels/fused_ops.h"
#include "bilevel/kernels/quant_ops.h"

namespace bilevel::gpu_bench {

using torch::Tensor;
namespace K = bilevel::kernels;

// max |a − b| over all elements, in float64; +inf when shapes differ, NaN when either holds a NaN.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  if (a.numel() == 0) return 0.0;
  return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

namespace {

// round half away from zero, as qe::round_half_away: sign(x)·floor(|x| + ½).
Tensor round_half_away(const Tensor& x) { return x.sign() * (x.abs() + 0.5).floor_(); }
// sign with sign(0) = +1, as float: 2·[x ≥ 0] − 1.
Tensor sign_pos(const Tensor& x) { return x.ge(0).to(torch::kFloat).mul_(2).sub_(1); }

// The element-wise rows' inputs: [rows, cols] float32 on the device.
struct Inputs {
  torch::Device dev;
  int64_t rows, cols;
  torch::TensorOptions opt = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(cols) + "] f32";
  Tensor randn(double scale) const { return (torch::randn({rows, cols}) * scale).to(dev); }
  Tensor empty() const { return torch::empty({rows, cols}, opt); }
};

// The relaxations' element-wise passes: dual propagation's dyad, the fixed-point sweep's and the compact
// relaxation's epilogues.
void add_state_cases(std::vector<KernelCase>& cases, const Inputs& in) {
  // ---- dual propagation's dyad: s⁺ = ρ(u + ᾱf), s⁻ = ρ(u − αf), δ = s⁺ − s⁻, s̄ = s⁻ + αδ (α = ½)
  for (const std::string act : {"relu", "sigmoid4"}) {
    const double alpha = 0.5;
    const Tensor u = in.randn(2.0), f = in.randn(1.5);
    auto bufs = std::make_shared<std::vector<Tensor>>(std::vector<Tensor>{in.empty(), in.empty(), in.empty(), in.empty()});
    const K::ActParams rho = K::act_of(act);
    auto rho_ = [act](Tensor& t) {
      if (act == "relu") t.relu_();
      else t.sub_(0.5).mul_(4).sigmoid_();  // sigmoid(4 (x − ½))
    };
    KernelCase c;
    c.name = "dyad_update (" + act + ", α = ½)";
    c.shape = in.shape;
    c.unfused_ops = act == "relu" ? "add, relu, sub, relu, sub, add" : "add, sub, mul, sigmoid ×2, sub, add";
    c.fused = [=] { K::dyad_update_out(u, f, alpha, rho, (*bufs)[0], (*bufs)[1]); };
    c.unfused = [=] {
      Tensor sp = at::add(u, f, 1.0 - alpha), sm = at::sub(u, f, alpha);
      rho_(sp);
      rho_(sm);
      at::sub_out((*bufs)[2], sp, sm);
      at::add_out((*bufs)[3], sm, (*bufs)[2], alpha);
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return std::max(max_abs_diff((*bufs)[0], (*bufs)[2]), max_abs_diff((*bufs)[1], (*bufs)[3]));
    };
    c.tol = 1e-5;  // ρ's exp: libm / CUDA against LibTorch's vectorised one, a few ulps
    cases.push_back(std::move(c));
  }

  // ---- the fixed-point sweep's epilogue: v ← h(v) in place, and max |h(v) − s_old|
  for (const std::string act : {"sigmoid", "hard_sigmoid"}) {
    const Tensor v0 = in.randn(3.0), s_old = torch::rand({in.rows, in.cols}).to(in.dev);
    auto vf = std::make_shared<Tensor>(v0.clone()), vu = std::make_shared<Tensor>(v0.clone());
    auto rf = std::make_shared<double>(0), ru = std::make_shared<double>(0);
    const K::ActParams h = act == "sigmoid" ? K::ActParams{K::Act::Sigmoid} : K::ActParams{K::Act::Clip, 0.0, 1.0};
    KernelCase c;
    c.name = "state_update_ (" + act + ")";
    c.shape = in.shape;
    c.unfused_ops = std::string(act == "sigmoid" ? "sigmoid_" : "clamp_") + ", sub, abs, max, item";
    c.fused = [=] { *rf = K::state_update_(*vf, s_old, h); };
    c.unfused = [=] {
      if (act == "sigmoid") vu->sigmoid_();
      else vu->clamp_(0.0, 1.0);
      *ru = (*vu - s_old).abs().max().item<double>();
    };
    c.check = [=] {
      vf->copy_(v0);
      vu->copy_(v0);
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*vf, *vu), std::abs(*rf - *ru));
    };
    c.tol = 1e-5;
    cases.push_back(std::move(c));
  }

  // ---- the compact relaxation's epilogue per example: v ← h(v), change[r] ← max(change[r], max_j |h(v) − s_old|)
  {
    const Tensor v0 = in.randn(3.0), s_old = torch::rand({in.rows, in.cols}).to(in.dev);
    auto vf = std::make_shared<Tensor>(v0.clone()), vu = std::make_shared<Tensor>(v0.clone());
    auto cf = std::make_shared<Tensor>(torch::zeros({in.rows}, in.opt));
    auto cu = std::make_shared<Tensor>(torch::zeros({in.rows}, in.opt));
    const K::ActParams h{K::Act::Sigmoid};
    KernelCase c;
    c.name = "state_update_rows_ (sigmoid)";
    c.shape = in.shape;
    c.unfused_ops = "sigmoid_, sub, abs, amax(1), maximum";
    c.fused = [=] { K::state_update_rows_(*vf, s_old, h, *cf); };
    c.unfused = [=] {
      vu->sigmoid_();
      *cu = at::maximum(*cu, (*vu - s_old).abs().amax(1));
    };
    c.check = [=] {
      vf->copy_(v0);
      vu->copy_(v0);
      cf->zero_();
      cu->zero_();
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*vf, *vu), max_abs_diff(*cf, *cu));
    };
    c.tol = 1e-5;
    cases.push_back(std::move(c));
  }
}

// The codes of the weights' and the activations' grids.
void add_code_cases(std::vector<KernelCase>& cases, const Inputs& in) {
  // ---- quantizer codes: q(θ·(1/s_c) + z_c), z undefined (0)
  {
    const Tensor theta = in.randn(0.1), scale = (torch::rand({in.rows}) * 0.03 + 0.02).to(in.dev);
    auto out = std::make_shared<Tensor>(in.empty()), ref = std::make_shared<Tensor>(in.empty());
    const K::CodeSpec spec{K::CodeKind::Uniform, -8.f, 7.f};
    KernelCase c;
    c.name = "quant_codes (uniform 4-bit, per channel)";
    c.shape = in.shape;
    c.unfused_ops = "reciprocal, mul, clamp, sign, abs, add, floor, mul";
    c.fused = [=] { K::quant_codes_out(theta, scale, Tensor(), spec, nullptr, *out); };
    c.unfused = [=] {
      Tensor x = theta * scale.reciprocal().unsqueeze(1);
      x.clamp_(spec.lo, spec.hi);
      at::mul_out(*ref, x.sign(), (x.abs() + 0.5).floor_());
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    c.tol = 0.0;  // integer codes from the same float operations
    cases.push_back(std::move(c));
  }
  {
    const Tensor theta = in.randn(0.1), scale = torch::full({1}, 0.05f).to(in.dev);
    auto out = std::make_shared<Tensor>(in.empty()), ref = std::make_shared<Tensor>(in.empty());
    KernelCase c;
    c.name = "quant_codes (binary, per tensor)";
    c.shape = in.shape;
    c.unfused_ops = "reciprocal, mul, ge, to float, mul, sub";
    c.fused = [=] { K::quant_codes_out(theta, scale, Tensor(), K::CodeSpec{K::CodeKind::Binary}, nullptr, *out); };
    c.unfused = [=] { *ref = sign_pos(theta * scale.reciprocal()); };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
  // ---- the activation quantizer's codes: round(clip((x − offset)/step, lo, hi)), deterministic
  {
    const Tensor x = (torch::rand({in.rows, in.cols}) * 1.2 - 0.1).to(in.dev);
    const double offset = 0.0, step = 0.0625, lo = 0, hi = 15;
    auto out = std::make_shared<Tensor>(in.empty()), ref = std::make_shared<Tensor>(in.empty());
    KernelCase c;
    c.name = "activation_codes (uniform 4-bit)";
    c.shape = in.shape;
    c.unfused_ops = "sub, mul, clamp, sign, abs, add, floor, mul";
    c.fused = [=] { K::activation_codes_out(x, offset, step, lo, hi, nullptr, *out); };
    c.unfused = [=] {
      Tensor v = (x - offset).mul_(1.f / float(step));
      v.clamp_(lo, hi);
      at::mul_out(*ref, v.sign(), (v.abs() + 0.5).floor_());
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
}

// The straight-through solvers' passes: STE's backward, AdaSTE's forward and backward.
void add_ste_cases(std::vector<KernelCase>& cases, const Inputs& in) {
  // ---- the STE solver's backward: g·1[lo ≤ θ·(1/s_c) ≤ hi]
  {
    const Tensor g = in.randn(1.0), theta = in.randn(0.1), scale = (torch::rand({in.rows}) * 0.1 + 0.05).to(in.dev);
    auto out = std::make_shared<Tensor>(in.empty()), ref = std::make_shared<Tensor>(in.empty());
    KernelCase c;
    c.name = "ste_grad (per channel)";
    c.shape = in.shape;
    c.unfused_ops = "reciprocal, mul, ge, le, and, mul";
    c.fused = [=] { K::ste_grad_out(g, theta, scale, Tensor(), -1.0, 1.0, *out); };
    c.unfused = [=] {
      const Tensor u = theta * scale.reciprocal().unsqueeze(1);
      at::mul_out(*ref, g, u.ge(-1.0).logical_and_(u.le(1.0)));
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    cases.push_back(std::move(c));
  }
  // ---- AdaSTE: w*(u) = clip((u + β(1+α)·sign u)/(1+β), −1, 1), and its adaptive backward σ(u, g)·g
  {
    const double beta = 0.5, alpha = 0.01;
    const float k = float(beta) * (1.f + float(alpha)), den = 1.f + float(beta);
    auto w_star = [k, den](const Tensor& u) { return (u + sign_pos(u).mul_(k)).div_(den).clamp_(-1.0, 1.0); };
    const Tensor u = in.randn(1.0), g = in.randn(1.0);
    auto out = std::make_shared<Tensor>(in.empty()), ref = std::make_shared<Tensor>(in.empty());
    auto gout = std::make_shared<Tensor>(in.empty()), gref = std::make_shared<Tensor>(in.empty());
    KernelCase c;
    c.name = "adaste_forward";
    c.shape = in.shape;
    c.unfused_ops = "ge, to float, mul, sub, mul, add, div, clamp";
    c.fused = [=] { K::adaste_forward_out(u, beta, alpha, *out); };
    c.unfused = [=] { *ref = w_star(u); };
    c.check = [=] {
      c.fused();
      c.unfused();
      return max_abs_diff(*out, *ref);
    };
    c.tol = 1e-6;  // a division by 1 + β: LibTorch's CUDA multiplies by the reciprocal (1 ulp)
    cases.push_back(std::move(c));
    KernelCase d;
    d.name = "adaste_grad";
    d.shape = in.shape;
    d.unfused_ops = "abs, mul, gt, ge, 2 × (mul, add, div, minimum), 3 × where, mul";
    d.fused = [=] { K::adaste_grad_out(g, u, beta, alpha, *gout); };
    d.unfused = [=] {  // the case table of kernels/quant_element.h (β·α < 1 here) in LibTorch's operators
      const float b = float(beta), ba = float(beta) * float(alpha);
      const Tensor a = u.abs(), inward = (g * u).gt(0), sat = a.ge(1.f - ba);
      const Tensor half = torch::full({}, 0.5f, a.options());
      const Tensor in = torch::where(sat, torch::minimum(half, (1.f + 2.f * b + ba) / ((1.f + b) * a)),
                                     torch::minimum(half, (a + 2.f * b * (1.f + float(alpha))) / ((1.f + b) * a)));
      const Tensor out = torch::where(sat, torch::zeros({}, a.options()), torch::full({}, 1.f / (1.f + b), a.options()));
      *gref = torch::where(inward, in, out) * g;
    };
    d.check = [=] {
      d.fused();
      d.unfused();
      return max_abs_diff(*gout, *gref);
    };
    d.tol = 1e-6;  // the same float operations; LibTorch's CUDA division may differ by an ulp
    cases.push_back(std::move(d));
  }
}

// The steps of the solvers without a straight-through estimator: LSQ's gradients, ProxQuant's prox step, the flip
// rule.
void add_step_cases(std::vector<KernelCase>& cases, const Inputs& in) {
  // ---- LSQ on u = v/s, range [−Q_N, Q_P]: gv = g·1[inside], gs = g·(round(u) − u inside, −Q_N / Q_P outside)
  {
    const double qn = 8, qp = 7;
    const Tensor g = in.randn(1.0), u = in.randn(5.0);
    auto gv = std::make_shared<Tensor>(in.empty()), gs = std::make_shared<Tensor>(in.empty());
    auto rv = std::make_shared<Tensor>(in.empty()), rs = std::make_shared<Tensor>(in.empty());
    KernelCase c;
    c.name = "lsq_grads";
    c.shape = in.shape;
    c.unfused_ops = "ge, le, and, mul, sign, abs, add, floor, mul, sub, le, masked_fill, ge, masked_fill, mul";
    c.fused = [=] { K::lsq_grads_out(g, u, qn, qp, *gv, *gs); };
    c.unfused = [=] {
      at::mul_out(*rv, g, u.ge(-qn).logical_and_(u.le(qp)));
      Tensor ds = round_half_away(u).sub_(u);
      ds.masked_fill_(u.le(-qn), -qn).masked_fill_(u.ge(qp), qp);
      at::mul_out(*rs, g, ds);
    };
    c.check = [=] {
      c.fused();
      c.unfused();
      return std::max(max_abs_diff(*gv, *rv), max_abs_diff(*gs, *rs));
    };
    cases.push_back(std::move(c));
  }
  // ---- ProxQuant's prox step in place: q ← q + sign(u − q)·max(|u − q| − λ, 0)
  {
    const double lambda = 0.25;
    const Tensor u = in.randn(1.0), q0 = round_half_away(u);
    auto qf = std::make_shared<Tensor>(q0.clone()), qu = std::make_shared<Tensor>(q0.clone());
    KernelCase c;
    c.name = "prox_towards_";
    c.shape = in.shape;
    c.unfused_ops = "sub, abs, sub, clamp_min, sign, mul, add_";
    c.fused = [=] { K::prox_towards_(*qf, u, lambda); };
    c.unfused = [=] {
      const Tensor d = u - *qu;
      qu->add_(d.sign() * (d.abs().sub_(lambda).clamp_min_(0.0)));
    };
    c.check = [=] {
      qf->copy_(q0);
      qu->copy_(q0);
      c.fused();
      c.unfused();
      return max_abs_diff(*qf, *qu);
    };
    cases.push_back(std::move(c));
  }
  // ---- the flip rule in place: codes_i ← −codes_i where m_i·codes_i > τ
  {
    const double tau = 0.0625;
    const Tensor m = in.randn(0.1), c0 = sign_pos(in.randn(1.0));
    auto cf = std::make_shared<Tensor>(c0.clone()), cu = std::make_shared<Tensor>(c0.clone());
    KernelCase c;
    c.name = "flip_codes_";
    c.shape = in.shape;
    c.unfused_ops = "mul, gt, to float, mul, add, mul_";
    c.fused = [=] { K::flip_codes_(*cf, m, tau); };
    c.unfused = [=] { cu->mul_((m * *cu).gt(tau).to(torch::kFloat).mul_(-2).add_(1)); };
    c.check = [=] {
      cf->copy_(c0);
      cu->copy_(c0);
      c.fused();
      c.unfused();
      return max_abs_diff(*cf, *cu);
    };
    cases.push_back(std::move(c));
  }
}

}  // namespace

std::vector<KernelCase> kernel_cases(torch::Device dev, int64_t rows, int64_t cols, const std::vector<int64_t>& relax_batches,
                                     int64_t relax_hidden) {
  std::vector<KernelCase> cases;
  const Inputs in{dev, rows, cols};
  torch::manual_seed(7);  // the inputs are drawn in the order of the rows
  add_state_cases(cases, in);
  add_code_cases(cases, in);
  add_ste_cases(cases, in);
  add_step_cases(cases, in);
  add_relaxation_cases(cases, dev, relax_batches, relax_hidden);
  return cases;
}

}  // namespace bilevel::gpu_bench
