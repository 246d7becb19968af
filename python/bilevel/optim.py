r"""Adam in one pass over each tensor, the library's optimizer kernel, as a torch.optim.Optimizer.

The update is torch.optim.Adam's (Kingma & Ba 2015, Algorithm 1, L2 weight decay added to the gradient):

    g ← g + λθ;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)

but each element is read and written once (torch's single-tensor Adam makes about ten passes), which matters
next to a fast gradient estimate: with bilevel.Estimator on the 784-512-10 EP network, torch.optim.Adam's step
costs more than the estimate itself (benchmarks/python_step.py). float32 contiguous tensors take the fused pass;
any other tensor takes torch.optim.Adam's own arithmetic.
"""

import torch

from . import _C

__all__ = ["Adam"]


class Adam(torch.optim.Optimizer):
    """Drop-in for torch.optim.Adam(params, lr, betas, eps, weight_decay) (no amsgrad, no maximize)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: invalid hyperparameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                state["step"] += 1
                m, v, g, t = state["exp_avg"], state["exp_avg_sq"], p.grad, state["step"]
                if (p.dtype == torch.float32 and p.is_contiguous() and g.dtype == torch.float32
                        and g.is_contiguous() and not g.is_sparse and p.device == g.device):
                    _C.adam_step_(p, m, v, g, group["lr"], beta1, beta2, group["eps"], group["weight_decay"], t)
                else:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    m.mul_(beta1).add_(g, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denom = (v.sqrt() / (1 - beta2 ** t) ** 0.5).add_(group["eps"])
                    p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1 ** t))
        return loss
