"""A trained run's network as a torch.nn.Module."""

import torch

from . import _C

__all__ = ["Model"]


class Model(torch.nn.Module):
    """The network of a run with its trained weights (float, or the quantized weights' values s·q).

    ``forward(x)`` is what the run's evaluation computes (``bilevel eval``): the feedforward output for
    backprop-style rules, the output at the free equilibrium for energy-based rules (EP, CHL, ...), and the
    run's inference for dual propagation. It returns the output states (squared-error runs) or the logits
    (cross-entropy runs); ``forward(x).argmax(1)`` is the prediction. Under backprop the output is
    differentiable (autograd runs through the library's forward pass); an energy-based rule's relaxation is not.

    The parameters are the library network's own tensors (no copy): ``fc1_weight`` [out, in], ``fc1_bias``, ...,
    ``conv1_weight`` for conv layers. Analyse, fine-tune or export them with the usual tools
    (``state_dict()``, ``torch.save``, an optimizer).

    Args:
        run_dir: a run directory.
        checkpoint: None for final.pt (or the latest checkpoint of an unfinished run), "best", "final", a
            path, or a file name in the run's checkpoints/.
    """

    def __init__(self, run_dir, checkpoint=None):
        super().__init__()
        handle = _C.RunModel(str(run_dir), str(checkpoint or ""))
        object.__setattr__(self, "_handle", handle)
        self.rule = handle.rule
        self.checkpoint = handle.checkpoint
        for name, tensor in handle.named_parameters():
            if name.startswith("quant."):
                continue  # the quantizers' latents and scales: training state, not the network
            # The library's tensor itself, so that autograd through its forward pass reaches this parameter.
            self._parameters[name] = tensor

    @property
    def config(self):
        """The run's resolved config."""
        return self._handle.config

    def split(self, name="test"):
        """The run's data split (train, validation or test) as (images [N, C, H, W], labels [N])."""
        return self._handle.split(name)

    def evaluate(self, batch_size=0):
        """The run's own evaluation of these weights on its test split: {loss, accuracy, count, ...}."""
        self._bind()
        return self._handle.evaluate(batch_size)

    def _bind(self):
        # After .to(), .double() or a replaced tensor, the library's network follows the Python one.
        for name, p in self._parameters.items():
            self._handle.bind(name, p)

    def forward(self, x):
        self._bind()
        return self._handle.predict(x)

    def extra_repr(self):
        return f"rule={self.rule!r}, checkpoint={self.checkpoint!r}"
