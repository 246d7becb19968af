#include "bilevel/energy/compact_relaxation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "bilevel/kernels/fused_ops.h"

namespace bilevel {

using torch::Tensor;

namespace {

// change[r] ← max(change[r], max |out[r] − old[r]|), and likewise change_older against older when it is defined.
void fold_changes(const Tensor& out, const Tensor& old, const Tensor& older, Tensor& change, Tensor& change_older) {
  change.copy_(at::maximum(change, (out - old).abs_().flatten(1).amax(1)));
  if (older.defined()) change_older.copy_(at::maximum(change_older, (out - older).abs_().flatten(1).amax(1)));
}

// out ← Q_k(h(out)) in place, change[r] ← max(change[r], max |out[r] − old[r]|) and, with `older` defined,
// change_older[r] ← max(change_older[r], max |out[r] − older[r]|): one fused pass where the kernel applies, the
// neuron's and quantizer's operators otherwise.
void finish_rows(const LayeredEnergy& energy, Tensor& out, const Tensor& old, const Tensor& older, int64_t k,
                 Tensor& change, Tensor& change_older) {
  const bool fused = !energy.quantizes_state(k) && out.is_contiguous() && old.is_contiguous() &&
                     (!older.defined() || older.is_contiguous()) &&
                     (out.scalar_type() == torch::kFloat || out.scalar_type() == torch::kDouble) &&
                     (!out.is_cuda() || kernels::cuda_kernels_built());
  if (fused) return kernels::state_update_rows_(out, old, energy.neuron().act_params(), change, older, &change_older);
  energy.neuron().finish_(out);
  energy.quantize_state_(out, k);
  fold_changes(out, old, older, change, change_older);
}

// The mse output's exact nudged step of the even/odd schedule (layerwise_solver.h), and its changes.
void prox_output_rows(const LayeredEnergy& energy, const EnergyBatch& batch, Tensor& out, const Tensor& old,
                      const Tensor& older, int64_t k, double beta, Tensor& change, Tensor& change_older) {
  const Neuron& neuron = energy.neuron();
  Tensor u = (out - neuron.shift()) / neuron.scale();
  neuron.output_prox_(out, u, batch.onehot, beta);
  energy.quantize_state_(out, k);
  fold_changes(out, old, older, change, change_older);
}

Tensor rows_of(const Tensor& t, const Tensor& index) { return t.defined() ? t.index_select(0, index) : t; }

}  // namespace

SolveStats compact_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                              const Nudge& nudge, int64_t max_steps, double tol, SweepSchedule schedule) {
  torch::NoGradGuard no_grad;
  const int64_t S = energy.num_states();
  const int64_t B = batch.size;
  const bool clamped = nudge.kind == Nudge::Kind::Clamp;
  const bool prox_output = schedule != SweepSchedule::Jacobi && nudge.kind == Nudge::Kind::Loss &&
                           nudge.beta != 0.0 && energy.output_is_state();
  if (clamped) st.s[S - 1].copy_(batch.onehot);
  SolveStats stats;
  stats.row_steps = torch::zeros({B}, torch::kLong);
  stats.at_limit = 0;
  if (B == 0 || max_steps <= 0) return stats;
  // See layerwise_solver.cpp: the even half-step reads layer k's switches at s_k from the entry state.
  if (schedule == SweepSchedule::EvenOdd && S >= 3) energy.refresh_pools(st);

  // The working set: the batch's per-example constants and the states of the examples still relaxing, in three
  // buffers per state: cs.s the last sweep's (t), prev the one before (t − 1), and spare, which the next sweep
  // writes (the epilogue compares the new states with both others).
  EnergyBatch cb = batch;
  EnergyState cs;
  std::vector<Tensor> prev(static_cast<size_t>(S)), spare(static_cast<size_t>(S));
  cs.s.resize(size_t(S));
  for (int64_t k = 0; k < S; ++k) {
    cs.s[k] = st.s[k].contiguous().clone();
    spare[k] = torch::empty_like(cs.s[k]);
  }
  cs.pool = st.pool;
  cs.size = B;
  const torch::Device device = st.s[0].device();
  std::vector<int64_t> host_index(static_cast<size_t>(B));  // working row → example
  for (int64_t i = 0; i < B; ++i) host_index[size_t(i)] = i;
  int64_t* row_steps = stats.row_steps.data_ptr<int64_t>();
  double residual = 0.0;
  int64_t longest = 0;
  const auto opts = st.s[0].options();
  Tensor change = torch::empty({B}, opts), change_older = torch::empty({B}, opts);

  for (int64_t t = 1; t <= max_steps; ++t) {
    const int64_t R = cs.size;
    change.zero_();
    change_older.zero_();
    const bool two_back = t >= 2;  // prev holds the states of sweep t − 1 ≥ 0
    // (cs.s, prev, spare) ← (spare, cs.s, prev) for state k: the new states become current.
    auto rotate = [&](int64_t k) {
      std::swap(spare[k - 1], prev[k - 1]);
      std::swap(prev[k - 1], cs.s[k - 1]);
      if (!spare[k - 1].defined()) spare[k - 1] = torch::empty_like(cs.s[k - 1]);
    };
    // Relaxes state k into spare[k] from the neighbours in cs.s (then rotates it, for the even/odd schedule).
    auto relax = [&](int64_t k, bool rotate_now) {
      Tensor& out = spare[k - 1];
      energy.drive_into(cb, cs, k, out);
      const Tensor older = two_back ? prev[k - 1] : Tensor();
      if (k == S && prox_output) {
        prox_output_rows(energy, cb, out, cs.s[k - 1], older, k, nudge.beta, change, change_older);
      } else {
        if (k == S) energy.add_nudge(cb, cs, nudge, out);
        finish_rows(energy, out, cs.s[k - 1], older, k, change, change_older);
      }
      if (rotate_now) rotate(k);
    };
    if (schedule == SweepSchedule::Jacobi) {
      // Top-down, so that layer k's switches (computed with the drive of s_{k+1}) are ready for s_k's feedback;
      // every state reads the previous sweep's neighbours, so the generations rotate after the sweep.
      for (int64_t k = S; k >= 1; --k)
        if (!(clamped && k == S)) relax(k, false);
      for (int64_t k = 1; k <= S; ++k)
        if (!(clamped && k == S)) rotate(k);
    } else if (schedule == SweepSchedule::TopDown) {
      // Gauss–Seidel from the top: s_k reads the new s_{k+1} and the switches its drive just computed at s_k.
      for (int64_t k = S; k >= 1; --k)
        if (!(clamped && k == S)) relax(k, true);
    } else {
      for (int64_t parity : {0, 1})
        for (int64_t k = 2 - parity; k <= S; k += 2)
          if (!(clamped && k == S)) relax(k, true);
    }

    // The sweep's one synchronisation: which examples are done. A row is done when the sweep left it unchanged
    // (tol = 0) or changed it by less than tol, and also when it is back where it was two sweeps ago: it then
    // alternates between its last two states for good, so the state after max_steps sweeps is known now (the
    // current one when max_steps − t is even, the previous one otherwise).
    const Tensor host = torch::stack({change, change_older}).to(torch::kCPU, torch::kDouble);
    const double* ch = host.data_ptr<double>();
    const double* ch2 = ch + R;
    std::vector<int64_t> done_now, done_prev, keep;
    for (int64_t r = 0; r < R; ++r) {
      const double c = ch[r];
      const bool settled = tol > 0.0 ? c < tol : c == 0.0;
      const bool cycle = !settled && two_back && ch2[r] == 0.0;
      if (settled || cycle || t == max_steps) {
        ((cycle && (max_steps - t) % 2 == 1) ? done_prev : done_now).push_back(r);
        if (!settled && !cycle) ++stats.at_limit;
        row_steps[host_index[size_t(r)]] = t;
        residual = std::isnan(residual) || std::isnan(c) ? NAN : std::max(residual, c);
      } else {
        keep.push_back(r);
      }
    }
    if (done_now.empty() && done_prev.empty()) continue;
    longest = t;
    auto write_home = [&](const std::vector<int64_t>& rows, const std::vector<Tensor>& from) {
      if (rows.empty()) return;
      std::vector<int64_t> global;
      for (int64_t r : rows) global.push_back(host_index[size_t(r)]);
      const Tensor local = torch::tensor(rows, torch::kLong).to(device);
      const Tensor home = torch::tensor(global, torch::kLong).to(device);
      for (int64_t k = 0; k < S; ++k)
        if (!(clamped && k == S - 1)) st.s[k].index_copy_(0, home, from[k].index_select(0, local));
    };
    write_home(done_now, cs.s);
    write_home(done_prev, prev);
    if (keep.empty()) break;
    // Compaction: the examples still relaxing move to the front of new, smaller buffers.
    const Tensor keep_rows = torch::tensor(keep, torch::kLong).to(device);
    for (int64_t k = 0; k < S; ++k) {
      cs.s[k] = cs.s[k].index_select(0, keep_rows);
      if (prev[k].defined()) prev[k] = prev[k].index_select(0, keep_rows);
      spare[k] = torch::empty_like(cs.s[k]);
    }
    for (auto& p : cs.pool) p = rows_of(p, keep_rows);
    cb.drive1 = rows_of(cb.drive1, keep_rows);
    cb.onehot = rows_of(cb.onehot, keep_rows);
    cb.labels = rows_of(cb.labels, keep_rows);
    cb.size = cs.size = int64_t(keep.size());
    std::vector<int64_t> next(keep.size());
    for (size_t i = 0; i < keep.size(); ++i) next[i] = host_index[size_t(keep[i])];
    host_index.swap(next);
    change = torch::empty({cs.size}, opts);
    change_older = torch::empty({cs.size}, opts);
  }
  stats.steps = longest;
  stats.residual = residual;
  energy.refresh_pools(st);
  return stats;
}

}  // namespace bilevel
