#include "feedback_alignment.h"

#include <bilevel/registry.h>
#include <bilevel/rules/registry.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace fa {

using bilevel::LayeredNet;
using torch::Tensor;

namespace {

// Uniform entries in [−a, a] with a = √3 · scale / √fan_in (variance scale² / fan_in), from mt19937_64, whose
// output sequence the C++ standard fixes: the same matrices on every platform and LibTorch version.
Tensor draw(std::mt19937_64& gen, int64_t rows, int64_t cols, int64_t fan_in, double scale) {
  Tensor t = torch::empty({rows, cols});
  float* p = t.data_ptr<float>();
  const double a = std::sqrt(3.0) * scale / std::sqrt(double(fan_in));
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(a * (2.0 * double(gen() >> 11) * 0x1.0p-53 - 1.0));
  return t;
}

Tensor& grad_of(const Tensor& p) {
  if (!p.grad().defined()) const_cast<Tensor&>(p).mutable_grad() = torch::zeros_like(p);
  return const_cast<Tensor&>(p).mutable_grad();
}

}  // namespace

FeedbackAlignment::FeedbackAlignment(std::unique_ptr<bilevel::Objective> objective, Kind kind, uint64_t seed,
                                     double scale)
    : LearningRule(std::move(objective)), kind_(kind), seed_(seed), scale_(scale) {}

const std::vector<Tensor>& FeedbackAlignment::feedback(const LayeredNet& net) {
  if (!feedback_.empty()) return feedback_;
  std::mt19937_64 gen(seed_);
  const size_t L = net->num_layers();
  const int64_t classes = net->layer(L - 1).weight.size(0);
  for (size_t l = 0; l < L; ++l) {
    const Tensor& w = net->layer(l).weight;
    if (kind_ == Kind::Fa && l > 0) feedback_.push_back(draw(gen, w.size(0), w.size(1), w.size(1), scale_));
    if (kind_ == Kind::Dfa && l + 1 < L) feedback_.push_back(draw(gen, classes, w.size(0), w.size(0), scale_));
  }
  return feedback_;
}

bilevel::StepStats FeedbackAlignment::train_step(LayeredNet& net, const Tensor& x, const Tensor& y) {
  torch::NoGradGuard no_grad;
  const size_t L = net->num_layers();
  for (size_t l = 0; l < L; ++l)
    if (net->layer(l).kind != bilevel::LayerKind::Linear)
      throw std::invalid_argument(name() + " is implemented for fully connected networks (model.kind: mlp)");
  const auto& fb = feedback(net);
  const auto& rho = net->rho();
  // Forward pass, keeping every layer's input s_{l−1} and pre-activation z_l.
  std::vector<Tensor> s{x.flatten(1)}, z;
  for (size_t l = 0; l < L; ++l) {
    z.push_back(net->apply_layer(l, s.back()));
    if (l + 1 < L) s.push_back(rho.f(z.back()));
  }
  const Tensor out = net->activate_output() ? rho.f(z.back()) : z.back();
  const double B = double(x.size(0));
  Tensor e = objective_->grad(out, y).div_(B);
  if (net->activate_output()) e = e * rho.df(z.back());
  // δ from the top; with the true weights this loop is backprop.
  Tensor delta = e;
  double cos_sum = 0;
  for (size_t l = L; l-- > 0;) {
    const auto& layer = net->layer(l);
    grad_of(layer.weight).add_(delta.t().mm(s[l]));
    grad_of(layer.bias).add_(delta.sum(0));
    if (l == 0) break;
    const Tensor back = kind_ == Kind::Fa ? delta.mm(fb[l - 1]) : e.mm(fb[l - 1]);
    const Tensor true_back = delta.mm(layer.weight);  // what backprop would send (for the alignment diagnostic)
    cos_sum += (back * true_back).sum().item<double>() /
               std::max(1e-30, back.norm().item<double>() * true_back.norm().item<double>());
    delta = back * rho.df(z[l - 1]);
  }
  bilevel::StepStats st;
  st.loss_sum = objective_->loss(out, y).sum().item<double>();
  st.correct = out.argmax(1).eq(y).sum().item<int64_t>();
  if (L > 1) st.diagnostics["feedback_alignment_deg"] = std::acos(std::clamp(cos_sum / double(L - 1), -1.0, 1.0)) * 180.0 / M_PI;
  return st;
}

Tensor FeedbackAlignment::predict(LayeredNet& net, const Tensor& x) { return net->forward(x); }

void register_rules() {
  using bilevel::ValueType;
  auto seed = bilevel::component_key("feedback_seed", ValueType::Int, "1",
                                     "seed of the fixed random feedback matrices (regenerated from it on resume)");
  seed.min = 0;
  auto scale = bilevel::component_key("feedback_scale", ValueType::Float, "1.0",
                                      "the feedback entries' standard deviation times √fan_in");
  scale.min = 0, scale.min_exclusive = true;
  for (auto kind : {FeedbackAlignment::Kind::Fa, FeedbackAlignment::Kind::Dfa}) {
    const bool fa = kind == FeedbackAlignment::Kind::Fa;
    bilevel::rules().add(
        {fa ? "fa" : "dfa",
         fa ? "feedback alignment: fixed random B in place of Wᵀ (Lillicrap et al. 2016)"
            : "direct feedback alignment: the output error to every layer through fixed random D (Nøkland 2016)",
         {seed, scale}},
        [kind](const bilevel::ExperimentConfig& cfg) -> std::unique_ptr<bilevel::LearningRule> {
          if (cfg.model.kind != "mlp") cfg.fail("model.kind", cfg.rule.name + " needs model.kind: mlp");
          return std::make_unique<FeedbackAlignment>(bilevel::objective_for(cfg), kind,
                                                     uint64_t(cfg.get<int64_t>("rule.feedback_seed")),
                                                     cfg.get<double>("rule.feedback_scale"));
        });
  }
}

}  // namespace fa
