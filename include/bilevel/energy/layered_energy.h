// The energy of a LayeredNet viewed as a Hopfield-like network (the EP family's inner problem).
//
// Form: the "primitive function" energy of Laborieux et al. 2021 (eq. 4; also Ernoult et al. 2019 and
// Scellier et al. 2023 for the hard_sigmoid/box case), over the SAME parameters as the feedforward network:
//
//   E(s; θ, x) = Σ_{k=1..S} Σ_i G_ρ(s_{k,i})  −  Σ_{l=0..S−1} ⟨s_{l+1}, A_l(s_l) + b_l⟩,      s_0 = x (clamped)
//
// where A_l is LayeredNet layer l's linear map (matmul W_l s_l, or maxpool_p(conv2d(s_l, W_l)) for conv
// layers, as in Laborieux et al. 2021 §3.1) and G_ρ is the neuron potential of bilevel/energy/neuron.h
// (G_ρ' = ρ⁻¹; ½‖s‖² on the box for hard_sigmoid). Its stationarity conditions are the fixed point
//
//   s_k = ρ(u_k),   u_k = A_{k−1}(s_{k−1}) + b_{k−1} + A_kᵀ s_{k+1}                (A_Sᵀ s_{S+1} := 0)
//
// (for conv layers A_kᵀ is the adjoint of A_k with the max-pool switches taken at the current s_k, i.e.
// ∂/∂s_k ⟨s_{k+1}, A_k(s_k)⟩). Parameter gradients: ∂E/∂W_l = −∂/∂W_l ⟨s_{l+1}, A_l(s_l)⟩ (= −Σ_b s_{l+1} s_lᵀ for
// linear layers), ∂E/∂b_l = −Σ_b s_{l+1}. Everything here is analytic: no autograd except in step_autograd().
//
// Output handling (Objective::activate_output()):
//   mse (outputs are states):      S = number of layers; s_S is the output, compared to onehot(y);
//                                  nudged energy E + β·½‖s_S − onehot(y)‖².
//   cross_entropy (logits):        S = number of layers − 1; the last layer is a read-out o = W_r s_S + b_r
//                                  outside the energy (Laborieux et al. 2021 §3.2, "softmax read-out");
//                                  nudged energy E + β·ℓ(o(s_S), y), so the nudge acts on s_S through W_rᵀ.
//
// Speed: the relaxation works in "v-space", v = a·u + c (see Neuron), with the input layer's drive
// a·(A_0 x + b_0) + c computed once per batch in prepare(), pre-allocated state buffers, and in-place LibTorch ops.
// Fully connected float32 networks relax in a fused kernel instead (CPU, or GPU in a CUDA build;
// energy/fused_relaxation.h).
#pragma once

#include <torch/types.h>

#include <vector>

#include "bilevel/energy/neuron.h"
#include "bilevel/nn/layer_maps.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"

namespace bilevel {

// What the nudged phase adds to the energy.
struct Nudge {
  enum class Kind { None, Loss, Clamp };
  Kind kind = Kind::None;
  double beta = 0.0;
  static Nudge none() { return {}; }
  static Nudge loss(double beta) { return {Kind::Loss, beta}; }
  // Output state fixed to onehot(y) (contrastive Hebbian learning; mse only).
  static Nudge clamp() { return {Kind::Clamp, 0.0}; }
  bool active() const { return kind == Kind::Clamp || (kind == Kind::Loss && beta != 0.0); }
};

// The per-batch constants of a relaxation problem (shared by every phase of the batch).
struct EnergyBatch {
  torch::Tensor x;       // input, in the parameters' dtype and device
  torch::Tensor labels;  // int64 [B] (undefined at inference)
  torch::Tensor onehot;  // [B, classes] (undefined at inference)
  torch::Tensor drive1;  // v-space drive of s_1 by the clamped input: a·(A_0 x + b_0) + c
  torch::Tensor pool0;   // max-pool switches of layer 0 at x (conv with pool > 1 only)
  std::vector<torch::Tensor> vbias;  // vbias[l] = a·b_l + c, broadcastable to s_{l+1} (l ≥ 1)
  std::vector<torch::Tensor> wt;     // W_lᵀ (linear layers), cached views
  int64_t size = 0;
};

// The states of one phase, plus the buffers solvers work in.
struct EnergyState {
  std::vector<torch::Tensor> s;        // s[k−1] = s_k, k = 1..S
  std::vector<torch::Tensor> scratch;  // same shapes as s
  std::vector<torch::Tensor> pool;     // pool[l]: switches of conv layer l (l ≥ 1) at its input s_l
  int64_t size = 0;
  // Copies other's states (and switches, and kept products) into this state's buffers, allocating them when
  // shapes differ.
  void copy_from(const EnergyState& other);

  // A conv layer's product A_l(s_l) (its pooled convolution, without bias or scale), kept from where it was
  // computed with its switches (the feedforward start, the final switch refresh of a phase, a drive) for the
  // next drive that reads the same s_l: the first sweep of the next phase then does not convolve again what the
  // previous one left. Valid while s_l is the same tensor at the same version; a solver that replaces s_l calls
  // forget_product(l) (buffers are swapped and rewritten by raw kernels, which the version does not see).
  struct Product {
    torch::Tensor value;
    const void* input = nullptr;
    int64_t version = -1;
  };
  std::vector<Product> products;  // products[l], l ≥ 1
  const torch::Tensor* product(size_t l) const;
  void keep_product(size_t l, torch::Tensor value);
  void forget_product(size_t l) {
    if (l < products.size()) products[l] = Product{};
  }
  void forget_products() { products.clear(); }
};

class LayeredEnergy {
 public:
  // `objective` must outlive this object; outputs are states iff objective.activate_output() (then it must be
  // mse). Throws std::invalid_argument for a network the energy cannot describe.
  LayeredEnergy(const LayeredNetImpl& net, const Neuron& neuron, const Objective& objective);

  size_t num_layers() const { return layers_.size(); }
  int64_t num_states() const { return num_states_; }
  bool output_is_state() const { return output_is_state_; }
  const Neuron& neuron() const { return neuron_; }
  const Objective& objective() const { return objective_; }
  const Layer& layer(size_t l) const { return *layers_[l]; }
  std::vector<int64_t> state_shape(int64_t k, int64_t batch) const;  // k = 1..S
  // The memory format s_k is stored in: where a convolution reads it (layer k is a conv layer), the layout that
  // convolution runs fastest in (LayerMaps::conv_format), so that conv_input need not copy it before every
  // product; contiguous otherwise, and always where a fully connected layer reads it (it is viewed as [B, n]).
  at::MemoryFormat state_format(int64_t k, const torch::TensorOptions& options) const;
  // Activation quantization of the states (bilevel/quant): the relaxation's update becomes s_k ← Q_k(ρ(u_k)) for
  // every hidden state k (an output state, mse, is never quantized). Its fixed points are the fixed points of the
  // quantized dynamics (Laydevant et al. 2021's binary neurons), not stationary points of E; EP's estimate is then
  // taken between the free and nudged fixed points of those dynamics.
  bool quantizes_states() const { return net_.state_quantizer() != nullptr; }
  // Whether a quantizer acts on s_k (k = 1..S).
  bool quantizes_state(int64_t k) const { return quantizes_states() && (k < num_states_ || !output_is_state_); }
  void quantize_state_(torch::Tensor& s, int64_t k) const {
    if (quantizes_state(k)) net_.quantize_state_(s, size_t(k - 1));
  }
  // Whether s_k takes two values only, level and level + step (a deterministic 1-bit grid; StateQuantizer).
  bool binary_state_levels(int64_t k, float& level, float& step) const {
    return quantizes_state(k) && net_.state_quantizer()->binary_levels(size_t(k - 1), net_.is_training(), level, step);
  }

  // Fills `batch` for input x (any dtype; converted) and labels y (may be undefined).
  void prepare(EnergyBatch& batch, const torch::Tensor& x, const torch::Tensor& y) const;
  // Zero states (the standard initialisation), re-using st's buffers when their shapes fit.
  void init_state(const EnergyBatch& batch, EnergyState& st) const;
  // Instead of init_state: the feedforward pass, s_1 = h(drive1), s_k = h(a·A_{k−1}(s_{k−1}) + vbias_k) for
  // k = 2..S, i.e. one bottom-up sweep that ignores the feedback terms (buffers re-used as by init_state); the
  // max-pool switches are those of that pass (each computed with the map it pools).
  void feedforward_state(const EnergyBatch& batch, EnergyState& st) const;
  // Recomputes the max-pool switches of conv layers l ≥ 1 at the current states (and keeps each layer's product
  // for the next drive that reads the same state: EnergyState::products).
  void refresh_pools(EnergyState& st) const;

  // ---- the relaxation's building blocks (call under torch::NoGradGuard) ----
  // out = a·u_k + c without any nudge, from the neighbours in st (k = 1..S). Stores the switches of layer k−1
  // at s_{k−1} into st.pool[k−1]; uses st.pool[k] (layer k's switches at s_k) for the feedback. A conv layer's
  // product kept for the current s_{k−1} (EnergyState::products) is used instead of convolving again.
  void drive_into(const EnergyBatch& batch, EnergyState& st, int64_t k, torch::Tensor& out) const;
  // out += the nudge's v-space term for the top state s_S: mse a·β(y − s_S); cross_entropy −a·β W_rᵀ ∂ℓ/∂o.
  void add_nudge(const EnergyBatch& batch, const EnergyState& st, const Nudge& nudge, torch::Tensor& out) const;

  // The network's layer maps (A_l, A_lᵀ, their parameter gradients; nn/layer_maps.h).
  const LayerMaps& maps() const { return maps_; }
  // The switches of layer l for state index k, and the input of layer l (x for l = 0).
  const torch::Tensor& layer_input(const EnergyBatch& batch, const EnergyState& st, size_t l) const;
  const torch::Tensor& layer_pool(const EnergyBatch& batch, const EnergyState& st, size_t l) const;

  // ---- gradients into the network's parameters' grad() (accumulating) ----
  // += coeff·∂Φ/∂θ(st), Φ = Σ_l ⟨s_{l+1}, A_l(s_l) + b_l⟩ = −(E − Σ G) (energy layers only, not the read-out).
  void add_phi_grad(const EnergyBatch& batch, const EnergyState& st, double coeff) const;
  // += coeff·(∂Φ/∂θ(a) − ∂Φ/∂θ(b)); the input layer's term is one matmul on s_1(a) − s_1(b).
  void add_phi_grad_diff(const EnergyBatch& batch, const EnergyState& a, const EnergyState& b, double coeff) const;
  // cross_entropy: += coeff·∂ℓ(o(s_S), y)/∂(W_r, b_r) summed over the batch.
  void add_readout_grad(const EnergyBatch& batch, const EnergyState& st, double coeff) const;

  // ---- outputs and analysis (out of place) ----
  // mse: s_S; cross_entropy: the read-out logits.
  torch::Tensor output(const EnergyBatch& batch, const EnergyState& st) const;
  // Per-example energy E(s) + β ℓ (Nudge::Loss) [B]. Clamp nudges add nothing (s_S is fixed).
  torch::Tensor energy(const EnergyBatch& batch, const EnergyState& st, const Nudge& nudge) const;
  // ∂(E + βℓ)/∂s_k for k = 1..S (interior of the box for clip-type ρ).
  std::vector<torch::Tensor> energy_grad_states(const EnergyBatch& batch, const EnergyState& st,
                                                const Nudge& nudge) const;
  // Unscaled total input u_k (no nudge).
  torch::Tensor total_input(const EnergyBatch& batch, const EnergyState& st, int64_t k) const;

  // ---- differentiable dynamics (BPTT only; autograd records through the parameters) ----
  // A_0 x + b_0.
  torch::Tensor input_drive_autograd(const torch::Tensor& x) const;
  // One sweep of the free-phase dynamics: synchronous s_k ← ρ(u_k(s)) for all k, or (gauss_seidel) even k
  // first, then odd k from the new even states.
  std::vector<torch::Tensor> step_autograd(const torch::Tensor& drive1, const std::vector<torch::Tensor>& s,
                                           bool gauss_seidel) const;
  // The output (s_S, or logits) of autograd states.
  torch::Tensor output_autograd(const std::vector<torch::Tensor>& s) const;

 private:
  // Sizes st's buffers for the batch (re-used when their shapes fit; contents unspecified) and clears the switches.
  void allocate_state(const EnergyBatch& batch, EnergyState& st) const;
  // out = vbias_k + a·A_{k−1}(s_{k−1}) (k ≥ 2), layer k−1's switches in st.pool[k−1]: from the product kept for
  // the current s_{k−1} when there is one, else computed and kept (EnergyState::products).
  void forward_drive(const EnergyBatch& batch, EnergyState& st, int64_t k, torch::Tensor& out) const;
  LayerMaps maps_;
  std::vector<const Layer*> layers_;
  const LayeredNetImpl& net_;
  Neuron neuron_;
  const Objective& objective_;
  bool output_is_state_;
  int64_t num_states_;
  bool conv_after_input_ = false;
};

}  // namespace bilevel
