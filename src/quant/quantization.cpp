#include "bilevel/quant/quantization.h"

#include "bilevel/kernels/fused_ops.h"
#include "bilevel/optim/fused_adam.h"

#include <cmath>
#include <set>

#include "bilevel/nn/activation.h"
#include "bilevel/kernels/counter_rng.h"
#include "bilevel/quant/weight_solvers.h"
#include "bilevel/registry.h"

namespace bilevel {

using torch::Tensor;

namespace {

QuantizerOptions weight_options(const ExperimentConfig& cfg) {
  QuantizerOptions o;
  o.kind = cfg.get<std::string>("quantization.weights.quantizer");
  o.bits = int(cfg.get<int64_t>("quantization.weights.bits"));
  o.symmetric = cfg.get<bool>("quantization.weights.symmetric");
  o.per_channel = cfg.get<std::string>("quantization.weights.granularity") == "per_channel";
  o.stochastic = cfg.get<std::string>("quantization.weights.rounding") == "stochastic";
  return o;
}

bool weights_quantized(const ExperimentConfig& cfg) {
  return cfg.get<std::string>("quantization.weights.quantizer") != "none";
}

}  // namespace

void validate_quantization(const ExperimentConfig& cfg) {
  if (!cfg.get<bool>("quantization.enabled")) return;
  const std::string rule = cfg.rule.name;
  if (weights_quantized(cfg)) {
    const QuantizerOptions o = weight_options(cfg);
    std::unique_ptr<Quantizer> q;
    try {
      q = make_quantizer(o);
    } catch (const std::invalid_argument& e) {
      cfg.fail("quantization.weights.bits", e.what());
    }
    const std::string solver = cfg.get<std::string>("quantization.weights.solver");
    auto s = make_weight_solver(solver, cfg, "quantization.weights.solver");
    const auto serves = s->quantizers();
    if (!serves.empty() && std::find(serves.begin(), serves.end(), o.kind) == serves.end()) {
      std::string list;
      for (const auto& n : serves) list += (list.empty() ? "" : " or ") + n;
      cfg.fail("quantization.weights.solver",
               "solver '" + solver + "' needs quantization.weights.quantizer: " + list + " (got '" + o.kind + "')" +
                   (solver == "flip" ? "; flip trains binary layers only" : ""));
    }
    if (solver == "lsq" && !o.symmetric)
      cfg.fail("quantization.weights.symmetric", "lsq learns the step of a symmetric grid; set symmetric: true");
    if (!s->uses_latent() && o.stochastic)
      cfg.fail("quantization.weights.rounding", "solver '" + solver + "' keeps no latent weights to round stochastically");
  }
  const std::string act = cfg.get<std::string>("quantization.activations.quantizer");
  if (act != "none") {
    const int64_t bits = cfg.get<int64_t>("quantization.activations.bits");
    if (act == "binary" && bits != 1)
      cfg.fail("quantization.activations.bits", "binary activations take 1 bit (use quantizer: uniform for " +
                                                    std::to_string(bits) + " bits)");
    if (act == "uniform" && bits < 2)
      cfg.fail("quantization.activations.bits", "uniform activations take 2..8 bits (use quantizer: binary for 1 bit)");
    if (!rules().has(rule, kRuleQuantizedStates)) {
      std::string serves;
      for (const auto& r : rules().names_with(kRuleQuantizedStates)) serves += (serves.empty() ? "" : ", ") + r;
      cfg.fail("quantization.activations.quantizer",
               "rule.name: " + rule + " does not train with quantized states (implicit and bptt differentiate ρ "
               "at the fixed point, which a quantized state does not have); activation quantization serves " +
                   serves);
    }
    const std::string solver = cfg.get<std::string>("quantization.activations.solver");
    if (solver == "lsq" && !rules().has(rule, kRuleAutograd))
      cfg.fail("quantization.activations.solver",
               "a learned activation step (lsq) is trained by autograd, so it needs rule.name: backprop (got " +
                   rule + "); use solver: ste (a fixed grid on ρ's range)");
    if (solver == "lsq" && act != "uniform")
      cfg.fail("quantization.activations.solver", "lsq needs quantization.activations.quantizer: uniform");
    if (solver == "ste" && !activation(cfg.model.activation).bounded())
      cfg.fail("quantization.activations.quantizer",
               "a fixed activation grid spans ρ's range, but model.activation: " + cfg.model.activation +
                   " is unbounded; use a bounded ρ (hard_sigmoid, hard_tanh, sigmoid, tanh, ...) or solver: lsq");
  }
}

QuantizationImpl::QuantizationImpl(const ExperimentConfig& cfg, LayeredNet net) : net_(net.get()) {
  validate_quantization(cfg);
  const size_t L = net_->num_layers();
  auto layer_set = [&](const std::string& key, size_t count) {
    std::set<size_t> out;
    for (int64_t l : cfg.get<std::vector<int64_t>>(key)) {
      if (l < 1 || size_t(l) > count)
        cfg.fail(key, "layer " + std::to_string(l) + " does not exist (layers are numbered 1.." +
                          std::to_string(count) + " from the input side)");
      out.insert(size_t(l - 1));
    }
    return out;
  };
  params_.resize(L);
  if (weights_quantized(cfg)) {
    const QuantizerOptions o = weight_options(cfg);
    stochastic_ = o.stochastic;
    quantizer_ = make_quantizer(o);
    solver_ = make_weight_solver(cfg.get<std::string>("quantization.weights.solver"), cfg, "quantization.weights.solver");
    solver_->check_layers(L, cfg);
    learn_scale_ = solver_->learns_scale() || cfg.get<bool>("quantization.weights.learn_scale");
    const auto skip = layer_set("quantization.weights.full_precision_layers", L);
    for (size_t l = 0; l < L; ++l) {
      if (skip.count(l)) continue;
      auto p = std::make_unique<QuantParam>();
      p->layer = l;
      p->weight = net_->layer(l).weight;
      p->stream = 2 * l + 1;
      p->learn_scale = learn_scale_;
      solver_->init(*p, *quantizer_);
      const std::string name = "layer" + std::to_string(l + 1);
      if (solver_->uses_latent()) p->latent = register_parameter(name + "_latent", p->latent);
      else p->latent = register_buffer(name + "_codes", p->latent);
      if (learn_scale_) p->grid.scale = register_parameter(name + "_scale", p->grid.scale);
      else p->grid.scale = register_buffer(name + "_scale", p->grid.scale);
      if (p->grid.zero.defined()) p->grid.zero = register_buffer(name + "_zero", p->grid.zero);
      if (p->momentum.defined()) p->momentum = register_buffer(name + "_momentum", p->momentum);
      params_[l] = std::move(p);
    }
  }
  const std::string act = cfg.get<std::string>("quantization.activations.quantizer");
  if (act != "none") {
    ActivationQuantOptions a;
    a.kind = act;
    a.bits = int(cfg.get<int64_t>("quantization.activations.bits"));
    a.learned = cfg.get<std::string>("quantization.activations.solver") == "lsq";
    a.stochastic = cfg.get<std::string>("quantization.activations.rounding") == "stochastic";
    const Activation& rho = net_->rho();
    a.lo = rho.lo, a.hi = rho.hi;
    a.signed_range = !(rho.name == "relu" || rho.name == "softplus" || (rho.bounded() && rho.lo >= 0));
    a.full_precision = layer_set("quantization.activations.full_precision_layers", L - 1);
    if (a.learned)
      for (size_t l = 0; l + 1 < L; ++l)
        act_steps_.push_back(register_parameter("act" + std::to_string(l + 1) + "_step", torch::zeros({})));
    act_ = std::make_unique<ActivationQuantizer>(a, act_steps_);
    net_->set_state_quantizer(act_.get());
  }
  refresh(QuantClock{uint64_t(cfg.seed), 0, 0, 1, cfg.train.epochs, cfg.optimizer.lr});
}

bool QuantizationImpl::quantized(size_t layer) const { return layer < params_.size() && params_[layer] != nullptr; }
const QuantParam* QuantizationImpl::param(size_t layer) const { return quantized(layer) ? params_[layer].get() : nullptr; }

std::vector<Tensor> QuantizationImpl::optimizer_params(size_t l) const {
  const Layer& layer = net_->layer(l);
  std::vector<Tensor> out;
  if (!quantized(l)) out.push_back(layer.weight);
  else {
    if (solver_->uses_latent()) out.push_back(params_[l]->latent);
    if (learn_scale_) out.push_back(params_[l]->grid.scale);
  }
  out.push_back(layer.bias);
  if (l < act_steps_.size()) out.push_back(act_steps_[l]);
  return out;
}

void QuantizationImpl::begin_batch(const QuantClock& c) {
  torch::NoGradGuard no_grad;
  if (act_) act_->set_stream(c.seed, c.epoch, c.batch);
  for (auto& p : params_) {
    if (!p) continue;
    if (p->weight.grad().defined() && !solver_->clears_weight_grad()) p->weight.mutable_grad().zero_();
    if (stochastic_) {
      const uint64_t key = stream_key(c.seed, c.epoch, c.batch, p->stream);
      p->weight.copy_(solver_->forward(*p, *quantizer_, c, &key));
    } else if (solver_->anneals()) {
      p->weight.copy_(solver_->forward(*p, *quantizer_, c, nullptr));
    }
  }
}

bool QuantizationImpl::fuse_into(FusedAdam* opt) {
  fused_ = false;
  if (!opt || !solver_ || !solver_->fuses_adam_step() || !solver_->uses_latent()) return false;
  if (!is_builtin_quantizer(*quantizer_)) return false;  // the fused loop inlines the built-in grids' codes
  for (auto& p : params_)
    if (p && ((!p->latent.device().is_cpu() && !(p->latent.is_cuda() && kernels::cuda_kernels_built())) ||
              p->latent.scalar_type() != torch::kFloat32))
      return false;  // the fused pass is a kernel (bilevel/kernels/optim_ops.h): CPU, or CUDA in a build with them
  for (auto& p : params_) {
    if (!p) continue;
    QuantParam* param = p.get();
    opt->fuse(param->latent, [this, param](const kernels::AdamElement& a, const Tensor& m, const Tensor& v) {
      if (learn_scale_) param->grid.scale.detach().clamp_min_(1e-8);
      if (!param->weight.grad().defined()) param->weight.mutable_grad() = torch::zeros_like(param->weight);
      const Tensor before = learn_scale_ ? param->scale_before : param->grid.scale.detach();
      solver_->fused_adam_step(*param, *quantizer_, param->weight.grad().detach(), before, a, m, v);
    });
  }
  fused_ = true;
  return true;
}

std::vector<Tensor> QuantizationImpl::latent_gradients(const WeightSolver& solver, const std::vector<Tensor>& g,
                                                       const QuantClock& c) const {
  torch::NoGradGuard no_grad;
  std::vector<Tensor> out(params_.size());
  for (size_t l = 0; l < params_.size() && l < g.size(); ++l) {
    const QuantParam* p = params_[l].get();
    if (!p || !p->latent.defined() || !g[l].defined() || !solver.uses_latent()) continue;
    // Copies, so that whatever the solver writes lands outside the run; no scale gradient, no reused buffer.
    QuantParam probe = *p;
    probe.latent = p->latent.detach().clone();
    probe.weight = p->weight.detach().clone();
    probe.grid.scale = p->grid.scale.detach().clone();
    probe.learn_scale = false;
    probe.grad_cache = Tensor();
    if (p->momentum.defined()) probe.momentum = p->momentum.clone();
    solver.backward(probe, *quantizer_, g[l].detach().clone().view(p->weight.sizes()), c);
    if (probe.latent.grad().defined()) out[l] = probe.latent.grad().detach().clone();
  }
  return out;
}

void QuantizationImpl::after_backward(const QuantClock& c) {
  if (fused_) {  // θ is stepped by the optimizer (fuse_into); what is left is the learned scales' gradient
    if (!learn_scale_) return;
    for (auto& p : params_) {
      if (!p) continue;
      if (!p->weight.grad().defined()) p->weight.mutable_grad() = torch::zeros_like(p->weight);
      p->scale_before = p->grid.scale.detach().clone();
      p->grid.scale.mutable_grad() = WeightSolver::scale_grad(p->weight.grad(), p->weight.detach(), p->grid.scale);
    }
    return;
  }
  for (auto& p : params_) {
    if (!p) continue;
    Tensor g = p->weight.grad().defined() ? p->weight.grad().detach() : torch::zeros_like(p->weight);
    solver_->backward(*p, *quantizer_, g, c);
    if (learn_scale_ && !solver_->writes_scale_grad())
      p->grid.scale.mutable_grad() = WeightSolver::scale_grad(g, p->weight.detach(), p->grid.scale);
  }
}

void QuantizationImpl::after_step(const QuantClock& c) {
  if (fused_) return;  // done inside the optimizer's step
  torch::NoGradGuard no_grad;
  for (auto& p : params_) {
    if (!p) continue;
    if (learn_scale_) p->grid.scale.clamp_min_(1e-8);
    solver_->update(*p, *quantizer_, c);
    if (p->latent.requires_grad() && p->latent.grad().defined()) {  // see QuantParam::grad_cache
      p->grad_cache = p->latent.grad();
      p->latent.mutable_grad().reset();
    }
  }
}

void QuantizationImpl::refresh(const QuantClock& c) {
  torch::NoGradGuard no_grad;
  for (auto& p : params_)
    if (p) p->weight.copy_(solver_->forward(*p, *quantizer_, c, nullptr));
}

std::vector<std::string> QuantizationImpl::columns() const {
  std::vector<std::string> c;
  if (!solver_ || std::none_of(params_.begin(), params_.end(), [](const auto& p) { return p != nullptr; })) return c;
  c = {"quant_flip_ratio", "quant_grid_distance", "quant_saturated"};
  if (!solver_->schedule_name().empty()) c.push_back(solver_->schedule_name());
  return c;
}

void QuantizationImpl::begin_epoch() {
  epoch_codes_.assign(params_.size(), Tensor());
  for (size_t l = 0; l < params_.size(); ++l)
    if (params_[l]) epoch_codes_[l] = solver_->codes(*params_[l], *quantizer_);
}

std::vector<double> QuantizationImpl::epoch_values(const QuantClock& c) const {
  if (columns().empty()) return {};
  double changed = 0, total = 0, distance = 0, saturated = 0;
  const bool uniform = quantizer_->name() == "uniform";
  for (size_t l = 0; l < params_.size(); ++l) {
    const auto& p = params_[l];
    if (!p) continue;
    Tensor codes = solver_->codes(*p, *quantizer_);
    total += double(codes.numel());
    if (l < epoch_codes_.size() && epoch_codes_[l].defined())
      changed += codes.ne(epoch_codes_[l]).sum().item<double>();
    if (!solver_->uses_latent()) continue;
    const Tensor u = WeightSolver::normalised(*p);
    distance += (u - codes).abs().sum().item<double>();
    if (uniform)
      saturated += u.lt(quantizer_->code_min()).logical_or(u.gt(quantizer_->code_max())).sum().item<double>();
    else if (std::isfinite(solver_->saturation()))
      saturated += u.abs().ge(solver_->saturation()).sum().item<double>();
  }
  std::vector<double> v{changed / total, distance / total, saturated / total};
  if (!solver_->schedule_name().empty()) v.push_back(solver_->schedule(c));
  return v;
}

Tensor QuantizationImpl::codes(size_t layer) const {
  TORCH_CHECK(quantized(layer), "layer ", layer + 1, " is not quantized");
  return solver_->codes(*params_[layer], *quantizer_);
}

}  // namespace bilevel
