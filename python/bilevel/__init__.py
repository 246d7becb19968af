"""bilevel: neural networks trained as bilevel problems (equilibrium propagation and its family, dual
propagation, quantization-aware training), from Python.

Runs (the same run directories as the ``bilevel`` command)::

    run = bilevel.train("configs/fmnist_mlp_ep.yaml", train={"epochs": 3})
    run.metrics["test_accuracy"]          # metrics.csv as columns
    model = run.model()                   # torch.nn.Module, forward = the run's evaluation
    bilevel.resume(run.dir); bilevel.eval(run.dir); bilevel.bench("configs/bench/fmnist_quick.yaml")

Estimators on your own torch.nn network::

    est = bilevel.Estimator(net, config="configs/fmnist_mlp_ep.yaml")
    est.step(x, y)                        # EP's gradient estimate into every parameter's .grad

Errors: bilevel.UserError (a ValueError) for bad input, with bilevel.ConfigError (``.key``) and
bilevel.DataError under it; bilevel.IoError (an OSError) for a file that could not be written.
See docs/python.md.
"""

import torch as _torch  # LibTorch's Python bindings first: the extension uses their tensor type

from . import _C
from ._C import ConfigError, DataError, IoError, UserError
from . import optim, quant
from .estimators import Estimator, linear_layers
from .model import Model
from .runs import Run, Suite, bench, config, eval, resume, train

__all__ = ["train", "resume", "eval", "bench", "config", "Run", "Suite", "Model", "Estimator", "linear_layers",
           "optim", "quant", "UserError", "ConfigError", "DataError", "IoError"]
