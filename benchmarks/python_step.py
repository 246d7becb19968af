#!/usr/bin/env python3
"""An EP step called from Python against the same step inside `bilevel train`.

    PYTHONPATH=build/python python3 benchmarks/python_step.py [--config configs/fmnist_mlp_ep.yaml]
        [--batches 200] [--reps 3] [--threads 2]

Python: bilevel.Estimator(net, config=CONFIG).step(x, y) (the gradient estimate into the torch.nn.Linear layers'
.grad) plus an optimizer step, over N mini-batches of Fashion-MNIST: bilevel.optim.Adam (the library's one-pass
Adam) and torch.optim.Adam. C++: build/bench_epoch CONFIG ep, which times the trainer's own step (train_batch: the
same rule's estimate plus the library's Adam) over N mini-batches of the same size. The three alternate
(A B C A B C ...) so that machine drift stays out of the ratios; prints the median time per batch of each and the
ratios to the C++ step.
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

import torch

import bilevel
from bilevel import _paths

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "python"))
from ep_fashion_mnist import load_split  # noqa: E402  (the example's IDX reader)


def python_per_batch(config, x, y, batches, batch_size, hidden, lr, optimizer):
    """Seconds per step: one warm-up pass over the batches (dropped, as bench_epoch drops its first repetition),
    then the same batches again from the same initial weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.Linear(hidden, 10))
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    est = bilevel.Estimator(net, config=config)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for p in net.parameters():  # .grad buffers exist from the start, as in the trainer
        p.grad = torch.zeros_like(p)
    seconds = 0.0
    for _ in range(2):
        with torch.no_grad():
            for k, v in net.state_dict().items():
                v.copy_(initial[k])
        opt = optimizer(net.parameters(), lr=lr)
        start = time.perf_counter()
        for b in range(batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            opt.zero_grad(set_to_none=False)
            est.step(x[idx], y[idx], batch=b)
            opt.step()
        seconds = time.perf_counter() - start
    return seconds / batches


def cpp_per_batch(bench_epoch, config, batches, threads):
    out = subprocess.run([bench_epoch, str(config), "ep", "--batches", str(batches), "--reps", "1",
                          f"train.threads={threads}"], capture_output=True, text=True, check=True).stdout
    row = [l for l in out.splitlines() if l.startswith("ep ")][-1]
    return float(row.split()[1]) / 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "fmnist_mlp_ep.yaml"))
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()
    cfg = bilevel.config(args.config)
    batch_size, hidden = cfg["train"]["batch_size"], cfg["model"]["hidden"][0]
    lr = cfg["optimizer"]["lr"]
    torch.set_num_threads(args.threads)
    x, y = load_split(args.data, "train")
    bench_epoch = os.path.join(os.path.dirname(_paths.COMMAND), "bench_epoch")
    variants = {"bilevel train (bench_epoch)": lambda: cpp_per_batch(bench_epoch, args.config, args.batches,
                                                                     args.threads)}
    for name, optimizer in [("python, bilevel.optim.Adam", bilevel.optim.Adam),
                            ("python, torch.optim.Adam", torch.optim.Adam)]:
        variants[name] = (lambda o: lambda: python_per_batch(args.config, x, y, args.batches, batch_size, hidden,
                                                             lr, o))(optimizer)
    times = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, run in variants.items():
            times[name].append(run())
    base = statistics.median(times["bilevel train (bench_epoch)"])
    print(f"config {args.config}: batch {batch_size}, {args.batches} batches x {args.reps} reps, "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{'':30s} {'ms/batch (median)':>18s} {'ratio':>7s}  reps (ms)")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:30s} {1e3 * m:18.3f} {m / base:7.2f}  {' '.join(f'{1e3 * v:.3f}' for v in ts)}")


if __name__ == "__main__":
    main()
