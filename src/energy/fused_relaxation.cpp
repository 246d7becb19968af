#include "bilevel/energy/fused_relaxation.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

#include "bilevel/kernels/cpu/dense_relax.h"

namespace bilevel {

using torch::Tensor;

namespace {

constexpr int64_t kAutoCouplingLimit = 32 * 1024;  // floats of W_1..W_{S−1} (+ W_r) for `auto`

bool is_cpu_f32(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous();
}

cpu::Act act_of(const Neuron& n, float& lo, float& hi) {
  switch (n.kernel()) {
    case Neuron::Kernel::Identity: return cpu::Act::Identity;
    case Neuron::Kernel::Clamp: lo = float(n.lo()), hi = float(n.hi()); return cpu::Act::Clamp;
    case Neuron::Kernel::Sigmoid: return cpu::Act::Sigmoid;
    case Neuron::Kernel::Tanh: return cpu::Act::Tanh;
    case Neuron::Kernel::Softplus: break;
  }
  throw std::logic_error("fused relaxation: no kernel for activation " + n.name());
}

int64_t coupling_floats(const LayeredEnergy& energy) {
  int64_t n = 0;
  for (int64_t l = 1; l < energy.num_states(); ++l) n += energy.layer(l).weight.numel();
  if (!energy.output_is_state()) n += energy.layer(energy.num_layers() - 1).weight.numel();
  return n;
}

}  // namespace

RelaxKernel relax_kernel_from_name(const std::string& name) {
  if (name == "auto") return RelaxKernel::Auto;
  if (name == "fused") return RelaxKernel::Fused;
  if (name == "generic") return RelaxKernel::Generic;
  throw std::invalid_argument("unknown relaxation kernel '" + name + "' (expected auto, fused or generic)");
}

bool fused_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge) {
  if (energy.neuron().kernel() == Neuron::Kernel::Softplus || energy.quantizes_states()) return false;
  if (!is_cpu_f32(batch.drive1)) return false;
  for (size_t l = 0; l < energy.num_layers(); ++l) {
    const Layer& L = energy.layer(l);
    if (L.kind != LayerKind::Linear || !is_cpu_f32(L.weight) || !is_cpu_f32(L.bias)) return false;
  }
  if (nudge.active() && !is_cpu_f32(batch.onehot)) return false;
  if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0 && !energy.output_is_state() &&
      energy.objective().name() != "cross_entropy")
    return false;
  return true;
}

bool use_fused_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                          const Nudge& nudge) {
  if (choice == RelaxKernel::Generic || !fused_relaxation_supported(energy, batch, nudge)) return false;
  return choice == RelaxKernel::Fused || coupling_floats(energy) <= kAutoCouplingLimit;
}

SolveStats fused_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                            const Nudge& nudge, int64_t max_steps, double tol) {
  torch::NoGradGuard no_grad;
  const int64_t S = energy.num_states();
  const Neuron& neuron = energy.neuron();
  cpu::DenseRelaxProblem p;
  p.batch = batch.size;
  p.drive1 = batch.drive1.data_ptr<float>();
  p.scale = float(neuron.scale());
  p.act = act_of(neuron, p.lo, p.hi);
  p.max_steps = max_steps;
  p.tol = float(tol);
  p.vbias.assign(size_t(S), nullptr);
  std::vector<Tensor> keep;  // contiguous copies that must outlive the kernel
  for (int64_t k = 1; k <= S; ++k) {
    p.width.push_back(energy.layer(size_t(k - 1)).weight.size(0));
    if (k >= 2) {
      keep.push_back(batch.vbias[size_t(k - 1)].contiguous());
      p.vbias[size_t(k - 1)] = keep.back().data_ptr<float>();
    }
    if (k < S) p.weight.push_back(energy.layer(size_t(k)).weight.data_ptr<float>());
  }
  std::vector<float*> state(static_cast<size_t>(S)), scratch(static_cast<size_t>(S));
  for (int64_t k = 0; k < S; ++k) {
    if (!st.s[k].is_contiguous() || !st.scratch[k].is_contiguous())
      throw std::logic_error("fused relaxation: state buffers must be contiguous");
    state[size_t(k)] = st.s[k].data_ptr<float>();
    scratch[size_t(k)] = st.scratch[k].data_ptr<float>();
  }
  if (nudge.kind == Nudge::Kind::Clamp) {
    st.s[S - 1].copy_(batch.onehot);
    st.scratch[S - 1].copy_(batch.onehot);
    p.nudge = cpu::OutputNudge::Clamp;
  } else if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0) {
    p.nudge_scale = float(neuron.scale() * nudge.beta);
    if (energy.output_is_state()) {
      p.nudge = cpu::OutputNudge::StateMse;
    } else {
      const Layer& R = energy.layer(energy.num_layers() - 1);
      p.nudge = cpu::OutputNudge::ReadoutCrossEntropy;
      p.readout = R.weight.data_ptr<float>();
      p.readout_bias = R.bias.data_ptr<float>();
    }
  }
  if (p.nudge != cpu::OutputNudge::None) {
    p.onehot = batch.onehot.data_ptr<float>();
    p.classes = batch.onehot.size(1);
  }
  SolveStats stats;
  std::mutex merge;
  // Rows are independent, so blocks of rows run on LibTorch's threads with no synchronisation between sweeps.
  at::parallel_for(0, p.batch, 8, [&](int64_t begin, int64_t end) {
    const cpu::RelaxStats r = cpu::dense_relax_rows(p, state.data(), scratch.data(), begin, end);
    std::lock_guard<std::mutex> lock(merge);
    stats.residual = std::max(stats.residual, double(r.residual));
    stats.steps = std::max(stats.steps, r.steps);
  });
  return stats;
}

}  // namespace bilevel
