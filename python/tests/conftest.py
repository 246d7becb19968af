import os
import pathlib

import pytest

SOURCE = pathlib.Path(os.environ.get("BILEVEL_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
# Small runs: 600 training examples (100 held out), 300 test examples, one epoch.
SMALL = {"data": {"train_limit": 600, "validation": 100, "test_limit": 300}, "train": {"epochs": 1, "threads": 1}}


@pytest.fixture
def source():
    return SOURCE


@pytest.fixture
def small(tmp_path):
    """Overrides for a small run whose directory goes under the test's temporary folder."""
    return {**SMALL, "output": {"root": str(tmp_path / "runs")}}
