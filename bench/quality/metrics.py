"""How good a search strategy's picks are: regret, log-odds regret and rank correlation (seed 002).

Seed 002 (§3) judges a search strategy S with budget B by what fine-tuning its B
picks achieves, compared with fine-tuning every model of the pool M:

    absolute regret  (Eq. 1)  E[max_{m in M} t(m, D)] - E[max_{m in S(M, D)} t(m, D)]
    relative delta   (Eq. 2)  (E[max over S1] - E[max over S2]) / E[max over S1]
    relative regret           Eq. 2 with S1 = the oracle (the whole pool), S2 = the strategy

where t(m, D) is the test accuracy of model m fine-tuned on task D. Relative regret
makes tasks of different difficulty comparable and lies in [0, 1]; it is the main
number of the benchmark (§5.4 "Alternative evaluation scores"). Appendix C's log-odds
regret takes the same difference on logit-transformed accuracies, which stretches
gaps near 100 % accuracy; §5.4 reports that it leads to the same conclusions, so it is
computed alongside as a check. Appendix B argues that rank correlation is the wrong
yardstick for search (zero regret does not need a good correlation), so the weighted
Kendall tau is reported only as a diagnostic for strategies that score every model.

The expectations of Eq. 1 are over fine-tuning randomness; here they are estimated by
whatever single number the ground truth holds per (task, model) (the seed takes the
median of 5 fine-tuning runs, §4.3). Repeated selections of one randomised strategy on
one task are averaged per task before averaging over tasks (`summarise`).

`evaluate` turns the harness's selections into one `Row` per (task, pool, strategy,
budget); `summarise` aggregates them per (strategy, budget, pool), over all tasks and
per task kind (natural / specialised / structured, §4.1). Pools follow §4.2: the oracle
is the best model *of the pool*, so a better model outside the pool does not count.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import weightedtau

# Accuracies are clipped into [LOGIT_EPS, 1 - LOGIT_EPS] before the logit so that a
# perfect (or zero) test accuracy gives a finite log-odds. 1e-4 is finer than the
# resolution of any test set below 10,000 images, so it only ever touches exact 0 and 1,
# where it caps logit(p) at about +-9.21.
LOGIT_EPS = 1e-4

# The `kind` of summary rows that aggregate over every task kind.
ALL_KINDS = "all"

# Seed 002's grouping of VTAB tasks (§4.1), in the order the report lists them.
TASK_KINDS = ("natural", "specialised", "structured")


@dataclass(frozen=True)
class FineTuneResult:
    """Ground truth for one (task, model): what fine-tuning the model achieves and costs."""

    test_accuracy: float
    validation_accuracy: float
    seconds: float


@dataclass(frozen=True)
class Selection:
    """What one strategy returned for one task and pool with budget `budget`.

    `picked` is in rank order (best first). `scores` holds the strategy's score of every
    model of the pool when the strategy ranks them all (task-agnostic and task-aware
    proxies); None for strategies that only return a set (hybrids). `higher_is_better`
    gives the orientation of `scores` (an error rate ranks ascending, an accuracy
    descending). Any object with these attributes is accepted by `evaluate`.
    """

    task: str
    pool: str
    strategy: str
    budget: int
    picked: Sequence[str]
    scores: Mapping[str, float] | None
    higher_is_better: bool
    search_seconds: float


@dataclass(frozen=True)
class Row:
    """The quality and cost of one selection (one task, pool, strategy and budget)."""

    task: str
    kind: str
    pool: str
    strategy: str
    budget: int
    picked: tuple[str, ...]
    best_model: str
    oracle_accuracy: float
    achieved_accuracy: float
    regret: float
    relative_regret: float
    log_odds_regret: float
    weighted_tau: float
    search_seconds: float
    finetune_picked_seconds: float
    finetune_all_seconds: float
    speedup: float


@dataclass(frozen=True)
class SummaryRow:
    """Aggregate of the rows of one (strategy, budget, pool) over the tasks of one kind.

    `kind` is ALL_KINDS for the aggregate over every task. Means are over tasks (each
    task weighs the same, as in the seed's per-dataset figures). `zero_regret_fraction`
    is how often the strategy picked a best model (§5.4, Figure 7). `speedup` is the
    ratio of totals: fine-tuning the whole pool on every task against searching and
    fine-tuning the picks on every task, so one cheap task cannot dominate it.
    """

    strategy: str
    budget: int
    pool: str
    kind: str
    tasks: int
    mean_relative_regret: float
    median_relative_regret: float
    zero_regret_fraction: float
    mean_regret: float
    mean_log_odds_regret: float
    mean_weighted_tau: float
    mean_search_seconds: float
    mean_finetune_picked_seconds: float
    mean_finetune_all_seconds: float
    speedup: float


def _accuracies_of(models: Iterable[str], accuracy: Mapping[str, float], what: str) -> list[float]:
    models = list(models)
    unknown = sorted({m for m in models if m not in accuracy})
    if unknown:
        raise ValueError(f"no fine-tuned accuracy for {what} model(s): {', '.join(unknown)}")
    values = [float(accuracy[m]) for m in models]
    for model, value in zip(models, values, strict=True):
        # Fractions, not percentages: log-odds and relative regret assume them.
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"accuracy of {model} is {value!r}; accuracies are fractions in [0, 1]")
    return values


def _best_of_pool_and_picks(
    picked: Sequence[str], pool: Sequence[str], accuracy: Mapping[str, float]
) -> tuple[float, float]:
    """(oracle accuracy over the pool, best accuracy among the picks), validated."""
    if not picked:
        raise ValueError("a strategy must pick at least one model (budget >= 1)")
    if not pool:
        raise ValueError("the pool is empty")
    pool_set = set(pool)
    outside = sorted({m for m in picked if m not in pool_set})
    if outside:
        raise ValueError(f"picked model(s) not in the pool: {', '.join(outside)}")
    oracle = max(_accuracies_of(pool, accuracy, "pool"))
    achieved = max(_accuracies_of(picked, accuracy, "picked"))
    return oracle, achieved


def regret(picked: Sequence[str], pool: Sequence[str], accuracy: Mapping[str, float]) -> tuple[float, float]:
    """(absolute, relative) regret of fine-tuning `picked` instead of all of `pool` (Eq. 1, Eq. 2).

    `accuracy` maps each model to its fine-tuned test accuracy on the task (a fraction).
    `picked` must be a non-empty subset of `pool`, and every model of the pool needs an
    accuracy, since the oracle is the best of the pool. When the oracle accuracy is 0
    every model scored 0, the absolute regret is 0 and the relative regret is defined as 0
    (Eq. 2 would divide 0 by 0).
    """
    oracle, achieved = _best_of_pool_and_picks(picked, pool, accuracy)
    absolute = oracle - achieved
    relative = 0.0 if oracle == 0.0 else absolute / oracle
    return absolute, relative


def logit(p: float, eps: float = LOGIT_EPS) -> float:
    """log(p / (1 - p)) of p clipped into [eps, 1 - eps] (Appendix C)."""
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def log_odds_regret(
    picked: Sequence[str], pool: Sequence[str], accuracy: Mapping[str, float], eps: float = LOGIT_EPS
) -> float:
    """Appendix C's log-odds regret: logit(oracle accuracy) - logit(best picked accuracy).

    Like Eq. 1 on logit-transformed accuracies; since logit is increasing, the max of the
    logits is the logit of the max. A difference, not a ratio (as in Appendix C): logits
    can be 0 or negative, so dividing by the oracle's would be meaningless. Accuracies are
    clipped into [eps, 1 - eps] first so that 0 and 1 stay finite (see LOGIT_EPS).
    """
    oracle, achieved = _best_of_pool_and_picks(picked, pool, accuracy)
    return logit(oracle, eps) - logit(achieved, eps)


def weighted_tau(scores: Mapping[str, float], accuracy: Mapping[str, float], higher_is_better: bool) -> float:
    """Weighted Kendall tau between a strategy's scores and fine-tuned accuracies.

    Oriented so that scores that rank the models exactly as their accuracies do give +1
    and the reverse ranking -1, whatever the direction of the scores. The weighting
    (scipy's hyperbolic rank weights) puts most weight on the top of both rankings, the
    part that matters for search. Computed over the models that have both a finite score
    and an accuracy; NaN when fewer than 2 remain or either side is constant (no ranking
    to compare). A diagnostic only: Appendix B shows correlation and regret can disagree.
    """
    models = sorted(m for m in scores if m in accuracy and math.isfinite(float(scores[m])))
    if len(models) < 2:
        return math.nan
    sign = 1.0 if higher_is_better else -1.0
    oriented = np.array([sign * float(scores[m]) for m in models])
    truth = np.array([float(accuracy[m]) for m in models])
    if np.all(oriented == oriented[0]) or np.all(truth == truth[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(weightedtau(truth, oriented).statistic)


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with x / 0 = inf for x > 0 and 0 / 0 = NaN."""
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else math.nan


def _best_model(pool: Sequence[str], accuracy: Mapping[str, float]) -> str:
    # Ties broken by model id so that the report does not depend on the pool's order.
    return min(pool, key=lambda m: (-float(accuracy[m]), m))


def evaluate(
    selections: Iterable[Selection],
    finetune: Mapping[tuple[str, str], FineTuneResult],
    pools: Mapping[str, Sequence[str]],
    kinds: Mapping[str, str],
) -> list[Row]:
    """One Row per selection, sorted by (task, pool, strategy, budget).

    `finetune[(task, model)]` is the ground truth; every model of a selection's pool must
    have one for the selection's task. Raises ValueError on a selection that picks more
    models than its budget, picks a model twice or outside its pool, or names an unknown
    pool or task.
    """
    rows = []
    for selection in selections:
        task, pool_name = selection.task, selection.pool
        if pool_name not in pools:
            raise ValueError(f"unknown pool {pool_name!r} in a selection of {selection.strategy!r}")
        if task not in kinds:
            raise ValueError(f"no task kind for task {task!r}")
        pool = list(pools[pool_name])
        picked = tuple(selection.picked)
        label = f"{selection.strategy!r} (B={selection.budget}) on {task!r}, pool {pool_name!r}"
        if len(set(picked)) != len(picked):
            raise ValueError(f"{label} picks a model twice: {list(picked)}")
        if len(picked) > selection.budget:
            raise ValueError(f"{label} picks {len(picked)} models, more than its budget")
        missing = sorted(m for m in pool if (task, m) not in finetune)
        if missing:
            raise ValueError(f"no fine-tune result on {task!r} for pool model(s): {', '.join(missing)}")
        results = {m: finetune[(task, m)] for m in pool}
        accuracy = {m: r.test_accuracy for m, r in results.items()}

        absolute, relative = regret(picked, pool, accuracy)
        tau = math.nan
        if selection.scores is not None:
            pool_scores = {m: s for m, s in selection.scores.items() if m in results}
            tau = weighted_tau(pool_scores, accuracy, selection.higher_is_better)
        finetune_picked = sum(results[m].seconds for m in picked)
        finetune_all = sum(r.seconds for r in results.values())
        search = float(selection.search_seconds)
        rows.append(
            Row(
                task=task,
                kind=kinds[task],
                pool=pool_name,
                strategy=selection.strategy,
                budget=int(selection.budget),
                picked=picked,
                best_model=_best_model(pool, accuracy),
                oracle_accuracy=max(accuracy.values()),
                achieved_accuracy=max(accuracy[m] for m in picked),
                regret=absolute,
                relative_regret=relative,
                log_odds_regret=log_odds_regret(picked, pool, accuracy),
                weighted_tau=tau,
                search_seconds=search,
                finetune_picked_seconds=float(finetune_picked),
                finetune_all_seconds=float(finetune_all),
                speedup=_ratio(finetune_all, search + finetune_picked),
            )
        )
    return sort_rows(rows)


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    """Rows in the report's order: by task, pool, strategy, budget, then picks."""
    return sorted(rows, key=lambda r: (r.task, r.pool, r.strategy, r.budget, r.picked))


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return _mean(finite)


@dataclass
class TaskMeans:
    """One task's rows of one (strategy, budget, pool), averaged over repeated selections."""

    relative_regret: float
    zero_regret: float
    regret: float
    log_odds_regret: float
    weighted_tau: float
    search_seconds: float
    finetune_picked_seconds: float
    finetune_all_seconds: float
    rows: list[Row] = field(repr=False)


def per_task_means(rows: Iterable[Row]) -> dict[tuple[str, int, str, str], TaskMeans]:
    """(strategy, budget, pool, task) -> that task's rows averaged (E over the strategy's randomness)."""
    grouped: dict[tuple[str, int, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        grouped[(row.strategy, row.budget, row.pool, row.task)].append(row)
    return {
        key: TaskMeans(
            relative_regret=_mean([r.relative_regret for r in group]),
            zero_regret=_mean([1.0 if r.regret == 0.0 else 0.0 for r in group]),
            regret=_mean([r.regret for r in group]),
            log_odds_regret=_mean([r.log_odds_regret for r in group]),
            weighted_tau=_nanmean([r.weighted_tau for r in group]),
            search_seconds=_mean([r.search_seconds for r in group]),
            finetune_picked_seconds=_mean([r.finetune_picked_seconds for r in group]),
            finetune_all_seconds=_mean([r.finetune_all_seconds for r in group]),
            rows=group,
        )
        for key, group in grouped.items()
    }


def _summary_row(strategy: str, budget: int, pool: str, kind: str, tasks: list[TaskMeans]) -> SummaryRow:
    relative = [t.relative_regret for t in tasks]
    search = [t.search_seconds for t in tasks]
    picked = [t.finetune_picked_seconds for t in tasks]
    everything = [t.finetune_all_seconds for t in tasks]
    return SummaryRow(
        strategy=strategy,
        budget=budget,
        pool=pool,
        kind=kind,
        tasks=len(tasks),
        mean_relative_regret=_mean(relative),
        median_relative_regret=float(statistics.median(relative)),
        zero_regret_fraction=_mean([t.zero_regret for t in tasks]),
        mean_regret=_mean([t.regret for t in tasks]),
        mean_log_odds_regret=_mean([t.log_odds_regret for t in tasks]),
        mean_weighted_tau=_nanmean([t.weighted_tau for t in tasks]),
        mean_search_seconds=_mean(search),
        mean_finetune_picked_seconds=_mean(picked),
        mean_finetune_all_seconds=_mean(everything),
        speedup=_ratio(sum(everything), sum(search) + sum(picked)),
    )


def kind_order(kinds: Iterable[str]) -> list[str]:
    """Task kinds in the seed's order (natural, specialised, structured), others after, sorted."""
    kinds = set(kinds)
    return [k for k in TASK_KINDS if k in kinds] + sorted(kinds - set(TASK_KINDS))


def summarise(rows: Iterable[Row]) -> list[SummaryRow]:
    """Per (strategy, budget, pool): the aggregate over all tasks (kind ALL_KINDS) and per task kind.

    Sorted by strategy, budget, pool, then kind (ALL_KINDS first, then kind_order).
    """
    tasks_of: dict[tuple[str, int, str], list[TaskMeans]] = defaultdict(list)
    for (strategy, budget, pool, _task), means in sorted(per_task_means(rows).items()):
        tasks_of[(strategy, budget, pool)].append(means)
    summary = []
    for (strategy, budget, pool), tasks in sorted(tasks_of.items()):
        summary.append(_summary_row(strategy, budget, pool, ALL_KINDS, tasks))
        by_kind: dict[str, list[TaskMeans]] = defaultdict(list)
        for t in tasks:
            by_kind[t.rows[0].kind].append(t)
        for kind in kind_order(by_kind):
            summary.append(_summary_row(strategy, budget, pool, kind, by_kind[kind]))
    return summary
