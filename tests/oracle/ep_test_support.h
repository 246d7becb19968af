// Helpers shared by the energy-based tests: tiny float64 LayeredNets, copies into the Eigen oracle, gradient
// read-out, rule construction without a config file.
#pragma once

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "bilevel/rules/energy_rule.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/rules/bptt.h"
#include "bilevel/rules/chl.h"
#include "bilevel/rules/ep.h"
#include "bilevel/rules/implicit.h"
#include "oracle/ep_oracle.h"

namespace ep_test {

using bilevel::LayeredNet;

// An mlp LayeredNet in float64: input of `in` features (shape {1, 1, in}), hidden widths, classes outputs.
inline LayeredNet make_mlp(int64_t in, std::vector<int64_t> hidden, int64_t classes, const std::string& activation,
                           const std::string& loss, double gain = 1.0, uint64_t seed = 1) {
  torch::manual_seed(seed);
  bilevel::ModelConfig m;
  m.kind = "mlp";
  m.activation = activation;
  m.hidden = std::move(hidden);
  m.init = "default";
  m.init_gain = gain;
  LayeredNet net(m, std::vector<int64_t>{1, 1, in}, classes, loss == "mse");
  net->to(torch::kFloat64);
  return net;
}

// A small conv LayeredNet in float64 (sizes deliberately not multiples of anything).
inline LayeredNet make_conv(const std::string& activation, const std::string& loss, double gain = 1.0,
                            uint64_t seed = 1, std::vector<int64_t> channels = {3}, int64_t image = 9,
                            int64_t pool = 2, const std::string& pooling = "max") {
  torch::manual_seed(seed);
  bilevel::ModelConfig m;
  m.kind = "conv";
  m.activation = activation;
  m.channels = std::move(channels);
  m.hidden = {5};
  m.kernel_size = 3;
  m.padding = 1;
  m.pool = pool;
  m.pooling = pooling;
  m.init = "default";
  m.init_gain = gain;
  LayeredNet net(m, std::vector<int64_t>{2, image, image}, 3, loss == "mse");
  net->to(torch::kFloat64);
  return net;
}

// A random start inside the activation's range (states in [0.1, 0.9]), with scratch buffers full of NaN.
inline bilevel::EnergyState random_start(const bilevel::LayeredEnergy& energy, const bilevel::EnergyBatch& batch,
                                         uint64_t seed) {
  bilevel::EnergyState st;
  energy.init_state(batch, st);
  torch::manual_seed(seed);
  for (size_t k = 0; k < st.s.size(); ++k) {
    st.s[k].copy_(torch::rand_like(st.s[k]) * 0.8 + 0.1);
    st.scratch[k].fill_(std::numeric_limits<double>::quiet_NaN());
  }
  return st;
}

// The largest difference between two states' units, over every layer.
inline double max_state_diff(const bilevel::EnergyState& a, const bilevel::EnergyState& b) {
  double d = 0;
  for (size_t k = 0; k < a.s.size(); ++k) d = std::max(d, bilevel::max_abs_diff(a.s[k], b.s[k]));
  return d;
}

inline void zero_grads(LayeredNet& net) {
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
}

// The parameters' grads flattened into one vector (zeros for undefined grads).
inline torch::Tensor flat_grads(LayeredNet& net) {
  std::vector<torch::Tensor> parts;
  for (auto& p : net->parameters())
    parts.push_back(p.grad().defined() ? p.grad().flatten() : torch::zeros({p.numel()}, p.options()));
  return torch::cat(parts);
}

inline torch::Tensor gradient_of(bilevel::LearningRule& rule, LayeredNet& net, const torch::Tensor& x,
                                 const torch::Tensor& y, bilevel::StepStats* stats = nullptr) {
  zero_grads(net);
  auto s = rule.train_step(net, x, y);
  if (stats) *stats = s.resolve();
  return flat_grads(net).clone();
}

inline double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// The oracle's network from a LayeredNet with tanh or sigmoid4.
inline ep_oracle::Network to_oracle(LayeredNet& net, const std::string& loss) {
  ep_oracle::Network o;
  o.rho = net->rho().name == "tanh" ? ep_oracle::Rho::Tanh : ep_oracle::Rho::Sigmoid4;
  o.loss = loss == "mse" ? ep_oracle::Loss::SquaredError : ep_oracle::Loss::CrossEntropy;
  for (size_t l = 0; l < net->num_layers(); ++l) {
    auto W = net->layer(l).weight.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    auto b = net->layer(l).bias.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    Eigen::MatrixXd Wm(W.size(0), W.size(1));
    for (int64_t i = 0; i < W.size(0); ++i)
      for (int64_t j = 0; j < W.size(1); ++j) Wm(i, j) = W[i][j].item<double>();
    Eigen::VectorXd bv(b.size(0));
    for (int64_t i = 0; i < b.size(0); ++i) bv[i] = b[i].item<double>();
    o.W.push_back(Wm);
    o.b.push_back(bv);
  }
  return o;
}

inline Eigen::MatrixXd to_eigen(const torch::Tensor& x) {
  auto t = x.to(torch::kCPU, torch::kFloat64).reshape({x.size(0), -1}).contiguous();
  Eigen::MatrixXd m(t.size(0), t.size(1));
  for (int64_t i = 0; i < t.size(0); ++i)
    for (int64_t j = 0; j < t.size(1); ++j) m(i, j) = t[i][j].item<double>();
  return m;
}

inline std::vector<int> to_labels(const torch::Tensor& y) {
  std::vector<int> out;
  for (int64_t i = 0; i < y.size(0); ++i) out.push_back(int(y[i].item<int64_t>()));
  return out;
}

// The oracle gradient in LayeredNet parameter order (weight, bias per layer).
inline torch::Tensor flat(const ep_oracle::Gradient& g) {
  std::vector<double> v;
  for (size_t l = 0; l < g.dW.size(); ++l) {
    for (int i = 0; i < g.dW[l].rows(); ++i)
      for (int j = 0; j < g.dW[l].cols(); ++j) v.push_back(g.dW[l](i, j));
    for (int i = 0; i < g.db[l].size(); ++i) v.push_back(g.db[l][i]);
  }
  return torch::tensor(v, torch::kFloat64);
}

// solver: fixed_point, layerwise, or layerwise_top_down (the layer-wise solver with solver.order: top_down).
inline bilevel::EnergyRuleOptions converged_options(const std::string& solver = "fixed_point") {
  bilevel::EnergyRuleOptions o;
  o.solver = solver;
  if (solver == "layerwise_top_down") {
    o.solver = "layerwise";
    o.solver_instance = bilevel::make_solver("layerwise", "auto", "top_down");
  }
  o.free_steps = 5000;
  o.nudged_steps = 5000;
  o.tol = 1e-15;
  o.implicit_steps = 500;
  o.implicit_tol = 1e-14;
  return o;
}

inline std::unique_ptr<bilevel::EquilibriumPropagation> make_ep(const std::string& loss,
                                                                bilevel::EnergyRuleOptions o, bool symmetric) {
  using E = bilevel::EquilibriumPropagation::Estimator;
  return std::make_unique<bilevel::EquilibriumPropagation>(bilevel::make_objective(loss), o,
                                                           symmetric ? E::Symmetric : E::OneSided);
}

}  // namespace ep_test
