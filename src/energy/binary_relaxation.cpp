#include "bilevel/energy/binary_relaxation.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "bilevel/energy/relax_buffers.h"
#include "bilevel/kernels/cpu/binary_relax.h"

namespace bilevel {

using torch::Tensor;

namespace {

constexpr int64_t kBinaryRowsPerTake = 2;  // rows a thread takes from the shared counter at a time

bool is_cpu_float32(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous();
}

// W_1 as sign bits, row sums and per-row magnitudes, when every row is ±c_o with c_o > 0 (binary weights).
struct PackedSigns {
  std::vector<uint64_t> bits;  // [rows, words]
  std::vector<int32_t> row_sum;
  std::vector<float> row_scale;  // a·c_o
};

bool pack_binary_rows(const Tensor& W, float a, PackedSigns* out) {
  const int64_t rows = W.size(0), n = W.size(1), words = cpu::binary_relax_words(n);
  const float* w = W.data_ptr<float>();
  if (out) {
    out->bits.assign(size_t(rows * words), 0);
    out->row_sum.assign(size_t(rows), 0);
    out->row_scale.assign(size_t(rows), 0.f);
  }
  for (int64_t o = 0; o < rows; ++o) {
    const float* r = w + o * n;
    const float c = std::fabs(r[0]);
    if (!(c > 0.f) || !std::isfinite(c)) return false;
    int32_t sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (std::fabs(r[j]) != c) return false;
      const bool plus = r[j] > 0.f;
      sum += plus ? 1 : -1;
      if (out && plus) out->bits[size_t(o * words + j / 64)] |= uint64_t{1} << (j % 64);
    }
    if (out) out->row_sum[size_t(o)] = sum, out->row_scale[size_t(o)] = a * c;
  }
  return true;
}

}  // namespace

bool binary_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge) {
  if (energy.num_states() != 2 || energy.num_layers() != 2 || !energy.output_is_state()) return false;
  if (energy.neuron().kernel() == Neuron::Kernel::Softplus) return false;
  float level = 0.f, step = 0.f;
  if (!energy.binary_state_levels(1, level, step) || !(step > 0.f) || energy.quantizes_state(2)) return false;
  if (!is_cpu_float32(batch.drive1)) return false;
  for (size_t l = 0; l < 2; ++l) {
    const Layer& L = energy.layer(l);
    if (L.kind != LayerKind::Linear || !is_cpu_float32(L.weight) || !is_cpu_float32(L.bias)) return false;
  }
  if (nudge.active() && !is_cpu_float32(batch.onehot)) return false;
  return pack_binary_rows(energy.layer(1).weight, 1.f, nullptr);
}

bool use_binary_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                           const Nudge& nudge) {
  return (choice == RelaxKernel::Auto || choice == RelaxKernel::Fused) &&
         binary_relaxation_supported(energy, batch, nudge);
}

SolveStats binary_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                             const Nudge& nudge, int64_t max_steps, double tol, SweepSchedule schedule) {
  torch::NoGradGuard no_grad;
  check_relax_buffers(energy, batch, st);
  st.forget_products();  // its kernels rewrite the states through raw pointers, unseen by the version counter
  const Neuron& neuron = energy.neuron();
  const float a = float(neuron.scale());
  cpu::BinaryRelaxProblem p;
  p.batch = batch.size;
  p.hidden = energy.layer(0).weight.size(0);
  p.outputs = energy.layer(1).weight.size(0);
  p.drive1 = batch.drive1.data_ptr<float>();
  const Tensor& W = energy.layer(1).weight;
  PackedSigns signs;
  if (!pack_binary_rows(W, a, &signs))
    throw std::logic_error("binary relaxation: W_1 is not binary (rows of ±c); check binary_relaxation_supported");
  p.weight = W.data_ptr<float>();
  p.weight_bits = signs.bits.data();
  p.row_sum = signs.row_sum.data();
  p.row_scale = signs.row_scale.data();
  const Tensor vbias2 = batch.vbias[1].reshape({-1}).contiguous();
  if (vbias2.numel() != p.outputs) throw std::logic_error("binary relaxation: output bias of the wrong size");
  p.vbias2 = vbias2.data_ptr<float>();
  p.scale = a;
  p.shift = float(neuron.shift());
  p.schedule = schedule == SweepSchedule::Jacobi ? cpu::BinarySchedule::Jacobi : cpu::BinarySchedule::OutputFirst;
  p.act = relax_activation(neuron, p.lo, p.hi);
  if (!energy.binary_state_levels(1, p.level, p.step))
    throw std::logic_error("binary relaxation: the hidden states are not on a 1-bit grid");
  p.threshold = cpu::binary_state_threshold(p);
  p.max_steps = max_steps;
  p.tol = float(tol);
  if (nudge.kind == Nudge::Kind::Clamp) {
    st.s[1].copy_(batch.onehot);
    p.nudge = cpu::OutputNudge::Clamp;
  } else if (nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0) {
    p.nudge = cpu::OutputNudge::StateMse;
    p.nudge_scale = float(neuron.scale() * nudge.beta);
    p.beta = float(nudge.beta);
    if (schedule != SweepSchedule::Jacobi && 1.0 + nudge.beta * neuron.max_slope() <= 0.0)
      throw std::invalid_argument("nudging strength β = " + std::to_string(nudge.beta) +
                                  " makes the output layer's energy non-convex for activation " + neuron.name());
  }
  if (p.nudge != cpu::OutputNudge::None) p.onehot = batch.onehot.data_ptr<float>();
  float* s1 = st.s[0].data_ptr<float>();
  float* s2 = st.s[1].data_ptr<float>();
  SolveStats stats;
  stats.row_steps = torch::zeros({p.batch}, torch::kLong);
  p.row_steps = stats.row_steps.data_ptr<int64_t>();
  stats.at_limit = 0;
  std::mutex merge;
  std::exception_ptr error;
  // Rows are independent: each thread takes the next few rows from a shared counter (rows stop at different sweeps).
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (p.batch + kBinaryRowsPerTake - 1) / kBinaryRowsPerTake);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::max<int64_t>(threads, 1), 1, [&](int64_t, int64_t) {
    cpu::RelaxStats mine;
    try {
      for (int64_t begin; (begin = next.fetch_add(kBinaryRowsPerTake)) < p.batch;) {
        const cpu::RelaxStats r = cpu::binary_relax_rows(p, s1, s2, begin, std::min(p.batch, begin + kBinaryRowsPerTake));
        mine.residual = (r.residual != r.residual || mine.residual != mine.residual) ? NAN
                                                                                     : std::max(mine.residual, r.residual);
        mine.steps = std::max(mine.steps, r.steps);
        mine.at_limit += r.at_limit;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(merge);
      if (!error) error = std::current_exception();
      return;
    }
    std::lock_guard<std::mutex> lock(merge);
    stats.residual = (mine.residual != mine.residual || stats.residual != stats.residual)
                         ? NAN
                         : std::max(stats.residual, double(mine.residual));
    stats.steps = std::max(stats.steps, mine.steps);
    stats.at_limit += mine.at_limit;
  });
  if (error) std::rethrow_exception(error);
  return stats;
}

}  // namespace bilevel
