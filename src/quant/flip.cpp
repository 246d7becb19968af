// Latent-free binary weights (Bop: Helwegen et al., NeurIPS 2019, "Latent weights do not exist: rethinking binarized
// neural network optimization"; for equilibrium propagation: Laydevant, Ernoult, Querlioz & Grollier, CVPR-W 2021,
// "Training dynamical binary neural networks with equilibrium propagation"). The weights are w = s·q, q ∈ {−1, +1},
// with no latent variable. Given the learning rule's gradient estimate G = ∂ℓ/∂w (EP's contrastive estimate, dual
// propagation's, or backprop's), each step
//   m ← (1 − γ) m + γ G                      (an exponential moving average of the gradient)
//   q ← −q  where  m·q > τ                   (the descent direction −m opposes q's sign by more than τ)
// i.e. Bop's flip condition "−sign(W)·m > τ" (Helwegen et al. 2019) with m taken as the update direction −m. The scale s (per layer, or per output
// channel) is fixed at mean|W_init|, or learned (quantization.weights.learn_scale) with ∂ℓ/∂s = Σ G·q.
// τ may differ per layer (quantization.flip.layer_taus), as in Laydevant et al.'s code: with binary neurons the
// input layer's estimate is sparse and large (a flipped hidden bit contributes x/(βB)), the output layer's dense.
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/weight_solvers.h"
#include "bilevel/util/error.h"

#include <string>
#include <utility>
#include <vector>

namespace bilevel {

using torch::Tensor;

namespace {

class FlipSolver final : public WeightSolver {
 public:
  FlipSolver(double gamma, double tau, std::vector<double> layer_taus)
      : gamma_(gamma), tau_(tau), layer_taus_(std::move(layer_taus)) {}
  std::string name() const override { return "flip"; }
  bool uses_latent() const override { return false; }
  void check_layers(size_t layers, const ExperimentConfig& cfg) const override {
    if (!layer_taus_.empty() && layer_taus_.size() != layers)
      cfg.fail("quantization.flip.layer_taus", "has " + std::to_string(layer_taus_.size()) +
                                                   " entries but the model has " + std::to_string(layers) +
                                                   " layers (one threshold per layer, input side first)");
  }
  std::vector<std::string> quantizers() const override { return {"binary"}; }

  void init(QuantParam& p, const Quantizer& q) const override {
    tau(p.layer);  // a layer without a threshold fails here, while the run is set up, not at its first step
    torch::NoGradGuard no_grad;
    p.grid = q.fit(p.weight);
    p.momentum = torch::zeros_like(p.weight);
    p.latent = q.codes(p.weight, p.grid);  // the codes q ∈ {−1, +1} (a buffer, not stepped by the optimizer)
  }
  Tensor forward(const QuantParam& p, const Quantizer& q, const QuantClock&, const uint64_t*) const override {
    return q.dequantize(p.latent.detach(), p.grid);
  }
  void backward(QuantParam& p, const Quantizer&, const Tensor& g, const QuantClock&) const override {
    torch::NoGradGuard no_grad;
    p.momentum.mul_(1.0 - gamma_).add_(g, gamma_);
    Tensor m = p.momentum.contiguous();
    Tensor codes = p.latent.contiguous();
    kernels::flip_codes_(codes, m, tau(p.layer));
    if (!codes.is_same(p.latent)) p.latent.copy_(codes);
  }
  Tensor codes(const QuantParam& p, const Quantizer&) const override { return p.latent.detach().clone(); }

 private:
  double tau(size_t layer) const {
    if (layer_taus_.empty()) return tau_;
    if (layer >= layer_taus_.size())
      throw UserError("quantization.flip.layer_taus has " + std::to_string(layer_taus_.size()) +
                                  " entries; layer " + std::to_string(layer + 1) + " has none");
    return layer_taus_[layer];
  }
  double gamma_, tau_;
  std::vector<double> layer_taus_;
};

}  // namespace

std::unique_ptr<WeightSolver> make_flip_solver(const ExperimentConfig& cfg) {
  return std::make_unique<FlipSolver>(cfg.get<double>("quantization.flip.gamma"),
                                      cfg.get<double>("quantization.flip.tau"),
                                      cfg.get_or<std::vector<double>>("quantization.flip.layer_taus", {}));
}

}  // namespace bilevel
