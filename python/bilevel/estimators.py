"""The library's gradient estimators on a torch.nn network you own.

Equilibrium propagation and its family (``ep``, ``ep_symmetric``, ``chl``, ``implicit``, ``bptt``), dual
propagation (``dual_prop``) and ``backprop`` itself estimate dℓ(s*(θ), y)/dθ for a layered energy network whose
weights and biases are your ``torch.nn.Linear`` layers. The estimate is added into each parameter's ``.grad``
(created when None), as ``loss.backward()`` would, so any torch optimizer steps from it.
"""

import torch

from . import _C
from ._overrides import to_overrides

__all__ = ["Estimator", "linear_layers"]


def linear_layers(model):
    """The torch.nn.Linear layers of ``model`` (a module or a list of them), from the input side."""
    if isinstance(model, torch.nn.Linear):
        return [model]
    if isinstance(model, (list, tuple)):
        layers = list(model)
    else:
        layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not layers or not all(isinstance(m, torch.nn.Linear) for m in layers):
        raise TypeError("expected torch.nn.Linear layers (a module holding them, or a list)")
    for a, b in zip(layers, layers[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"layers do not chain: {a} then {b}")
    if any(m.bias is None for m in layers):
        raise ValueError("every Linear layer needs a bias (the energy has one per unit)")
    return layers


class Estimator:
    r"""A learning rule's gradient estimate for a fully connected network of ``torch.nn.Linear`` layers.

    The energy of the layered network with states s_1..s_L (s_0 = x) and ρ = ``model.activation`` is

        E(s; θ, x) = Σ_k G_ρ(s_k) − Σ_k s_k·(W_k s_{k−1} + b_k),

    each G_ρ the convex potential with G_ρ' = ρ⁻¹ (docs/algorithms.md). Equilibrium propagation
    (Scellier & Bengio 2017) relaxes the free state s⁰ = argmin E, then the nudged state s^β = argmin E + βℓ,
    and estimates

        ∇_θ ℓ ≈ (1/β) (∂E/∂θ(s^β) − ∂E/∂θ(s⁰)),     e.g. ∂ℓ/∂W_k ≈ −(1/β)(s^β_k s^β_{k−1}ᵀ − s⁰_k s⁰_{k−1}ᵀ),

    exact as β → 0 (``ep_symmetric``: the centred difference (s^β − s^{−β})/(2β), error O(β²)). Dual propagation
    (Høier, Staudt & Zach 2023) gives backprop's gradient at α = ½ for a feedforward network.

    Args:
        model: the network (a module whose Linear layers, in order, are the energy's layers; or a list of them).
        rule: the rule's name (``ep``, ``ep_symmetric``, ``chl``, ``dual_prop``, ``backprop``, ...), or a dict
            of its keys with its name (``{"name": "ep", "beta": 0.2}``); None takes the config's (``ep`` without
            a config).
        config: a config file to take the rule, solver, activation and loss from (e.g.
            ``configs/fmnist_mlp_ep.yaml``); the model's widths replace its ``model.hidden``.
        *overrides, **options: config keys on top, as in bilevel.train (``rule__beta=0.2``,
            ``solver={"free_steps": 20}``, ``model__activation="sigmoid4"``, ``train__loss="mse"``).

    >>> net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.Linear(512, 10))
    >>> est = bilevel.Estimator(net, config="configs/fmnist_mlp_ep.yaml")
    >>> stats = est.step(x.view(len(x), -1), y)   # fills every parameter's .grad
    >>> opt.step()
    """

    def __init__(self, model, rule=None, *overrides, config=None, **options):
        self.layers = linear_layers(model)
        if isinstance(rule, dict):
            rule_keys = to_overrides((), {"rule": rule})
        elif rule is not None:
            rule_keys = [f"rule.name={rule}"]
        else:
            rule_keys = [] if config is not None else ["rule.name=ep"]
        ov = rule_keys + to_overrides(overrides, options)
        widths = [self.layers[0].in_features] + [m.out_features for m in self.layers]
        self._handle = _C.Estimator(str(config or ""), ov, widths)

    @property
    def rule(self):
        return self._handle.rule

    @property
    def config(self):
        """The resolved config the rule was built from (rule, solver, model, train.loss, ...)."""
        return self._handle.config

    @property
    def outputs_states(self):
        """True when the outputs are states compared by squared error (mse), False for logits."""
        return self._handle.outputs_states

    def _tensors(self):
        return [m.weight for m in self.layers], [m.bias for m in self.layers]

    @staticmethod
    def _flat(x):
        return x.reshape(x.shape[0], -1)

    def step(self, x, y, epoch=0, batch=0):
        """Adds the rule's estimate of the batch-mean gradient into each weight's and bias's ``.grad``.

        x: [B, in] (or images, flattened); y: int64 class labels [B]. ``epoch``/``batch`` seed the rule's
        randomness (EP's random β sign). Returns {"loss": mean loss at the free state, "correct": count, and the
        rule's diagnostics (free_steps, nudged_steps, ...)}.
        """
        w, b = self._tensors()
        return self._handle.step(w, b, self._flat(x), y, epoch, batch)

    def predict(self, x):
        """The network's output for x under the rule's inference (the free equilibrium for energy rules)."""
        w, b = self._tensors()
        return self._handle.predict(w, b, self._flat(x))

    __call__ = predict

    def relax(self, x, y=None):
        """The free equilibrium [s_1, ..., s_L] of an energy-based rule for x (new tensors)."""
        w, b = self._tensors()
        return self._handle.relax(w, b, self._flat(x), y)
