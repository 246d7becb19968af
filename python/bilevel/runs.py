"""Runs from Python: ``train``, ``resume``, ``eval``, ``bench`` and ``Run``.

A run started here is the run ``bilevel train`` starts: the same run directory (config.yaml, meta.yaml,
metrics.csv, train.log, checkpoints), the same numbers for the same config and seed. Progress goes to stderr as on
the command line; Ctrl-C stops a run after its current batch (the run stays resumable) and raises
KeyboardInterrupt.
"""

import csv
import os
import pathlib
import shlex
import subprocess
import sys

from . import _C
from ._overrides import to_overrides

__all__ = ["Run", "Suite", "train", "resume", "eval", "bench", "config"]


def _read_columns(path):
    """A CSV file as {column: [values]}, numbers as int or float."""
    columns = {}
    if not os.path.exists(path):
        return columns
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for name in reader.fieldnames or []:
            columns[name] = []
        for row in reader:
            for name, text in row.items():
                columns[name].append(_number(text))
    return columns


def _number(text):
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _meta_field(path, key):
    """A top-level scalar of meta.yaml (status, command_line, ...), or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip().strip("'\"") or None
    except FileNotFoundError:
        return None
    return None


def _command_line(function, args, overrides):
    words = [repr(str(a)) for a in args] + [repr(o) for o in overrides]
    return f"python: bilevel.{function}({', '.join(words)})"


class Run:
    """A run directory: its resolved config, its metrics and its trained model.

    Attributes:
        dir (pathlib.Path): the run directory.
        status (str): completed | interrupted | preempted | diverged | failed | running (meta.yaml).
        config (dict): the resolved config (config.yaml), every key with its value.
        progress (dict): epochs_completed, best_epoch, best_val_accuracy, best_test_accuracy, when this
            process trained it.
    """

    def __init__(self, dir, progress=None):
        self.dir = pathlib.Path(dir)
        self.config = _C.run_config(str(self.dir))
        self.progress = progress or {}

    @classmethod
    def load(cls, dir):
        """Opens an existing run directory; raises bilevel.UserError when it is not one."""
        return cls(dir)

    @property
    def status(self):
        return _meta_field(self.dir / "meta.yaml", "status")

    @property
    def metrics(self):
        """metrics.csv as columns: {"epoch": [1, 2, ...], "test_accuracy": [...], ...} (read each time)."""
        return _read_columns(self.dir / "metrics.csv")

    def model(self, checkpoint=None):
        """The trained network as a torch.nn.Module (bilevel.Model) whose forward is the run's evaluation."""
        from .model import Model

        return Model(self.dir, checkpoint)

    def eval(self, checkpoint=None):
        """Test loss and accuracy, as `bilevel eval RUN_DIR`: {loss, accuracy, count, examples_per_second}."""
        return eval(self.dir, checkpoint)

    def resume(self, checkpoint=None):
        """Continues this run to its configured epochs (`bilevel resume`)."""
        return resume(self.dir, checkpoint)

    def __repr__(self):
        return f"Run({str(self.dir)!r}, status={self.status!r})"


def _finish(dir, status, progress):
    run = Run(dir, progress)
    if status == "interrupted":
        raise KeyboardInterrupt(f"run interrupted; continue it with bilevel.resume({str(dir)!r})")
    return run


def train(config, *overrides, **options):
    """Starts a run from a config file, as ``bilevel train CONFIG [overrides]``, and returns its Run.

    Overrides are strings (``"train.epochs=3"``) or keywords: ``train__epochs=3`` or
    ``train={"epochs": 3}``. A bad config raises bilevel.ConfigError (a ValueError) naming the key, before
    anything is written. A run that diverges returns with ``status == "diverged"``.

    >>> run = bilevel.train("configs/quickstart.yaml", train={"epochs": 1})
    >>> run.metrics["test_accuracy"][-1]
    """
    ov = to_overrides(overrides, options)
    dir, status, progress = _C.train(str(config), ov, _command_line("train", [config], ov))
    return _finish(dir, status, progress)


def resume(dir, checkpoint=None):
    """Continues an interrupted, killed or failed run (``bilevel resume RUN_DIR [--checkpoint FILE]``)."""
    args = [dir] + ([checkpoint] if checkpoint else [])
    out, status, progress = _C.resume(str(dir), str(checkpoint or ""), _command_line("resume", args, []))
    return _finish(out, status, progress)


def eval(dir, checkpoint=None):
    """Loss and accuracy on the test split with final.pt or ``checkpoint`` ("best", "final", a path or a name in
    RUN_DIR/checkpoints), as ``bilevel eval RUN_DIR [--checkpoint WHICH]``."""
    return _C.eval(str(dir), str(checkpoint or ""))


def config(path, *overrides, **options):
    """The resolved config (defaults + file + overrides) as a dict, validated as ``bilevel train`` would."""
    tree, _ = _C.resolve_config(str(path), to_overrides(overrides, options))
    return tree


class Suite:
    """A benchmark suite directory: results.csv as columns, summary.md as text."""

    def __init__(self, dir):
        self.dir = pathlib.Path(dir)

    @property
    def results(self):
        return _read_columns(self.dir / "results.csv")

    @property
    def summary(self):
        path = self.dir / "summary.md"
        return path.read_text() if path.exists() else ""

    def __repr__(self):
        return f"Suite({str(self.dir)!r})"


def _command():
    from . import _paths

    if os.path.exists(_paths.COMMAND):
        return _paths.COMMAND
    raise FileNotFoundError(f"the bilevel command is not at {_paths.COMMAND} (build or install it)")


def bench(suite, *overrides, jobs=None, resume=None, plots=True, **options):
    """Runs a benchmark suite (``bilevel bench SUITE.yaml``) and returns its Suite.

    Each entry runs as its own process of the ``bilevel`` command, as on the command line; ``resume=SUITE_DIR``
    continues an interrupted suite. Errors raise bilevel.UserError with the command's message.
    """
    args = [_command(), "bench"]
    args += ["--resume", str(resume)] if resume else [str(suite)]
    if jobs:
        args += ["--jobs", str(int(jobs))]
    if not plots:
        args.append("--no-plots")
    args += to_overrides(overrides, options)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    error = None
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.startswith("error: "):
            error = line[len("error: "):].strip()
    out = proc.stdout.read().strip().splitlines()
    rc = proc.wait()
    if rc == 2:
        raise _C.UserError(error or f"bilevel bench failed: {shlex.join(args)}")
    if rc == 130:
        raise KeyboardInterrupt("suite interrupted; continue it with bilevel.bench(None, resume=SUITE_DIR)")
    if rc != 0 or not out:
        raise RuntimeError(error or f"bilevel bench exited with code {rc}: {shlex.join(args)}")
    return Suite(out[-1])
