// Dual propagation (Høier, Staudt & Zach 2023; DP⊤ form of Høier & Zach 2024). Equations, inference schedules and
// the choices made for state outputs and max-pooling: see bilevel/rules/dual_prop.h.
#include "bilevel/rules/dual_prop.h"

#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <stdexcept>

#include "bilevel/kernels/fused_ops.h"
#include "bilevel/nn/layer_maps.h"
#include "bilevel/rules/registry.h"

namespace bilevel {

using torch::Tensor;

namespace {

std::vector<int64_t> output_shape(const Layer& layer, int64_t batch) {
  std::vector<int64_t> shape = {batch};
  shape.insert(shape.end(), layer.out_shape.begin(), layer.out_shape.end());
  return shape;
}

struct Dyad {
  Tensor delta;  // s⁺ − s⁻
  Tensor sbar;   // α s⁺ + ᾱ s⁻
};

// One dyad's closed-form response to its total input u and feedback f:  s⁺ = ρ(u + ᾱ f),  s⁻ = ρ(u − α f).
// rho == nullptr means ρ = identity: then δ = f and s̄ = u exactly (no cancellation in s⁺ − s⁻). For α ∈ {0, 1}
// the un-nudged compartment is ρ(u) itself; `rho_u` passes it in when the caller already has it. Both inference
// schedules go through this one function, so they agree bit for bit where the mathematics says they agree.
Dyad dyad(const Tensor& u, const Tensor& f, const Tensor& rho_u, const Activation* rho, double alpha) {
  if (rho == nullptr) return {f, u};
  if (alpha == 1.0) {
    Tensor sp = rho_u.defined() ? rho_u : rho->f(u);
    Tensor sm = rho->f(u - f);
    return {sp - sm, sp};
  }
  if (alpha == 0.0) {
    Tensor sm = rho_u.defined() ? rho_u : rho->f(u);
    Tensor sp = rho->f(u + f);
    return {sp - sm, sm};
  }
  // On a GPU, one fused kernel (kernels::dyad_update) replaces the six operators below and their temporaries;
  // on the CPU LibTorch's vectorised operators are faster than the kernel's scalar twin (docs/gpu.md).
  // (A build without the CUDA kernels, and an activation registered by a user, take the operators.)
  if (u.is_cuda() && kernels::cuda_kernels_built() && u.is_contiguous() && f.is_contiguous() &&
      u.sizes() == f.sizes() && u.scalar_type() == f.scalar_type()) {
    std::optional<kernels::ActParams> act;
    try {
      act = kernels::act_of(rho->name);
    } catch (const std::invalid_argument&) {
    }
    if (act) {
      kernels::DyadTensors k = kernels::dyad_update(u, f, alpha, *act);
      return {k.delta, k.sbar};
    }
  }
  Tensor sp = rho->f(at::add(u, f, 1.0 - alpha));
  Tensor sm = rho->f(at::sub(u, f, alpha));
  Tensor d = sp - sm;
  Tensor sbar = at::add(sm, d, alpha);
  return {d, sbar};
}

}  // namespace

DualPropOptions DualPropOptions::from_config(const ExperimentConfig& cfg) {
  DualPropOptions o;
  o.alpha = cfg.get<double>("rule.alpha");
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0))
    cfg.fail("rule.alpha", "dual_prop weights its compartments as s̄ = α s⁺ + (1 − α) s⁻, so α must lie in [0, 1]");
  o.beta = cfg.get<double>("rule.beta");
  if (!(std::isfinite(o.beta) && o.beta > 0.0))
    cfg.fail("rule.beta", "dual_prop divides the difference of the two compartments by the nudging strength β, so "
                           "β must be a positive number (e.g. 0.1)");
  const auto inference = cfg.get<std::string>("rule.inference");
  if (inference == "closed_form") o.inference = Inference::ClosedForm;
  else if (inference == "iterative") o.inference = Inference::Iterative;
  else cfg.fail("rule.inference", "expected closed_form or iterative, got '" + inference + "'");
  o.iterations = cfg.get<int64_t>("rule.iterations");
  if (o.iterations < 1) cfg.fail("rule.iterations", "needs at least one pass");
  return o;
}

DualPropagation::DualPropagation(std::unique_ptr<Objective> objective, DualPropOptions options)
    : LearningRule(std::move(objective)), opt_(options) {}

StepStats DualPropagation::train_step(LayeredNet& net, const Tensor& x, const Tensor& y) {
  torch::NoGradGuard no_grad;
  DualStates st = run(net, x, y, true);
  StepStats stats;
  const Tensor labels = y.to(st.output.device(), torch::kLong);
  stats.loss_sum = objective_->loss(st.output, labels).sum().item<double>();
  stats.correct = st.output.argmax(1).eq(labels).sum().item<int64_t>();
  return stats;
}

Tensor DualPropagation::predict(LayeredNet& net, const Tensor& x) {
  torch::NoGradGuard no_grad;
  return net->forward(x);
}

DualStates DualPropagation::infer(LayeredNet& net, const Tensor& x, const Tensor& y) {
  torch::NoGradGuard no_grad;
  return run(net, x, y, false);
}

DualStates DualPropagation::run(LayeredNet& net, const Tensor& x, const Tensor& y, bool accumulate_grads) {
  const LayeredNetImpl& N = *net;
  const LayerMaps maps(N);
  const size_t L = N.num_layers();
  const Tensor& w0 = N.layer(0).weight;
  const Tensor x0 = x.to(w0.device(), w0.scalar_type()).contiguous();
  const Tensor labels = y.to(w0.device(), torch::kLong);
  const int64_t B = x0.size(0);
  const double alpha = opt_.alpha, beta = opt_.beta;
  const Activation* rho = N.rho().name == "identity" ? nullptr : &N.rho();
  const Activation* rho_out = N.activate_output() ? rho : nullptr;
  // Activation quantization (when configured): hidden states are fake-quantized, Q(ρ(·)), in the forward pass and in
  // the dyads' mean states s̄ that feed the layer above; δ = s⁺ − s⁻ stays unquantized (the straight-through
  // estimator of Q), so at α = ½ and β → 0 the rule tends to backprop with STE through Q.
  const auto quantized = [&](const Tensor& t, size_t l) {
    if (!N.state_quantizer() || l + 1 >= L || !N.state_quantizer()->covers(l)) return t;
    Tensor q = t.clone();
    N.quantize_state_(q, l);
    return q;
  };
  const auto input_of = [&](const std::vector<Tensor>& states, size_t l) -> const Tensor& {
    return l == 0 ? x0 : states[l - 1];
  };

  // ---- feedforward pass: z_l (layer l's pre-activation, = u_{l+1} while nothing is nudged), s_{l+1}, switches
  std::vector<Tensor> z(L), s(L), pool(L);  // s[l] = ρ(z[l]) (the output: ρ_out)
  for (size_t l = 0; l < L; ++l) {
    const Layer& layer = N.layer(l);
    z[l] = torch::empty(output_shape(layer, B), x0.options());
    maps.forward_into(l, input_of(s, l), LayerMaps::bias_view(layer), 1.0, z[l], &pool[l]);
    const Activation* f = l + 1 < L ? rho : rho_out;
    s[l] = quantized(f ? f->f(z[l]) : z[l], l);
  }

  DualStates out;
  out.output = s[L - 1];
  out.delta.assign(L, Tensor());
  out.sbar.assign(L, Tensor());
  const double coeff = -1.0 / (beta * double(B));
  auto add_grad = [&](size_t l, const Tensor& delta_above, const Tensor& sbar_in, const Tensor& switches) {
    const Layer& layer = N.layer(l);
    Tensor& gb = grad_buffer(layer.bias);
    maps.param_grad_add(l, delta_above, sbar_in, switches, coeff, grad_buffer(layer.weight), &gb);
  };
  // The output dyad: feedback −β ∇ℓ(a), a = ρ_out(u_L).
  auto output_dyad = [&](const Tensor& u, const Tensor& a) {
    Tensor f = objective_->grad(a, labels).mul_(-beta);
    return dyad(u, f, a, rho_out, alpha);
  };
  // A hidden dyad of layer k (1-based; its state is index k − 1): feedback A_kᵀ δ_{k+1} with layer k's switches.
  auto hidden_dyad = [&](size_t k, const Tensor& u, const Tensor& delta_above, const Tensor& switches,
                         const Tensor& rho_u) {
    Tensor f = torch::zeros_like(u);
    maps.feedback_add(k, delta_above, switches, 1.0, f);
    return dyad(u, f, rho_u, rho, alpha);
  };

  if (opt_.inference == DualPropOptions::Inference::ClosedForm) {
    // ---- one top-down sweep with u_k = z_{k−1}: below layer k nothing has moved yet
    Dyad d = output_dyad(z[L - 1], s[L - 1]);
    out.delta[L - 1] = d.delta, out.sbar[L - 1] = d.sbar;
    for (size_t k = L - 1; k >= 1; --k) {
      d = hidden_dyad(k, z[k - 1], out.delta[k], pool[k], s[k - 1]);
      out.delta[k - 1] = d.delta, out.sbar[k - 1] = quantized(d.sbar, k - 1);
      // Layer k's weights (A_k: s̄_k → u_{k+1}) as soon as δ_{k+1} and s̄_k are known.
      if (accumulate_grads) add_grad(k, out.delta[k], out.sbar[k - 1], pool[k]);
    }
    if (accumulate_grads) add_grad(0, out.delta[0], x0, pool[0]);
    return out;
  }

  // ---- iterative: passes k = 1..L from the feedforward state (s⁺ = s⁻ = s: s̄ = s, δ = 0)
  for (size_t k = 1; k <= L; ++k) out.sbar[k - 1] = s[k - 1], out.delta[k - 1] = torch::zeros_like(s[k - 1]);
  for (int64_t pass = 0; pass < opt_.iterations; ++pass) {
    for (size_t k = 1; k <= L; ++k) {
      const Layer& layer = N.layer(k - 1);
      Tensor u = torch::empty(output_shape(layer, B), x0.options());
      // u_k = A_{k−1}(s̄_{k−1}) + b_{k−1}; records layer k−1's switches at s̄_{k−1}.
      maps.forward_into(k - 1, input_of(out.sbar, k - 1), LayerMaps::bias_view(layer), 1.0, u, &pool[k - 1]);
      Dyad d;
      if (k < L) {
        // δ_{k+1} and layer k's switches are still those of the previous pass.
        d = hidden_dyad(k, u, out.delta[k], pool[k], Tensor());
      } else {
        d = output_dyad(u, rho_out ? rho_out->f(u) : u);
      }
      out.delta[k - 1] = d.delta, out.sbar[k - 1] = quantized(d.sbar, k - 1);
    }
  }
  if (accumulate_grads)
    for (size_t l = 0; l < L; ++l) add_grad(l, out.delta[l], input_of(out.sbar, l), pool[l]);
  return out;
}

void add_dual_rules(Registry<LearningRule>& rules) {
  using V = ValueType;
  ComponentInfo info{"dual_prop",
                     "dual propagation: dyadic neurons, one forward + one backward sweep (Høier et al. 2023; DP⊤ of "
                     "Høier & Zach 2024)",
                     {}};
  auto alpha = component_key("alpha", V::Float, "0.5",
                             "weight α of the s⁺ compartment in s̄ = α s⁺ + (1 − α) s⁻ (0.5: the original symmetric "
                             "method; 0 or 1: asymmetric nudging, stable in the DP⊤ form used here)");
  alpha.min = 0, alpha.max = 1;
  auto beta = component_key("beta", V::Float, "0.1", "nudging strength β (> 0)");
  beta.min = 0, beta.min_exclusive = true;
  auto inference = component_key("inference", V::String, "closed_form",
                                 "closed_form (forward pass + one top-down sweep) or iterative (rule.iterations "
                                 "bottom-up passes of the layer-wise updates from the forward pass)");
  inference.choices = {"closed_form", "iterative"};
  auto iterations = component_key("iterations", V::Int, "10",
                                  "with inference: iterative, the number of passes N (N >= number of layers reaches "
                                  "the closed form exactly for α 0 or 1)");
  iterations.min = 1;
  info.keys = {alpha, beta, inference, iterations};
  rules.add(
      info,
      [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
        auto opt = DualPropOptions::from_config(cfg);
        return std::make_unique<DualPropagation>(objective_for(cfg), opt);
      },
      {kRuleQuantizedStates});
}

}  // namespace bilevel
