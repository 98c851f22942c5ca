"""Regret, log-odds regret, weighted tau and their aggregation (bench/quality/metrics.py, seed 002 §3, App. C)."""

import math

import pytest

from bench.quality.metrics import (
    ALL_KINDS,
    LOGIT_EPS,
    FineTuneResult,
    Selection,
    evaluate,
    log_odds_regret,
    logit,
    regret,
    summarise,
    weighted_tau,
)

POOL = ["a", "b", "c", "d"]
ACCURACY = {"a": 0.9, "b": 0.8, "c": 0.6, "d": 0.5}


# ---------------------------------------------------------------- regret (Eq. 1, Eq. 2)


def test_regret_is_zero_when_the_best_model_is_picked():
    assert regret(["a"], POOL, ACCURACY) == (0.0, 0.0)


def test_regret_is_zero_when_the_best_model_is_the_second_of_two_picks():
    assert regret(["c", "a"], POOL, ACCURACY) == (0.0, 0.0)


def test_regret_is_the_gap_to_the_best_of_the_pool():
    absolute, relative = regret(["c", "d"], POOL, ACCURACY)
    assert absolute == pytest.approx(0.9 - 0.6)
    assert relative == pytest.approx((0.9 - 0.6) / 0.9)


def test_relative_regret_matches_eq2_on_hand_numbers():
    # Oracle 0.8, best pick 0.6: absolute 0.2, relative 0.2 / 0.8 = 0.25.
    absolute, relative = regret(["c"], ["b", "c", "d"], ACCURACY)
    assert absolute == pytest.approx(0.2)
    assert relative == pytest.approx(0.25)


def test_regret_with_an_oracle_of_zero_is_zero():
    assert regret(["x"], ["x", "y"], {"x": 0.0, "y": 0.0}) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("picked", "pool", "accuracy", "message"),
    [
        ([], POOL, ACCURACY, "at least one model"),
        (["e"], POOL, ACCURACY, "not in the pool: e"),
        (["a"], POOL + ["e"], ACCURACY, "no fine-tuned accuracy for pool model"),
        (["a"], POOL, {**ACCURACY, "a": 90.0}, "fractions in \\[0, 1\\]"),
        (["a"], POOL, {**ACCURACY, "b": math.nan}, "fractions in \\[0, 1\\]"),
    ],
)
def test_regret_rejects_bad_input(picked, pool, accuracy, message):
    with pytest.raises(ValueError, match=message):
        regret(picked, pool, accuracy)


# ---------------------------------------------------------------- log-odds (Appendix C)


def test_log_odds_regret_on_hand_numbers():
    # logit(0.8) = log 4, logit(0.5) = 0.
    assert log_odds_regret(["d"], ["b", "c", "d"], ACCURACY) == pytest.approx(math.log(4.0))
    # logit(0.9) - logit(0.6) = log 9 - log 1.5 = log 6.
    assert log_odds_regret(["c"], POOL, ACCURACY) == pytest.approx(math.log(6.0))
    assert log_odds_regret(["b", "a"], POOL, ACCURACY) == 0.0


def test_log_odds_regret_clips_perfect_accuracy():
    accuracy = {"x": 1.0, "y": 0.5}
    expected = math.log((1.0 - LOGIT_EPS) / LOGIT_EPS)
    assert logit(1.0) == pytest.approx(expected)
    assert logit(0.0) == pytest.approx(-expected)
    assert log_odds_regret(["y"], ["x", "y"], accuracy) == pytest.approx(expected)
    assert math.isfinite(log_odds_regret(["y"], ["x", "y"], {"x": 1.0, "y": 0.0}))


# ---------------------------------------------------------------- weighted tau


def test_weighted_tau_is_one_for_a_perfect_ranking_and_minus_one_for_the_reverse():
    assert weighted_tau({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, ACCURACY, True) == pytest.approx(1.0)
    assert weighted_tau({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, ACCURACY, True) == pytest.approx(-1.0)


def test_weighted_tau_orients_lower_is_better_scores():
    errors = {"a": 0.1, "b": 0.2, "c": 0.4, "d": 0.5}
    assert weighted_tau(errors, ACCURACY, higher_is_better=False) == pytest.approx(1.0)
    assert weighted_tau(errors, ACCURACY, higher_is_better=True) == pytest.approx(-1.0)


def test_weighted_tau_weighs_the_top_more_than_the_bottom():
    top_swapped = weighted_tau({"a": 3.0, "b": 4.0, "c": 2.0, "d": 1.0}, ACCURACY, True)
    bottom_swapped = weighted_tau({"a": 4.0, "b": 3.0, "c": 1.0, "d": 2.0}, ACCURACY, True)
    assert -1.0 < top_swapped < bottom_swapped < 1.0


def test_weighted_tau_is_nan_without_a_ranking():
    assert math.isnan(weighted_tau({"a": 1.0}, ACCURACY, True))
    assert math.isnan(weighted_tau({"a": 1.0, "b": 1.0, "c": 1.0}, ACCURACY, True))
    assert math.isnan(weighted_tau({"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 0.5}, True))
    # Models without an accuracy or with a non-finite score do not take part.
    assert math.isnan(weighted_tau({"a": 1.0, "e": 2.0, "b": math.nan}, ACCURACY, True))


# ---------------------------------------------------------------- evaluate


def finetune_table():
    seconds = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}
    accuracy = {
        "flowers": ACCURACY,
        "clevr": {"a": 0.4, "b": 0.5, "c": 0.7, "d": 0.3},
    }
    return {
        (task, m): FineTuneResult(test_accuracy=acc[m], validation_accuracy=acc[m] - 0.01, seconds=seconds[m])
        for task, acc in accuracy.items()
        for m in POOL
    }


POOLS = {"All": POOL, "Small": ["b", "c", "d"]}
KINDS = {"flowers": "natural", "clevr": "structured"}


def selection(task, pool, strategy, budget, picked, search_seconds, scores=None, higher_is_better=True):
    return Selection(task=task, pool=pool, strategy=strategy, budget=budget, picked=picked, scores=scores,
                     higher_is_better=higher_is_better, search_seconds=search_seconds)


def test_evaluate_on_a_hand_built_case():
    scores = {"a": 0.7, "b": 0.9, "c": 0.3, "d": 0.1}
    rows = evaluate(
        [
            selection("flowers", "All", "linear", 1, ["b"], 5.0, scores),
            selection("flowers", "Small", "linear", 1, ["b"], 5.0, {m: scores[m] for m in POOLS["Small"]}),
            selection("flowers", "All", "hybrid", 2, ["c", "a"], 10.0),
        ],
        finetune_table(),
        POOLS,
        KINDS,
    )
    by_key = {(r.pool, r.strategy): r for r in rows}
    assert [(r.task, r.pool, r.strategy) for r in rows] == [
        ("flowers", "All", "hybrid"),
        ("flowers", "All", "linear"),
        ("flowers", "Small", "linear"),
    ]

    linear_all = by_key[("All", "linear")]
    assert linear_all.kind == "natural"
    assert linear_all.picked == ("b",)
    assert linear_all.best_model == "a"
    assert linear_all.oracle_accuracy == 0.9
    assert linear_all.achieved_accuracy == 0.8
    assert linear_all.regret == pytest.approx(0.1)
    assert linear_all.relative_regret == pytest.approx(0.1 / 0.9)
    assert linear_all.log_odds_regret == pytest.approx(math.log(9.0) - math.log(4.0))
    assert -1.0 < linear_all.weighted_tau < 1.0
    # Speedup: fine-tuning a..d (10+20+30+40 s) against 5 s of search and 20 s fine-tuning b.
    assert linear_all.finetune_picked_seconds == 20.0
    assert linear_all.finetune_all_seconds == 100.0
    assert linear_all.speedup == pytest.approx(100.0 / 25.0)

    # The best model of All (a) is outside Small: there b is the oracle and regret is 0.
    linear_small = by_key[("Small", "linear")]
    assert linear_small.best_model == "b"
    assert linear_small.oracle_accuracy == 0.8
    assert linear_small.regret == 0.0 and linear_small.relative_regret == 0.0
    assert linear_small.weighted_tau == pytest.approx(1.0)
    assert linear_small.finetune_all_seconds == 90.0
    assert linear_small.speedup == pytest.approx(90.0 / 25.0)

    hybrid = by_key[("All", "hybrid")]
    assert hybrid.picked == ("c", "a")
    assert hybrid.regret == 0.0
    assert math.isnan(hybrid.weighted_tau)
    assert hybrid.finetune_picked_seconds == 40.0
    assert hybrid.speedup == pytest.approx(100.0 / 50.0)


def test_evaluate_lower_is_better_scores_give_a_positive_tau():
    errors = {"a": 0.05, "b": 0.1, "c": 0.3, "d": 0.4}
    (row,) = evaluate([selection("flowers", "All", "linear", 1, ["a"], 1.0, errors, higher_is_better=False)],
                      finetune_table(), POOLS, KINDS)
    assert row.weighted_tau == pytest.approx(1.0)


def test_evaluate_speedup_with_free_search_and_nothing_to_fine_tune():
    finetune = {("t", "x"): FineTuneResult(0.5, 0.5, 0.0), ("t", "y"): FineTuneResult(0.4, 0.4, 3.0)}
    rows = evaluate(
        [selection("t", "P", "s", 1, ["x"], 0.0), selection("t", "P", "s", 2, ["x", "y"], 0.0)],
        finetune, {"P": ["x", "y"]}, {"t": "natural"},
    )
    assert rows[0].speedup == math.inf
    assert rows[1].speedup == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        (selection("flowers", "All", "s", 1, ["a", "b"], 0.0), "more than its budget"),
        (selection("flowers", "All", "s", 2, ["a", "a"], 0.0), "picks a model twice"),
        (selection("flowers", "Small", "s", 1, ["a"], 0.0), "not in the pool: a"),
        (selection("flowers", "Nope", "s", 1, ["a"], 0.0), "unknown pool"),
        (selection("pets", "All", "s", 1, ["a"], 0.0), "no task kind"),
    ],
)
def test_evaluate_rejects_bad_selections(sel, message):
    with pytest.raises(ValueError, match=message):
        evaluate([sel], finetune_table(), POOLS, {**KINDS})


def test_evaluate_needs_every_pool_model_fine_tuned():
    finetune = finetune_table()
    del finetune[("flowers", "d")]
    with pytest.raises(ValueError, match="no fine-tune result on 'flowers' for pool model\\(s\\): d"):
        evaluate([selection("flowers", "All", "s", 1, ["a"], 0.0)], finetune, POOLS, KINDS)


# ---------------------------------------------------------------- summarise


def test_summarise_means_medians_and_zero_regret_fractions():
    rows = evaluate(
        [
            # flowers: relative regret 0.1 / 0.9; clevr: 0 (c is best).
            selection("flowers", "All", "linear", 1, ["b"], 4.0),
            selection("clevr", "All", "linear", 1, ["c"], 6.0),
            # agnostic: flowers 0 (a), clevr (0.7 - 0.4) / 0.7.
            selection("flowers", "All", "agnostic", 1, ["a"], 0.0),
            selection("clevr", "All", "agnostic", 1, ["a"], 0.0),
        ],
        finetune_table(), POOLS, KINDS,
    )
    summary = {(s.strategy, s.budget, s.pool, s.kind): s for s in summarise(rows)}
    assert sorted(summary) == [
        ("agnostic", 1, "All", "all"),
        ("agnostic", 1, "All", "natural"),
        ("agnostic", 1, "All", "structured"),
        ("linear", 1, "All", "all"),
        ("linear", 1, "All", "natural"),
        ("linear", 1, "All", "structured"),
    ]
    linear = summary[("linear", 1, "All", ALL_KINDS)]
    assert linear.tasks == 2
    assert linear.mean_relative_regret == pytest.approx((0.1 / 0.9 + 0.0) / 2)
    assert linear.median_relative_regret == pytest.approx((0.1 / 0.9 + 0.0) / 2)
    assert linear.zero_regret_fraction == 0.5
    assert linear.mean_regret == pytest.approx(0.05)
    assert linear.mean_search_seconds == 5.0
    assert linear.mean_finetune_picked_seconds == pytest.approx((20.0 + 30.0) / 2)
    assert linear.mean_finetune_all_seconds == 100.0
    assert linear.speedup == pytest.approx(200.0 / (10.0 + 50.0))
    assert math.isnan(linear.mean_weighted_tau)

    assert summary[("linear", 1, "All", "natural")].mean_relative_regret == pytest.approx(0.1 / 0.9)
    assert summary[("linear", 1, "All", "structured")].mean_relative_regret == 0.0
    assert summary[("linear", 1, "All", "structured")].zero_regret_fraction == 1.0
    assert summary[("agnostic", 1, "All", "structured")].mean_relative_regret == pytest.approx(0.3 / 0.7)
    assert summary[("agnostic", 1, "All", ALL_KINDS)].speedup == pytest.approx(200.0 / 20.0)


def test_summarise_averages_repeated_selections_per_task_first():
    rows = evaluate(
        [
            # Two runs of a randomised strategy on flowers (regrets 0 and 0.3 / 0.9), one on clevr (0).
            selection("flowers", "All", "random", 1, ["a"], 1.0),
            selection("flowers", "All", "random", 1, ["c"], 1.0),
            selection("clevr", "All", "random", 1, ["c"], 1.0),
        ],
        finetune_table(), POOLS, KINDS,
    )
    overall = summarise(rows)[0]
    assert overall.kind == ALL_KINDS and overall.tasks == 2
    flowers = (0.0 + 0.3 / 0.9) / 2
    assert overall.mean_relative_regret == pytest.approx((flowers + 0.0) / 2)
    assert overall.zero_regret_fraction == pytest.approx((0.5 + 1.0) / 2)
