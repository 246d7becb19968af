#!/usr/bin/env python3
"""Equilibrium propagation in your own PyTorch training loop.

The network is a plain torch.nn MLP (784-512-10); bilevel's EP estimator computes the gradient (the free and the
nudged relaxations, on the library's fused kernels) straight into the parameters' .grad, and a torch optimizer
steps. Everything else -- data, batching, optimizer, evaluation, logging -- is ordinary PyTorch, yours to change.
With the defaults it reproduces configs/fmnist_mlp_ep.yaml (sigmoid4 states, squared error, β = 0.1, T = 30,
K = 10, Adam 5e-4, batches of 50, 10 epochs, 5000 training examples held out for validation).

    PYTHONPATH=build/python python3 examples/python/ep_fashion_mnist.py            # about as long as the config run
    PYTHONPATH=build/python python3 examples/python/ep_fashion_mnist.py --epochs 1 --train-limit 5000
"""
import argparse
import gzip
import os
import pathlib
import struct
import sys
import time

import torch

import bilevel

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "fmnist_mlp_ep.yaml"


def read_idx(path):
    """An IDX file (gzip-compressed or not) as a uint8 tensor."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load_split(root, prefix):
    for ext in (".gz", ""):
        images = pathlib.Path(root) / f"{prefix}-images-idx3-ubyte{ext}"
        if images.exists():
            x = read_idx(images).float().div_(255).reshape(-1, 784)
            y = read_idx(pathlib.Path(root) / f"{prefix}-labels-idx1-ubyte{ext}").long()
            return x, y
    raise FileNotFoundError(f"no {prefix} files in {root} (apt-get install dataset-fashion-mnist)")


def accuracy(est, x, y, batch=1000):
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((est.predict(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's IDX files")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--validation", type=int, default=5000, help="training examples held out")
    p.add_argument("--train-limit", type=int, default=0, help="use only this many training examples (0: all)")
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-adam", action="store_true",
                   help="torch.optim.Adam instead of bilevel.optim.Adam (the same update in one pass; "
                        "several times faster next to EP's step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x, y = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    if args.train_limit:
        x, y = x[:args.train_limit], y[:args.train_limit]
    if args.test_limit:
        x_test, y_test = x_test[:args.test_limit], y_test[:args.test_limit]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    held, kept = order[:args.validation], order[args.validation:]
    x_val, y_val, x, y = x[held], y[held], x[kept], y[kept]

    net = torch.nn.Sequential(torch.nn.Linear(784, args.hidden), torch.nn.Linear(args.hidden, 10))
    # The rule, its solver, the activation and the loss from the config; the network is ours.
    est = bilevel.Estimator(net, config=CONFIG)
    opt = (torch.optim.Adam if args.torch_adam else bilevel.optim.Adam)(net.parameters(), lr=args.lr)
    print(f"{est.rule} on {len(x)} examples; test {len(x_test)}, validation {len(x_val)}", file=sys.stderr)

    for epoch in range(args.epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x))
        loss_sum = correct = 0.0
        for b, i in enumerate(range(0, len(x), args.batch_size)):
            idx = perm[i:i + args.batch_size]
            opt.zero_grad(set_to_none=False)
            stats = est.step(x[idx], y[idx], epoch=epoch, batch=b)
            opt.step()
            loss_sum += stats["loss"] * len(idx)
            correct += stats["correct"]
        seconds = time.perf_counter() - start
        val = accuracy(est, x_val, y_val) if len(x_val) else float("nan")
        test = accuracy(est, x_test, y_test)
        print(f"epoch {epoch + 1}: train loss {loss_sum / len(x):.4f} acc {correct / len(x):.4f}  "
              f"val {val:.4f}  test {test:.4f}  ({seconds:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
