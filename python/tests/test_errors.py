"""Each error class arrives as its Python exception, with the command's message."""
import os

import pytest

import bilevel


def test_bad_key_is_a_config_error_naming_the_key(source, small):
    with pytest.raises(bilevel.ConfigError) as e:
        bilevel.train(source / "configs/quickstart.yaml", train__batch_size=0, **small)
    assert isinstance(e.value, ValueError)
    assert e.value.key == "train.batch_size"
    assert "train.batch_size" in str(e.value)
    assert not (small_root(small)).exists()  # nothing written


def small_root(small):
    import pathlib
    return pathlib.Path(small["output"]["root"])


def test_unknown_key_and_bad_file(source, tmp_path):
    with pytest.raises(bilevel.ConfigError) as e:
        bilevel.config(source / "configs/quickstart.yaml", "train.epochz=3")
    assert "train.epochz" in str(e.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(bilevel.ConfigError) as e:
        bilevel.config(bad)
    assert e.value.file.endswith("bad.yaml") and e.value.line >= 2


def test_missing_data_is_a_data_error(source, small, tmp_path):
    with pytest.raises(bilevel.UserError) as e:
        bilevel.train(source / "configs/quickstart.yaml", data__root=str(tmp_path / "nowhere"), **small)
    assert "nowhere" in str(e.value)


def test_truncated_data_file_is_a_data_error(source, small, tmp_path):
    root = tmp_path / "fmnist"
    root.mkdir()
    real = "/usr/share/datasets/fashion-mnist"
    for name in os.listdir(real):
        os.symlink(os.path.join(real, name), root / name)
    first = sorted(os.listdir(real))[0]
    os.unlink(root / first)
    (root / first).write_bytes(b"\x00\x00\x08")
    with pytest.raises(bilevel.DataError) as e:
        bilevel.train(source / "configs/quickstart.yaml", data__root=str(root), **small)
    assert first in str(e.value) and first in e.value.file


def test_not_a_run_directory(tmp_path):
    with pytest.raises(bilevel.UserError) as e:
        bilevel.Run.load(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(bilevel.UserError):
        bilevel.eval(tmp_path)


def test_unwritable_output_is_an_io_error(source, small, tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere: a file where a directory should be fails for everyone.
        blocker = tmp_path / "file"
        blocker.write_text("")
        root = blocker / "runs"
    else:
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
    with pytest.raises((bilevel.IoError, bilevel.UserError)) as e:
        bilevel.train(source / "configs/quickstart.yaml", data=small["data"], train=small["train"],
                      output__root=str(root))
    assert str(root) in str(e.value)
    assert isinstance(e.value, (OSError, ValueError))


def test_bench_error_is_a_user_error(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: x\nentries: 3\n")
    with pytest.raises(bilevel.UserError) as e:
        bilevel.bench(suite)
    assert "entries" in str(e.value)


def test_a_layer_without_a_flip_threshold_fails_before_anything_is_written(source, small):
    with pytest.raises(bilevel.UserError) as e:
        bilevel.train(source / "configs/fmnist_mlp_ep_w1a1.yaml", "quantization.flip.layer_taus=[1e-5]", **small)
    assert "layer_taus" in str(e.value)
    assert not small_root(small).exists()
