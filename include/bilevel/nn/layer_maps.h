// The linear maps of a LayeredNet's layers and their adjoints, the building blocks every energy-based and
// dual-propagation rule relaxes with: A_l is layer l's linear part (matmul W_l s_l, or pool_p(conv2d(s_l, W_l))
// for conv layers: max-pooling, whose switches are an explicit argument, or average pooling, which is linear and
// has none), A_lᵀ its adjoint at those switches, and the
// gradient of ⟨g, A_l(in)⟩ with respect to W_l. Built from the network alone: no neuron, objective or energy.
// Call under torch::NoGradGuard; the layers' parameters are read at call time, so one instance serves for a
// whole training run.
#pragma once

#include <torch/types.h>

#include <vector>

#include "bilevel/nn/layered_net.h"

namespace bilevel {

class LayerMaps {
 public:
  explicit LayerMaps(const LayeredNetImpl& net);

  size_t num_layers() const { return layers_.size(); }
  const Layer& layer(size_t l) const { return *layers_[l]; }

  // out = self + α·A_l(in); stores the switches into *pool for conv layers with max-pooling, and A_l(in) into
  // *product for conv layers when it is given.
  void forward_into(size_t l, const torch::Tensor& in, const torch::Tensor& self, double alpha, torch::Tensor& out,
                    torch::Tensor* pool, torch::Tensor* product = nullptr) const;
  // out += α·A_lᵀ g, with the switches `pool` of layer l (`out` also gives the shape of layer l's input).
  void feedback_add(size_t l, const torch::Tensor& g, const torch::Tensor& pool, double alpha,
                    torch::Tensor& out) const;
  // A_l(in) with the max-pool switches fixed to `pool` (layer l's Jacobian applied to in).
  torch::Tensor linearized(size_t l, const torch::Tensor& in, const torch::Tensor& pool) const;
  // gW += coeff·Σ_batch ∂/∂W_l ⟨g, A_l(in)⟩ (switches fixed); gb += coeff·Σ_batch g (if gb is given).
  void param_grad_add(size_t l, const torch::Tensor& g, const torch::Tensor& in, const torch::Tensor& pool,
                      double coeff, torch::Tensor& gW, torch::Tensor* gb) const;

  // A view of layer's bias that broadcasts over its output [B, n] or [B, C, H, W].
  static torch::Tensor bias_view(const Layer& layer);
  // A batch [B, ...] viewed as [B, n] (a 2-d batch as it is).
  static torch::Tensor flat(const torch::Tensor& t);
  // The layout a convolution's input runs fastest in: channels-last for float32 on the CPU, contiguous otherwise.
  static at::MemoryFormat conv_format(const torch::TensorOptions& options);
  // A conv layer's input in that layout.
  static torch::Tensor conv_input(const torch::Tensor& in);
  // The spatial size of a conv layer's output before pooling, for input `in`.
  static std::vector<int64_t> conv_out_hw(const Layer& layer, const torch::Tensor& in);

  // Whether a layer's map depends on switches (conv with max-pooling).
  static bool has_switches(const Layer& layer);
  // The layer's pooling of its convolution's output z (z itself without pooling); max-pooling stores its switches
  // into *switches when given. Differentiable (autograd records it).
  static torch::Tensor pool(const Layer& layer, const torch::Tensor& z, torch::Tensor* switches);
  // The pooling's adjoint at those switches: g (pooled shape) back to the convolution's output, of spatial size hw
  // (average pooling: each output's g spread as g/p² over its window; rows and columns the pooling dropped get 0).
  // Differentiable.
  static torch::Tensor unpool(const Layer& layer, const torch::Tensor& g, const torch::Tensor& switches,
                              at::IntArrayRef hw);

 private:
  std::vector<const Layer*> layers_;
};

// The parameter's grad(), allocated as zeros when undefined.
torch::Tensor& grad_buffer(const torch::Tensor& param);

}  // namespace bilevel
