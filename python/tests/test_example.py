"""The Python example (a user's own PyTorch loop with bilevel's EP estimator) on a small subset, against the
config run on the same subset."""
import os
import re
import subprocess
import sys

import bilevel


def test_example_trains_like_the_config(source, tmp_path):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, str(source / "examples/python/ep_fashion_mnist.py"), "--epochs", "1",
                          "--train-limit", "3000", "--validation", "500", "--test-limit", "1000", "--threads", "1",
                          "--hidden", "128"], capture_output=True, text=True, env=env, check=True)
    test_acc = float(re.findall(r"test (\d\.\d+)", out.stdout)[-1])
    run = bilevel.train(source / "configs/fmnist_mlp_ep.yaml", model__hidden=[128], train__epochs=1,
                        train__threads=1, data={"train_limit": 3000, "validation": 500, "test_limit": 1000},
                        output__root=str(tmp_path))
    config_acc = run.metrics["test_accuracy"][-1]
    assert test_acc > 0.6 and config_acc > 0.6
    assert abs(test_acc - config_acc) < 0.05, (test_acc, config_acc)
