"""Compositions of mutable readers and the halving order of add-readers (pyfuncs/versions.py)."""

import numpy as np
import pytest

from pyfuncs import versions
from pyfuncs.versions import Composition


def plain(name, n):
    return Composition.from_segments([[name, 0, n]])


def samples(comp):
    return list(zip([comp.sources[s] for s in comp.src], comp.idx.tolist()))


def test_random_steps_match_a_list_model_and_round_trip_through_segments():
    rng = np.random.default_rng(3)
    comp, model = plain("base", 50), [("base", i) for i in range(50)]
    for step in range(30):
        kind = rng.choice(["change", "add", "delete"])
        name = "r%d" % step
        if kind == "change":
            idx = rng.choice(len(model), size=rng.integers(1, 8), replace=False)
            comp = comp.change(plain(name, len(idx)), idx)
            for j, i in enumerate(idx):
                model[i] = (name, j)
        elif kind == "add":
            m = int(rng.integers(1, 6))
            comp = comp.add(plain(name, m))
            model += [(name, j) for j in range(m)]
        elif len(model) > 5:
            idx = rng.choice(len(model), size=rng.integers(1, 4), replace=False)
            comp = comp.delete(idx)
            model = [s for i, s in enumerate(model) if i not in set(idx.tolist())]
        assert samples(comp) == model
        assert samples(Composition.from_segments(comp.segments())) == model


def test_segments_are_maximal_runs():
    comp = plain("a", 10).change(plain("c", 2), np.array([3, 4]))
    assert comp.segments() == [["a", 0, 3], ["c", 0, 2], ["a", 5, 10]]
    assert comp.add(plain("a", 0)).segments() == comp.segments()


@pytest.mark.parametrize("n,m", [(1000, 100), (1000, 500), (997, 31), (20, 200)])
def test_spread_gives_every_chunk_its_share_of_the_added_samples(n, m):
    order = versions.spread(np.arange(n), np.arange(n, n + m))
    assert sorted(order.tolist()) == list(range(n + m))
    # both orders are kept
    assert [p for p in order.tolist() if p < n] == list(range(n))
    assert [p for p in order.tolist() if p >= n] == list(range(n, n + m))
    is_new = order >= n
    for chunk in (7, 50, 128, (n + m) // 3):
        for start in range(0, n + m - chunk + 1, chunk):
            expected = chunk * m / (n + m)
            # every chunk holds the share a uniform reshuffle gives in expectation (seed 000 §5), within 2
            assert abs(is_new[start:start + chunk].sum() - expected) <= 2
        # and every prefix within 1
    prefix = np.cumsum(is_new)
    lengths = np.arange(1, n + m + 1)
    assert np.all(np.abs(prefix - lengths * m / (n + m)) <= 1)


def test_spread_keeps_an_earlier_spread_and_appending_would_not():
    first = versions.spread(np.arange(100), np.arange(100, 150))
    second = versions.spread(first, np.arange(150, 160))
    assert [p for p in second.tolist() if p < 150] == first.tolist()
    assert (second[:16] >= 150).sum() >= 1  # the newest samples reach the first chunk, not only the end


def test_drop_positions_renumbers_and_keeps_order():
    order = np.array([0, 5, 1, 6, 2, 3, 4])
    assert versions.drop_positions(order, [1, 5], 7).tolist() == [0, 4, 1, 2, 3]


def test_runs_round_trip():
    order = versions.spread(np.arange(30), np.arange(30, 40))
    assert versions.from_runs(versions.to_runs(order)).tolist() == order.tolist()
    assert versions.to_runs(np.arange(5)) == [[0, 5]]


def test_positions_and_needed_blocks_of_a_version():
    comp = plain("a", 10).change(plain("c", 3), np.array([0, 4, 9])).add(plain("b", 5))
    order = versions.spread(np.arange(10), np.arange(10, 15))
    reader = {"num_samples": 15, "options": {"segments": comp.segments(), "halving_order": versions.to_runs(order)}}
    assert versions.positions(reader, None).tolist() == list(range(15))
    assert versions.positions(reader, 15).tolist() == list(range(15))
    assert versions.positions(reader, 4).tolist() == order[:4].tolist()
    need = versions.needed_blocks(reader, None, {"a": 4, "b": 2, "c": 2})
    assert need == {"a": [0, 1, 2], "c": [0, 1], "b": [0, 1, 2]}
    # the first 3 halving positions are 0 (changed: c[0]), 10 (added: b[0]) and 1 (a[1])
    assert versions.needed_blocks(reader, 3, {"a": 4, "b": 2, "c": 2}) == {"a": [0], "c": [0], "b": [0]}
