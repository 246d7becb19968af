// Learned step size quantization (Esser, McKinstry, Bablani, Appuswamy & Modha, ICLR 2020, "Learned step size
// quantization"), symmetric uniform k-bit grids:
//   w = s · round(clip(θ/s, −Q_N, Q_P)),  Q_N = 2^{k−1}, Q_P = 2^{k−1} − 1
//   ∂ℓ/∂θ = ∂ℓ/∂w · 1[−Q_N ≤ θ/s ≤ Q_P]
//   ∂ℓ/∂s = g_s · Σ ∂ℓ/∂w · (round(θ/s) − θ/s inside; −Q_N or Q_P outside),   g_s = 1/√(N·Q_P)
// with N the number of weights a step serves (the tensor, or one output channel). Initial step 2·mean|θ|/√Q_P.
// The step s is a parameter the optimizer steps with the layer's learning rate.
#include <cmath>

#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/weight_solvers.h"

namespace bilevel {

using torch::Tensor;

namespace {

class LsqSolver final : public WeightSolver {
 public:
  std::string name() const override { return "lsq"; }
  bool learns_scale() const override { return true; }
  std::vector<std::string> quantizers() const override { return {"uniform"}; }

  void backward(QuantParam& p, const Quantizer& q, const Tensor& g, const QuantClock&) const override {
    const float qn = -q.code_min(), qp = q.code_max();
    Tensor u = normalised(p).contiguous();
    Tensor gc = g.contiguous();
    Tensor gv = torch::empty_like(u), gs = torch::empty_like(u);
    kernels::lsq_grads_out(gc, u, qn, qp, gv, gs);
    p.latent.mutable_grad() = gv;
    const int64_t channels = p.grid.scale.numel();
    const double n = double(u.numel()) / double(channels);
    p.grid.scale.mutable_grad() = Quantizer::channel_sum(gs, channels) / std::sqrt(n * qp);
  }
};

}  // namespace

std::unique_ptr<WeightSolver> make_lsq_solver(const ExperimentConfig&) { return std::make_unique<LsqSolver>(); }

}  // namespace bilevel
