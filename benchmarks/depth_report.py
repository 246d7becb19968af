#!/usr/bin/env python3
"""Per-network table of a finished `fmnist_depth` suite (configs/bench/fmnist_depth.yaml).

    benchmarks/depth_report.py SUITE_DIR            # Markdown on stdout

Entries are named RULE_NETWORK (backprop_512x2, ep_512x2, ...); each rule's epoch time is divided by the same
network's backprop entry (backprop_NETWORK). For every entry: runs, test accuracy (final epoch, mean over seeds), the
median epoch time (the median over seeds of each run's median `epoch_seconds`), the ratio to backprop on the same
network, mean sweeps per example of the free and nudged phases with the fraction that ran out of sweeps, the
multiply-add ratio those sweeps imply (`macs_ratio`), and the measured ratio over that bound (1.0 = the time is
all arithmetic; above it, overhead). Standard library only.
"""
import csv
import os
import statistics
import sys


def mean(xs):
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def run_columns(suite_dir, run_dir, names):
    path = os.path.join(suite_dir, run_dir, "metrics.csv")
    if not run_dir or not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = {}
    for n in names:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[n]))
            except (KeyError, ValueError):
                pass
        if vals:
            out[n] = mean(vals)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    suite_dir = sys.argv[1]
    with open(os.path.join(suite_dir, "results.csv")) as f:
        results = [r for r in csv.DictReader(f) if r["status"] == "completed"]
    cost = ["free_sweeps", "free_at_limit", "nudged_sweeps", "nudged_at_limit", "macs_ratio"]
    entries = {}
    order = []
    for r in results:
        e = entries.setdefault(r["entry"], {"acc": [], "epoch": [], "cost": []})
        if r["entry"] not in order:
            order.append(r["entry"])
        e["acc"].append(float(r["final_test_accuracy"] or "nan"))
        e["epoch"].append(float(r["median_epoch_seconds"] or "nan"))
        e["cost"].append(run_columns(suite_dir, r["run_dir"], cost))

    def net_of(name):
        return name.split("_", 1)[1] if "_" in name else name

    print("| network | rule | runs | test acc | epoch (s) | × backprop | free sweeps (at limit) | "
          "nudged sweeps (at limit) | MAC bound | measured / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in order:
        e = entries[name]
        net = net_of(name)
        bp = entries.get("backprop_" + net)
        t = statistics.median(e["epoch"])
        ratio = t / statistics.median(bp["epoch"]) if bp else float("nan")
        c = {k: mean([x.get(k, float("nan")) for x in e["cost"]]) for k in cost}
        sweeps = lambda p: "–" if c[p + "_sweeps"] != c[p + "_sweeps"] else \
            f"{c[p + '_sweeps']:.1f} ({100 * c[p + '_at_limit']:.0f}%)"
        bound = c["macs_ratio"]
        rel = ratio / bound if bound == bound and name != "backprop_" + net else float("nan")
        fmt = lambda x, d: "–" if x != x else f"{x:.{d}f}"
        print(f"| {net} | {name.split('_', 1)[0]} | {len(e['acc'])} | {100 * mean(e['acc']):.2f}% | {t:.2f} | "
              f"{fmt(ratio, 2)}× | {sweeps('free')} | {sweeps('nudged')} | {fmt(bound, 2)}× | {fmt(rel, 2)} |")


if __name__ == "__main__":
    main()
