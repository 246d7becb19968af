r"""Weight quantization on tensors you own: the quantizers and their solvers' backward passes.

A quantized weight is the solution of an inner problem, w*(θ) = the grid point the solver's map gives for the
latent θ; each solver says how ∂ℓ/∂w passes back to θ (docs/quantization.md, src/quant/<solver>.cpp):

    ste       w = s·sign(θ) (binary), ∂ℓ/∂θ = ∂ℓ/∂w · 1[|θ/s| ≤ clip]           (Courbariaux et al. 2015)
    adaste    w = clip((u + β(1+α) sign u)/(1+β), −1, 1)·s, u = θ/s; ∂ℓ/∂θ = σ(u, ĝ)·ĝ, the paper's adaptive
              slope per weight (Le, Høier, Lin & Zach, CVPR 2022)
    lsq       w = s·round(clip(θ/s, −Q_N, Q_P)), learned step s with gradient scale 1/√(N·Q_P)  (Esser et al. 2020)
    flip      no latent: w = s·q, q = ±1; m ← (1−γ)m + γ·∂ℓ/∂w, q flips where m·q > τ  (Helwegen et al. 2019)

>>> q = bilevel.quant.WeightQuantizer("binary", "ste")
>>> theta, scale = q.init(layer.weight)          # latent and grid from the initial weights
>>> w = q(theta, scale)                          # differentiable: backward is the solver's
"""

import torch

from . import _C
from ._overrides import format_value

__all__ = ["WeightQuantizer"]


class _Quantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta, scale, zero, handle, clock):
        w = handle.forward(theta, scale, zero, clock)
        ctx.handle, ctx.clock = handle, clock
        ctx.save_for_backward(theta, scale, w)
        ctx.zero = zero
        return w

    @staticmethod
    def backward(ctx, g):
        theta, scale, w = ctx.saved_tensors
        learn_scale = ctx.needs_input_grad[1]
        g_theta, g_scale = ctx.handle.backward(theta, scale, ctx.zero, w, g, learn_scale, ctx.clock)
        return g_theta, (g_scale.view_as(scale) if g_scale is not None else None), None, None, None


class WeightQuantizer:
    """One weight tensor's quantizer and solver, as ``quantization.weights.*`` configures them in a run.

    Args:
        quantizer: binary | ternary | uniform.
        solver: ste | adaste | proxquant | mirror | lsq | flip.
        bits: uniform's bit width.
        granularity: per_tensor | per_channel (one scale per output row).
        **solver_options: the solver's keys (``quantization.<solver>.*``: e.g. ``clip=1.0`` for ste,
            ``beta0``, ``alpha`` for adaste; ``gamma``, ``tau`` for flip).
    """

    def __init__(self, quantizer="binary", solver="ste", bits=None, granularity="per_tensor", **solver_options):
        ov = [f"quantization.weights.quantizer={quantizer}", f"quantization.weights.solver={solver}",
              f"quantization.weights.granularity={granularity}"]
        if bits is not None:
            ov.append(f"quantization.weights.bits={int(bits)}")
        elif quantizer == "ternary":
            ov.append("quantization.weights.bits=2")
        ov += [f"quantization.{solver}.{k}={format_value(v)}" for k, v in solver_options.items()]
        self._handle = _C.WeightQuant(ov)

    @property
    def solver(self):
        return self._handle.solver

    def init(self, weight):
        """The solver's start from initial weights: (θ, scale) for a latent solver; (codes ±1, scale, momentum)
        for flip, whose weights are scale·codes.

        New tensors (requires_grad False); wrap θ (and the scale, to learn it) in torch.nn.Parameter.
        """
        theta, w, scale, zero, momentum = self._handle.init(weight.detach())
        self._zero = zero
        if self._handle.uses_latent:
            return theta, scale
        return theta, scale, momentum

    def __call__(self, theta, scale, clock=None):
        """w(θ) for the coming batch; its backward is the solver's. ``clock``: {epoch, batch, batches, epochs}
        (the schedules of adaste, proxquant and mirror read it). For flip, θ is the codes and w = scale·codes
        (take ∂ℓ/∂w with ``w.requires_grad_()`` and pass it to flip_step)."""
        return _Quantize.apply(theta, scale, getattr(self, "_zero", None), self._handle, dict(clock or {}))

    def flip_step(self, codes, scale, momentum, grad, clock=None):
        """The flip rule's update from g = ∂ℓ/∂w: m ← (1 − γ)m + γg, and a code flips where m·code > τ;
        ``momentum`` and ``codes`` change in place."""
        self._handle.flip_step(codes, scale, momentum, grad, dict(clock or {}))

    def schedule(self, clock):
        """The solver's annealed parameter at ``clock`` (adaste's β, ...), NaN when it has none."""
        return self._handle.schedule(dict(clock))
