"""The benchmark zoo: a real build of the small profile (manifest, weights, cache) and the full profile's design."""

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.quality import zoo
from bench.quality.datasets import IMAGE_SIZE, UPSTREAM
from gpu_daemon.models import create_timm, load_model
from shift_cli import testbed

REGISTER_MODEL_ARGS = set(testbed.REGISTER_MODEL_ARGS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality-zoo")
    started = time.perf_counter()
    entries = zoo.build_zoo(out, seed=0, profile="small")
    return out, entries, time.perf_counter() - started


def test_manifest(built):
    out, entries, _ = built
    spec = zoo.PROFILES["small"]
    assert json.loads((out / "zoo.json").read_text()) == entries
    assert [e["model_id"] for e in entries] == [m.model_id for m in spec.models]
    assert len({e["model_id"] for e in entries}) == len(entries)
    assert len({e["architecture"] for e in entries}) >= 2
    assert len({e["upstream_dataset"] for e in entries if e["role"] == "expert"}) >= 2
    assert {e["role"] for e in entries} == {"expert", "generalist"}
    above_chance = 0
    for e in entries:
        assert set(e) == REGISTER_MODEL_ARGS | {"role"}
        assert e["model_id"].startswith(e["upstream_dataset"] + ".")
        assert e["role"] == ("generalist" if e["upstream_dataset"] == "mixture" else "expert")
        assert e["source"] == "timm" and e["input"] == "Vision" and e["input_size"] == IMAGE_SIZE
        classes = len(UPSTREAM[e["upstream_dataset"]].classes)
        assert e["options"]["num_classes"] == classes and e["options"]["pretrained"] is False
        assert Path(e["checkpoint"]).is_absolute() and e["checkpoint"].startswith(str(out.resolve()))
        assert Path(e["checkpoint"]).is_file()
        assert e["num_params"] > 0 and e["feature_dim"] > 0
        assert 0 <= e["upstream_accuracy"] <= 1
        above_chance += e["upstream_accuracy"] > 1.5 / classes
    assert above_chance >= len(entries) - 1


def test_weights_load_back_and_reproduce_the_accuracy(built):
    _, entries, _ = built
    held_out = {}
    for e in entries:
        module = create_timm(e["locator"], e["options"], pretrained=False)
        module.load_state_dict(torch.load(e["checkpoint"], map_location="cpu", weights_only=True))
        # the worker's own timm loader, given the row register_model would store
        model = load_model({k: v for k, v in e.items() if k != "role"})
        assert (model.num_params, model.feature_dim, model.input_size) == \
            (e["num_params"], e["feature_dim"], e["input_size"])
        task = e["upstream_dataset"]
        if task not in held_out:
            held_out[task] = zoo.upstream_splits(task, "small", seed=0)["test"]
        x, y = held_out[task]
        feats, logits = model.extract(model.preprocess(x))
        assert feats.shape == (len(y), e["feature_dim"]) and np.isfinite(feats).all()
        assert abs((logits.argmax(1) == y).mean() - e["upstream_accuracy"]) <= 1 / len(y) + 1e-4


def test_second_build_is_cached(built, monkeypatch, capsys):
    out, entries, first = built
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def no_training(*args, **kwargs):
        raise AssertionError("a cached build trained a model")

    monkeypatch.setattr(zoo, "_pretrain", no_training)
    started = time.perf_counter()
    assert zoo.build_zoo(out, seed=0, profile="small") == entries
    assert time.perf_counter() - started < min(2.0, first / 3)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert "up to date" in capsys.readouterr().err
    stamp = json.loads((out / "zoo.build.json").read_text())
    assert stamp["profile"] == "small" and stamp["seconds"] > 0 and set(stamp["seconds_per_model"]) == \
        {e["model_id"] for e in entries}
    assert zoo.config_hash("small", 1) != zoo.config_hash("small", 0)


def test_full_profile_has_experts_and_generalists():
    models = zoo.PROFILES["full"].models
    assert len(models) >= 24 and len({m.model_id for m in models}) == len(models)
    assert len({m.architecture for m in models}) >= 6
    experts = [m for m in models if m.role == "expert"]
    generalists = [m for m in models if m.role == "generalist"]
    narrow = [t for t in UPSTREAM if t != zoo.GENERALIST_TASK]
    per_domain = Counter(m.upstream for m in experts)
    assert per_domain == {t: 2 for t in narrow}
    for t in narrow:  # two different families per domain
        assert len({m.architecture for m in experts if m.upstream == t}) == 2
    # the same architecture across domains: a pool like seed 002's Expert pool
    assert any(all(any(m.upstream == t and m.locator == loc for m in experts) for t in narrow)
               for loc in {m.locator for m in experts})
    assert all(m.upstream == zoo.GENERALIST_TASK for m in generalists)
    assert len({m.locator for m in generalists}) >= 6
    lengths = Counter(m.locator for m in generalists)
    assert any(n >= 2 and len({m.steps for m in generalists if m.locator == loc}) >= 2 for loc, n in lengths.items())


def test_every_full_profile_architecture_runs_at_32x32():
    seen = set()
    for m in zoo.PROFILES["full"].models:
        if (m.locator, m.model_kwargs) in seen:
            continue
        seen.add((m.locator, m.model_kwargs))
        module = create_timm(m.locator, zoo.model_options(m, 7), pretrained=False).eval()
        with torch.inference_mode():
            out = module(torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE))
        assert out.shape == (2, 7), m.locator


def test_only_mirror_invariant_classes_are_flipped():
    mixture = UPSTREAM[zoo.GENERALIST_TASK]
    flags = zoo.mirror_invariant_classes(mixture)
    assert flags.shape == (len(mixture.classes),)
    for c, flag in zip(mixture.classes, flags):
        assert flag == (c.split(":")[0] in {"shapes", "textures", "counts"}), c
    assert not zoo.mirror_invariant_classes(UPSTREAM["glyphs"]).any()
    assert zoo.mirror_invariant_classes(UPSTREAM["shapes"]).all()


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown zoo profile 'huge'"):
        zoo.build_zoo("/nonexistent", profile="huge")
