"""The offline demo zoo: a real, reproducible, idempotent build of the tiny "test" profile."""

import json
import time

import numpy as np
import pytest

from gpu_daemon.models import load_model
from shift_cli import testbed, zoo

REGISTER_MODEL_ARGS = set(testbed.REGISTER_MODEL_ARGS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    started = time.perf_counter()
    entries = zoo.build_zoo(out, seed=0, profile="test")
    return out, entries, time.perf_counter() - started


def test_manifest(built):
    out, entries, _ = built
    assert json.loads((out / "zoo.json").read_text()) == entries
    assert len(entries) == len(zoo.PROFILES["test"].models) >= 2
    assert len({e["architecture"] for e in entries}) == len(entries)
    for e in entries:
        assert set(e) == REGISTER_MODEL_ARGS
        assert e["source"] == "timm" and e["input"] == "Vision" and e["input_size"] == zoo.IMAGE_SIZE
        assert e["upstream_dataset"] == zoo.UPSTREAM_DATASET
        assert e["options"]["num_classes"] == len(zoo.SHAPES) and e["options"]["pretrained"] is False
        assert e["checkpoint"].startswith(str(out.resolve())) and (out / e["checkpoint"]).is_file()
        # clearly above chance (1/10) on the held-out split
        assert 1.5 / len(zoo.SHAPES) < e["upstream_accuracy"] <= 1


def test_weights_load_back_and_reproduce_the_accuracy(built):
    _, entries, _ = built
    _, _, x, y = zoo.upstream_task("test", seed=0)
    for e in entries:
        model = load_model(e)
        assert (model.num_params, model.feature_dim, model.input_size) == \
            (e["num_params"], e["feature_dim"], e["input_size"])
        feats, logits = model.extract(model.preprocess(x))
        assert feats.shape == (len(y), e["feature_dim"]) and np.isfinite(feats).all()
        # the worker's path gives the accuracy the build measured (one tie may flip)
        assert abs((logits.argmax(1) == y).mean() - e["upstream_accuracy"]) <= 1 / len(y) + 1e-4


def test_second_build_is_a_no_op(built, capsys):
    out, entries, first = built
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    started = time.perf_counter()
    again = zoo.build_zoo(out, seed=0, profile="test")
    assert again == entries
    assert time.perf_counter() - started < min(1.0, first / 5)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert "up to date" in capsys.readouterr().err
    assert zoo.config_hash("test", 1) != zoo.config_hash("test", 0)


def test_shapes_are_deterministic_and_balanced():
    x1, y1 = zoo.shapes_dataset(50, seed=3)
    x2, y2 = zoo.shapes_dataset(50, seed=3)
    assert x1.shape == (50, 32, 32) and x1.dtype == np.uint8
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert np.bincount(y1, minlength=len(zoo.SHAPES)).tolist() == [5] * len(zoo.SHAPES)
    assert not np.array_equal(zoo.shapes_dataset(50, seed=4)[0], x1)
    with pytest.raises(ValueError, match="unknown zoo profile 'huge'"):
        zoo.build_zoo("/nonexistent", profile="huge")
    with pytest.raises(ValueError, match="unknown shape"):
        zoo.draw_shape("blob", np.random.default_rng(0))
