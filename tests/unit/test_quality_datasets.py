"""The benchmark's generated tasks: the contract others code against, determinism, balance and learnability."""

import numpy as np
import pytest

from bench.quality import datasets as ds

ALL_TASKS = {**ds.UPSTREAM, **ds.DOWNSTREAM}
DOWNSTREAM_KINDS = ("natural", "specialised", "structured")


def test_registries():
    narrow = [t for name, t in ds.UPSTREAM.items() if name != "mixture"]
    assert len(narrow) >= 6 and "mixture" in ds.UPSTREAM
    assert len(ds.DOWNSTREAM) >= 8
    assert all(t.kind == "upstream" for t in ds.UPSTREAM.values())
    for kind in DOWNSTREAM_KINDS:
        assert sum(t.kind == kind for t in ds.DOWNSTREAM.values()) >= 2, kind
    assert {t.kind for t in ds.DOWNSTREAM.values()} == set(DOWNSTREAM_KINDS)
    assert not set(ds.UPSTREAM) & set(ds.DOWNSTREAM)
    for name, t in ALL_TASKS.items():
        assert t.name == name and name.isidentifier()
        assert len(t.classes) >= 2 and len(set(t.classes)) == len(t.classes)
        assert t.description and "\n" not in t.description


def test_the_mixture_is_the_union_of_the_domains_labelled_by_domain_and_class():
    narrow = [t for name, t in ds.UPSTREAM.items() if name != "mixture"]
    assert ds.UPSTREAM["mixture"].classes == tuple("%s:%s" % (t.name, c) for t in narrow for c in t.classes)


@pytest.mark.parametrize("name", sorted(ALL_TASKS))
def test_generate_is_deterministic_balanced_and_well_formed(name):
    task = ALL_TASKS[name]
    k = len(task.classes)
    n = 2 * k + 1 if k < 20 else k + 3
    x, y = task.generate(n, seed=5)
    assert x.shape == (n, ds.IMAGE_SIZE, ds.IMAGE_SIZE, 3) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=k)
    assert len(counts) == k and counts.min() >= n // k and counts.max() <= -(-n // k)
    assert (x.reshape(n, -1).std(axis=1) > 2).all(), "blank images"
    x2, y2 = task.generate(n, seed=5)
    assert x2.tobytes() == x.tobytes() and np.array_equal(y, y2)
    x3, _ = task.generate(n, seed=6)
    assert x3.tobytes() != x.tobytes()


def test_every_class_is_drawn_shuffled():
    task = ds.DOWNSTREAM["terrain"]
    _, y = task.generate(80, seed=0)
    assert set(y.tolist()) == set(range(len(task.classes)))
    assert not np.array_equal(y, np.sort(y))


def test_empty_draw():
    x, y = ds.DOWNSTREAM["photos"].generate(0, seed=0)
    assert x.shape == (0, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (0,) and y.dtype == np.int64


def test_splits_are_disjoint_and_reproducible():
    task = ds.DOWNSTREAM["housenumbers"]
    sizes = {"train": 60, "validation": 20, "test": 40}
    first = ds.splits(task, sizes, seed=1)
    assert list(first) == list(sizes)
    assert {s: len(y) for s, (_, y) in first.items()} == sizes
    seen = {}
    for split, (x, _) in first.items():
        for img in x:
            assert seen.setdefault(img.tobytes(), split) == split, "an image occurs in two splits"
    again = ds.splits(task, sizes, seed=1)
    assert all(first[s][0].tobytes() == again[s][0].tobytes() for s in sizes)
    other = ds.splits(task, sizes, seed=2)
    assert first["train"][0].tobytes() != other["train"][0].tobytes()


def test_picture_fonts_are_left_out():
    assert not any(ds._PICTURE_FONTS.search(p) for p in ds.font_paths())
    assert ds._PICTURE_FONTS.search("StandardSymbolsPS.otf") and ds._PICTURE_FONTS.search("D050000L.otf")


def test_glyph_tasks_work_without_system_fonts(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FONT_DIR", tmp_path)
    ds.font_paths.cache_clear()
    ds._font.cache_clear()
    try:
        assert ds.font_paths() == ()
        for name in ("glyphs", "lowercase", "housenumbers"):
            task = ALL_TASKS[name]
            x, _ = task.generate(len(task.classes), seed=0)
            assert (x.reshape(len(x), -1).std(axis=1) > 5).all()  # Pillow's bundled font drew something
    finally:
        monkeypatch.undo()
        ds.font_paths.cache_clear()
        ds._font.cache_clear()


def _pixel_features(x: np.ndarray) -> np.ndarray:
    """Pixels pooled to 16x16, and the magnitude of per-image standardised grey levels (polarity-free shapes)."""
    x = x.astype(np.float32) / 255
    pooled = x.reshape(len(x), 16, 2, 16, 2, 3).mean(axis=(2, 4))
    grey = pooled.mean(axis=-1)
    z = (grey - grey.mean(axis=(1, 2), keepdims=True)) / (grey.std(axis=(1, 2), keepdims=True) + 0.02)
    return np.concatenate([pooled.reshape(len(x), -1), np.abs(z).reshape(len(x), -1)], axis=1)


@pytest.mark.parametrize("name", sorted(ds.DOWNSTREAM))
def test_downstream_tasks_are_learnable_but_not_trivial(name):
    """A linear classifier on pixels of 400 images beats chance clearly, yet does not solve the task.

    A generator whose labels do not match its images lands at chance; one whose label
    leaks (a class colour, a fixed position) lands near 1.
    """
    from sklearn.linear_model import RidgeClassifier

    task = ds.DOWNSTREAM[name]
    data = ds.splits(task, {"train": 400, "test": 200}, seed=0)
    (x_train, y_train), (x_test, y_test) = data["train"], data["test"]
    f_train, f_test = _pixel_features(x_train), _pixel_features(x_test)
    mu, sd = f_train.mean(axis=0), f_train.std(axis=0) + 1e-3
    acc = RidgeClassifier(alpha=100.0).fit((f_train - mu) / sd, y_train).score((f_test - mu) / sd, y_test)
    chance = 1 / len(task.classes)
    assert 1.3 * chance < acc < 0.95, "accuracy %.3f, chance %.3f" % (acc, chance)
