#include "bilevel/nn/linear.h"

#include <torch/autograd.h>

#include "bilevel/kernels/cpu/split_gemm.h"

namespace bilevel {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

namespace {

struct SplitLinear : torch::autograd::Function<SplitLinear> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& W, const Tensor& b) {
    ctx->save_for_backward({x, W});
    Tensor out = torch::empty({x.size(0), W.size(0)}, x.options());
    kernels::cpu::split_addmm(out, b, x, W.t(), 1.0);
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &W = saved[1];
    const Tensor g = grads[0].contiguous();
    Tensor gx, gW, gb;
    if (torch::GradMode::is_enabled()) {  // create_graph: keep the backward differentiable
      if (ctx->needs_input_grad(0)) gx = g.mm(W);
      if (ctx->needs_input_grad(1)) gW = g.t().mm(x);
    } else {
      if (ctx->needs_input_grad(0)) {
        gx = torch::empty_like(x, torch::MemoryFormat::Contiguous);
        kernels::cpu::split_addmm(gx, g, W, 0.0, 1.0);
      }
      if (ctx->needs_input_grad(1)) {
        gW = torch::empty_like(W, torch::MemoryFormat::Contiguous);
        kernels::cpu::split_addmm(gW, g.t(), x, 0.0, 1.0);
      }
    }
    if (ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gW, gb};
  }
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b) {
  const Tensor flat = x.dim() == 2 ? x : x.flatten(1);
  if (!flat.device().is_cpu() || flat.scalar_type() != torch::kFloat32) return torch::addmm(b, flat, W.t());
  return SplitLinear::apply(flat, W, b);
}

}  // namespace bilevel
