"""Algorithm 1 bookkeeping (seed 000 §4.1) and the cost model (§4.2) on hand-computed cases."""

import dataclasses

import numpy as np
import pytest

from pyfuncs import costmodel, halving, versions
from pyfuncs.errors import ShiftError


def test_sixteen_models_top1_hand_computed():
    # |M| = 16: n = 4 rounds, B_min = 16 * 4 = 64, L = 16, 8, 4, 2,
    # r_k = floor(64 / (L * 4)) = 1, 2, 4, 8, C_min = ceil(20000 / 15) = 1334
    s = halving.schedule(16, 20000)
    assert (s.budget, s.chunk) == (64, 1334)
    assert [(r.models, r.pulls, r.seen, r.keep) for r in s.rounds] == [
        (16, 1, 1334, 8), (8, 2, 4002, 4), (4, 4, 9338, 2), (2, 8, 20000, 1)]
    assert s.samples_inferred == 16 * 1334 + 8 * 2668 + 4 * 5336 + 2 * 10662


def test_minimal_budget_and_rounds():
    assert [halving.num_rounds(m) for m in (1, 2, 3, 4, 5, 8, 9, 100)] == [0, 1, 2, 2, 3, 3, 4, 7]
    assert halving.minimal_budget(100) == 700  # |M| ceil(log2 |M|)
    with pytest.raises(ShiftError) as info:
        halving.schedule(16, 1000, budget=63)
    assert info.value.sqlstate == "22023" and "64" in info.value.message


def test_odd_pool_rounds_up_the_survivors():
    # |M| = 5: n = 3, B = 15, L = 5, 3, 2, r = floor(15/15)=1, floor(15/9)=1, floor(15/6)=2, C = ceil(100/4) = 25
    s = halving.schedule(5, 100)
    assert [(r.models, r.pulls, r.seen, r.keep) for r in s.rounds] == [(5, 1, 25, 3), (3, 1, 50, 2), (2, 2, 100, 1)]


def test_top_k_stops_when_k_remain():
    # |M| = 16, K = 3: n = ceil(log2(16/3)) = 3, B = 48, L = 16, 8, 4, r = 1, 2, 4, C = ceil(700/7) = 100
    s = halving.schedule(16, 700, top_k=3)
    assert (s.budget, s.chunk) == (48, 100)
    assert [(r.models, r.pulls, r.seen, r.keep) for r in s.rounds] == [(16, 1, 100, 8), (8, 2, 300, 4), (4, 4, 700, 3)]


def test_user_chunk_and_budget():
    big = halving.schedule(16, 1000, chunk=500)   # data runs out in round 1: everyone left sees it all
    assert [(r.models, r.seen, r.keep) for r in big.rounds] == [(16, 500, 8), (8, 1000, 1)]
    small = halving.schedule(16, 1000, chunk=10)  # the last round takes the rest of the reader
    assert [r.seen for r in small.rounds] == [10, 30, 70, 1000]
    rich = halving.schedule(8, 1000, budget=48)   # n = 3, r = 48/24, 48/12, 48/6 = 2, 4, 8
    assert [r.pulls for r in rich.rounds] == [2, 4, 8] and rich.chunk == 72


def test_no_halving_when_the_pool_is_not_larger_than_k():
    s = halving.schedule(3, 500, top_k=3)
    assert [(r.models, r.seen, r.keep) for r in s.rounds] == [(3, 500, 3)]


def test_survivors_follow_the_order_direction():
    values = {"a": 0.3, "b": 0.1, "c": 0.3, "d": 0.9}
    assert halving.survivors(values, 2) == ["b", "a"]
    assert halving.survivors(values, 3, descending=True) == ["d", "a", "c"]


def inputs(n, o=500, p=1, infer=None, load=0.5):
    infer = infer or {"m%d" % i: 1e-3 * (i + 1) for i in range(8)}
    return costmodel.CostInputs(train_samples=n, test_samples=o, devices=p, load_seconds={m: load for m in infer},
                                infer_seconds=infer, read_seconds=1e-5, feature_read_seconds=1e-6,
                                proxy_seconds=2e-5)


def test_cost_without_sh_is_the_formula():
    c = inputs(1000)
    got = costmodel.without_sh(c, list(c.infer_seconds))
    want = sum(1e-5 * 1000 + 1e-6 * 500 + 0.5 + i * 500 + i * 1000 + 2e-5 * 1000 for i in c.infer_seconds.values())
    assert got == pytest.approx(want)
    assert costmodel.without_sh(inputs(1000, p=4), list(c.infer_seconds)) == pytest.approx(want / 4)


def test_cost_with_sh_hand_computed():
    # 2 models, N = 100, O = 10, P = 1: one round of both at R = 100, then the top-1 is known
    c = costmodel.CostInputs(100, 10, 1, {"a": 1.0, "b": 2.0}, {"a": 0.01, "b": 0.02}, 0.001, 0.0001, 0.002)
    s = halving.schedule(2, 100)
    test_phase, rounds = costmodel.with_sh(c, ["a", "b"], s)
    assert test_phase == pytest.approx((1 + 0.1) + (2 + 0.2))
    per_model = lambda load, i: load + 0.001 * 100 + i * 100 + 0.0001 * 10 + 0.002 * 100  # noqa: E731
    assert rounds == [pytest.approx(per_model(1.0, 0.01) + per_model(2.0, 0.02))]


def test_plan_choice_small_reader_full_large_reader_sh():
    """§6.4: no SH for small readers (load times dominate), SH for large ones."""
    models = ["m%d" % i for i in range(16)]
    infer = {m: 2e-3 * (1 + i % 4) for i, m in enumerate(models)}
    small = costmodel.estimate(inputs(1000, infer=infer, load=2.0), models, halving.schedule(16, 1000))
    large = costmodel.estimate(inputs(50000, infer=infer, load=2.0), models, halving.schedule(16, 50000))
    assert small.choice == "full" and small.predicted_ratio > 1
    assert large.choice == "successive halving" and large.predicted_ratio < 1
    assert [r["R_k"] for r in large.terms["rounds"]] == [r.seen for r in halving.schedule(16, 50000).rounds]


def test_sh_and_full_agree_on_the_top_when_the_proxy_is_monotone_in_data_size():
    """A proxy whose ranking of models does not change with more data: SH finds the full-data best."""
    import random

    rng = random.Random(4)
    for trial in range(200):
        m, n, k = rng.randint(2, 40), rng.randint(50, 5000), rng.randint(1, 4)
        quality = {"m%02d" % i: rng.random() for i in range(m)}
        # error falls with more samples, at a model-dependent but order-preserving rate
        error = lambda model, seen: (1 - quality[model]) * (1 + 5.0 / seen)  # noqa: E731
        pulls = []

        def evaluate(alive, seen):
            pulls.append((len(alive), seen))
            return {a: error(a, seen) for a in alive}

        sched = halving.schedule(m, n, top_k=k)
        best, values = halving.run(list(quality), sched, evaluate)
        full = sorted(quality, key=lambda q: (error(q, n), q))[:k]
        assert best == full, trial
        assert pulls[-1][1] == n and all(v == error(b, n) for b, v in values.items())
        assert [p[0] for p in pulls] == [r.models for r in sched.rounds]


def test_survivor_cost_follows_the_survival_tendency():
    infer = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 6.0}
    c = inputs(100, infer=infer)
    f = infer.__getitem__
    # s = 1, the paper's S_k: the two slowest; s = 0: two average models; s = -1: the two fastest
    assert costmodel.survivor_sum(c, list(infer), 2, f) == pytest.approx(9.0)
    assert costmodel.survivor_sum(dataclasses.replace(c, survival=0.0), list(infer), 2, f) == pytest.approx(6.0)
    assert costmodel.survivor_sum(dataclasses.replace(c, survival=-1.0), list(infer), 2, f) == pytest.approx(3.0)
    assert costmodel.survivor_sum(dataclasses.replace(c, survival=0.5), list(infer), 2, f) == pytest.approx(7.5)


def test_survival_tendency_of_observed_survivors():
    infer = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 6.0}  # two average models cost 6
    assert costmodel.survival_tendency(infer, ["c", "d"]) == pytest.approx(1.0)
    assert costmodel.survival_tendency(infer, ["a", "b"]) == pytest.approx(-1.0)
    assert costmodel.survival_tendency(infer, ["a", "c"]) == pytest.approx(-2.0 / 3.0)  # 4 of 3..6
    assert costmodel.survival_tendency(infer, ["b", "d"]) == pytest.approx(2.0 / 3.0)   # 8 of 6..9
    assert costmodel.survival_tendency(infer, list(infer)) is None  # nothing was dropped: no evidence


def test_measured_survival_moves_the_sh_estimate():
    """Cheap models surviving makes SH cheaper than the paper's slowest-survive rule predicts."""
    models = ["m%d" % i for i in range(16)]
    infer = {m: 1e-3 * (1 + i) for i, m in enumerate(models)}
    sched = halving.schedule(16, 20000)
    paper = costmodel.estimate(inputs(20000, infer=infer), models, sched)
    cheap = costmodel.estimate(dataclasses.replace(inputs(20000, infer=infer), survival=-1.0), models, sched)
    assert paper.terms["survival"] == 1.0 and paper.terms["survival_observed"] == 0
    assert cheap.with_sh < paper.with_sh and cheap.without_sh == paper.without_sh
    # the first round holds every model, so only later rounds change
    assert cheap.terms["rounds"][0]["seconds"] == pytest.approx(paper.terms["rounds"][0]["seconds"])


def test_a_rerun_costs_only_the_blocks_it_lacks():
    # 2 models, N = 100 in blocks of 10, O = 10: model a has train blocks 0-8 and every test sample
    full = costmodel.CostInputs(100, 10, 1, {"a": 1.0, "b": 2.0}, {"a": 0.01, "b": 0.02}, 0.001, 0.0001, 0.002)
    c = dataclasses.replace(full, train_block_size=10, cached_train_blocks={"a": frozenset(range(9))},
                            cached_test_samples={"a": 10})
    assert c.missing_train("a", 0, 100) == 10 and c.missing_train("a", 85, 100) == 10
    assert c.missing_train("a", 0, 50) == 0 and c.missing_train("b", 0, 50) == 50
    # a: load + 10 samples read and inferred, t_O and E_Proxy over all; b as before
    a = 1.0 + (0.001 + 0.01) * 10 + 0.0001 * 10 + 0.002 * 100
    b = 0.001 * 100 + 0.0001 * 10 + 2.0 + 0.02 * 110 + 0.002 * 100
    assert costmodel.without_sh(c, ["a", "b"]) == pytest.approx(a + b)
    # nothing left to infer for a: no load either
    done = dataclasses.replace(c, cached_train_blocks={"a": frozenset(range(10))})
    assert costmodel.without_sh(done, ["a"]) == pytest.approx(0.0001 * 10 + 0.002 * 100)
    # successive halving: each round charges only what is missing among its new samples
    s = halving.schedule(2, 100)
    test_phase, rounds = costmodel.with_sh(done, ["a"], s)
    assert test_phase == 0.0
    assert costmodel.with_sh(full, ["a"], s)[1][0] > rounds[0]


def test_a_version_costs_only_its_samples_in_source_blocks_without_features():
    # base: 100 samples in blocks of 10, every block inferred by model a; a change-reader of 4 samples
    # (one block of 10) replaces 4 of them, then an add-reader of 20 (blocks of 10) is spread over the rest
    comp = versions.Composition.from_segments([["base", 0, 100]])
    comp = comp.change(versions.Composition.from_segments([["fix", 0, 4]]), np.array([3, 17, 42, 99]))
    comp = comp.add(versions.Composition.from_segments([["more", 0, 20]]))
    order = versions.spread(np.arange(100), np.arange(100, 120))
    reader = {"num_samples": 120, "options": {"segments": comp.segments(), "halving_order": versions.to_runs(order)}}
    codes, number = versions.block_codes(reader, {"base": 10, "fix": 10, "more": 10})
    assert len(codes) == 120 and set(number) == {"base", "fix", "more"}
    base = {number["base"] * versions.BLOCK_CODE_STRIDE + b for b in range(10)}
    full = costmodel.CostInputs(120, 10, 1, {"a": 1.0}, {"a": 0.01}, 0.001, 0.0001, 0.002)
    c = dataclasses.replace(full, cached_train_blocks={"a": frozenset(base)}, train_block_codes=codes)
    # the 4 changed and 20 added samples are missing, wherever halving reads them
    assert c.missing_train("a", 0, 120) == 24
    new = (order >= 100) | np.isin(order, [3, 17, 42, 99])
    assert c.missing_train("a", 0, 60) == int(new[:60].sum()) and c.missing_train("a", 60, 120) == int(new[60:].sum())
    # with the add-reader's first block inferred too, its second one (samples 10-19) is what remains
    more = dataclasses.replace(c, cached_train_blocks={"a": frozenset(base | {number["more"] * versions.BLOCK_CODE_STRIDE})})
    assert more.missing_train("a", 0, 120) == 4 + 10
    assert costmodel.estimate(c, ["a"], halving.schedule(1, 120)).terms["missing_N"] == 24
