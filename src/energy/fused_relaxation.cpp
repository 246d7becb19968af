#include "bilevel/energy/fused_relaxation.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "bilevel/energy/relax_buffers.h"
#include "bilevel/kernels/config.h"
#include "bilevel/kernels/cpu/dense_relax.h"
#include "bilevel/kernels/dense_relax_args.h"

#if BILEVEL_WITH_CUDA
#include "../kernels/cuda_entries.h"
#endif

namespace bilevel {

using torch::Tensor;

namespace {

constexpr int64_t kRowsPerTake = 2;                // rows a thread takes from the shared counter at a time
constexpr int64_t kAutoCouplingLimit = 32 * 1024;  // floats of W_1..W_{S−1} (+ W_r) for `auto`

// Every tensor of a fused relaxation: float32, contiguous, on the batch's device.
bool is_f32_on(const Tensor& t, const torch::Device& device) {
  return t.defined() && t.device() == device && t.scalar_type() == torch::kFloat && t.is_contiguous();
}


int64_t coupling_floats(const LayeredEnergy& energy) {
  int64_t n = 0;
  for (int64_t l = 1; l < energy.num_states(); ++l) n += energy.layer(l).weight.numel();
  if (!energy.output_is_state()) n += energy.layer(energy.num_layers() - 1).weight.numel();
  return n;
}

}  // namespace

cpu::Act relax_activation(const Neuron& n, float& lo, float& hi) {
  switch (n.kernel()) {
    case Neuron::Kernel::Identity: return cpu::Act::Identity;
    case Neuron::Kernel::Clamp: lo = float(n.lo()), hi = float(n.hi()); return cpu::Act::Clamp;
    case Neuron::Kernel::Sigmoid: return cpu::Act::Sigmoid;
    case Neuron::Kernel::Tanh: return cpu::Act::Tanh;
    case Neuron::Kernel::Softplus: break;
  }
  throw std::logic_error("fused relaxation: no kernel for activation " + n.name());
}

RelaxKernel relax_kernel_from_name(const std::string& name) {
  if (name == "auto") return RelaxKernel::Auto;
  if (name == "fused") return RelaxKernel::Fused;
  if (name == "compact") return RelaxKernel::Compact;
  if (name == "generic") return RelaxKernel::Generic;
  throw std::invalid_argument("unknown relaxation kernel '" + name + "' (expected auto, fused, compact or generic)");
}

bool fused_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge) {
  if (energy.neuron().kernel() == Neuron::Kernel::Softplus || energy.quantizes_states()) return false;
  if (!batch.drive1.defined()) return false;
  const torch::Device device = batch.drive1.device();
  // The CPU kernel, or its CUDA twin (src/kernels/cuda/dense_relax.cu) in a CUDA build, within its fixed limits.
  const bool cuda = device.is_cuda();
  if (cuda ? !BILEVEL_WITH_CUDA || energy.num_states() > kernels::kMaxRelaxStates : !device.is_cpu()) return false;
  if (!is_f32_on(batch.drive1, device)) return false;
  for (size_t l = 0; l < energy.num_layers(); ++l) {
    const Layer& L = energy.layer(l);
    if (L.kind != LayerKind::Linear || !is_f32_on(L.weight, device) || !is_f32_on(L.bias, device)) return false;
  }
  if (nudge.active() && !is_f32_on(batch.onehot, device)) return false;
  if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0 && !energy.output_is_state() &&
      (energy.objective().name() != "cross_entropy" || (cuda && batch.onehot.size(1) > kernels::kMaxRelaxClasses)))
    return false;
  return true;
}

bool use_fused_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                          const Nudge& nudge) {
  if (choice == RelaxKernel::Generic || choice == RelaxKernel::Compact ||
      !fused_relaxation_supported(energy, batch, nudge))
    return false;
  return choice == RelaxKernel::Fused || coupling_floats(energy) <= kAutoCouplingLimit;
}

bool use_compact_relaxation(RelaxKernel choice, const EnergyBatch& batch, double tol, int64_t max_steps) {
  if (choice == RelaxKernel::Compact) return true;
  if (choice != RelaxKernel::Auto) return false;
  if (tol > 0.0) return true;
  return max_steps > kCompactMinSteps && !(batch.drive1.defined() && batch.drive1.is_cuda());
}

SolveStats fused_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                            const Nudge& nudge, int64_t max_steps, double tol) {
  torch::NoGradGuard no_grad;
  check_relax_buffers(energy, batch, st);  // device, dtype, shape, contiguity: before any pointer is taken
  st.forget_products();  // its kernels rewrite the states through raw pointers, unseen by the version counter
  const int64_t S = energy.num_states();
  const Neuron& neuron = energy.neuron();
  cpu::DenseRelaxProblem p;
  p.batch = batch.size;
  p.drive1 = batch.drive1.data_ptr<float>();
  p.scale = float(neuron.scale());
  p.act = relax_activation(neuron, p.lo, p.hi);
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
  stats.row_steps = torch::zeros({p.batch}, torch::kLong);
  p.row_steps = stats.row_steps.data_ptr<int64_t>();
  if (batch.drive1.is_cuda()) {
    // The CUDA twin: every example through all sweeps in one kernel launch (the pointers above are device ones).
#if BILEVEL_WITH_CUDA
    const cpu::RelaxStats r = kernels::cuda::dense_relax(p, state.data(), scratch.data(), batch.drive1.device());
    stats.residual = double(r.residual);
    stats.steps = r.steps;
    stats.at_limit = r.at_limit;
    return stats;
#else
    throw std::logic_error("fused relaxation: this build has no CUDA kernels");
#endif
  }
  stats.at_limit = 0;
  std::mutex merge;
  // Rows are independent, so they run on LibTorch's threads with no synchronisation between sweeps. Rows stop at
  // different sweeps (early stopping), so a fixed half of the batch per thread leaves one thread waiting for the
  // other: each thread instead takes the next few rows from a shared counter until none are left.
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (p.batch + kRowsPerTake - 1) / kRowsPerTake);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::max<int64_t>(threads, 1), 1, [&](int64_t, int64_t) {
    cpu::RelaxStats mine;
    for (int64_t begin; (begin = next.fetch_add(kRowsPerTake)) < p.batch;) {
      const cpu::RelaxStats r =
          cpu::dense_relax_rows(p, state.data(), scratch.data(), begin, std::min(p.batch, begin + kRowsPerTake));
      mine.residual = std::max(mine.residual, r.residual);
      mine.steps = std::max(mine.steps, r.steps);
      mine.at_limit += r.at_limit;
    }
    std::lock_guard<std::mutex> lock(merge);
    stats.residual = std::max(stats.residual, double(mine.residual));
    stats.steps = std::max(stats.steps, mine.steps);
    stats.at_limit += mine.at_limit;
  });
  return stats;
}

}  // namespace bilevel
