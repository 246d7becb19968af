"""Runs from Python against the command: same directory layout, same metrics, resume, eval, model."""
import csv
import pathlib
import subprocess

import pytest
import torch

import bilevel
from bilevel import _paths


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_matches_the_command(source, small, tmp_path):
    cfg = source / "configs/quickstart.yaml"
    run = bilevel.train(cfg, "train.epochs=2", data=small["data"], train={"threads": 1}, output=small["output"])
    assert run.status == "completed"
    for name in ["config.yaml", "meta.yaml", "metrics.csv", "final.pt", "train.log"]:
        assert (run.dir / name).exists(), name
    assert run.config["train"]["epochs"] == 2
    assert run.config["data"]["train_limit"] == 600
    assert run.metrics["epoch"] == [1, 2]
    assert "python: bilevel.train(" in (run.dir / "meta.yaml").read_text()

    # The command with the same config and seed: the same metrics but the timings.
    out = subprocess.run([_paths.COMMAND, "train", str(cfg), "data.train_limit=600", "data.validation=100",
                          "data.test_limit=300", "train.epochs=2", "train.threads=1",
                          f"output.root={tmp_path / 'cli'}"], capture_output=True, text=True, check=True)
    cli_dir = out.stdout.strip().splitlines()[-1]
    ours, theirs = read_csv(run.dir / "metrics.csv"), read_csv(f"{cli_dir}/metrics.csv")
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        for key in a:
            if "seconds" in key or "per_second" in key or key.endswith("_ms"):
                continue
            assert a[key] == b[key], key
    cli_config = bilevel.Run.load(cli_dir).config
    assert {k: v for k, v in run.config.items() if k != "output"} == \
        {k: v for k, v in cli_config.items() if k != "output"}


def test_resume_eval_and_load(source, small):
    cfg = source / "configs/quickstart.yaml"
    run = bilevel.train(cfg, **small)
    # A finished run resumes to the same place; eval and Run.load agree with the run.
    again = bilevel.resume(run.dir)
    assert again.dir == run.dir and again.status == "completed"
    loaded = bilevel.Run.load(str(run.dir))
    assert loaded.metrics == run.metrics
    ev = bilevel.eval(run.dir)
    assert ev["count"] == 300
    assert ev["accuracy"] == pytest.approx(run.metrics["test_accuracy"][-1], abs=1e-4)


def test_model_forward_is_the_runs_evaluation(source, small):
    run = bilevel.train(source / "configs/quickstart.yaml", **small)
    model = run.model()
    assert isinstance(model, torch.nn.Module)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]
    x, y = model.split("test")
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).double().mean().item()
    assert accuracy == pytest.approx(run.eval()["accuracy"], abs=1e-6)
    # Backprop's forward is differentiable: fine-tuning with torch reaches the library's tensors.
    loss = torch.nn.functional.cross_entropy(model(x[:32]), y[:32])
    loss.backward()
    assert model.fc1_weight.grad is not None and model.fc1_weight.grad.abs().sum() > 0
    # A change to a parameter is a change to the library's network (the same storage).
    with torch.no_grad():
        model.fc2_weight.zero_()
        model.fc2_bias.zero_()
    assert model.evaluate()["accuracy"] == pytest.approx(float((y == 0).double().mean()), abs=1e-6)


def test_ep_model_is_the_free_equilibrium(source, small):
    run = bilevel.train(source / "configs/fmnist_mlp_ep.yaml", model={"hidden": [64]}, **small)
    model = run.model()
    assert model.rule == "ep"
    x, y = model.split("test")
    accuracy = (model(x).argmax(1) == y).double().mean().item()
    assert accuracy == pytest.approx(run.eval()["accuracy"], abs=1e-6)


def test_config_resolves_with_defaults(source):
    cfg = bilevel.config(source / "configs/quickstart.yaml", "train.epochs=7", optimizer__lr=0.01)
    assert cfg["train"]["epochs"] == 7
    assert cfg["optimizer"]["lr"] == pytest.approx(0.01)
    assert cfg["train"]["batch_size"] == 64
    assert cfg["model"]["hidden"] == [256]


def test_bench_runs_a_suite(source, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""name: py_suite
seeds: [0]
overrides: [data.train_limit=400, data.validation=100, data.test_limit=200, train.epochs=1, train.threads=1]
entries:
  - name: backprop
    config: {source / 'configs/quickstart.yaml'}
""")
    result = bilevel.bench(suite, plots=False, output__root=str(tmp_path / "out"))
    assert result.dir.exists()
    assert result.results["entry"] == ["backprop"]
    assert "backprop" in result.summary
