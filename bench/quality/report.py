"""The search-quality report: CSV tables, a Markdown summary and two plots (seed 002 §5).

`write` turns the rows of `metrics.evaluate` and their `metrics.summarise` into

    quality.csv         one line per row (task, pool, strategy, budget), exact floats
    summary.csv         one line per (strategy, budget, pool, kind)
    meta.json           the run's description, so the report can be rebuilt
    nearest.csv         each task's nearest other tasks by Task2Vec, with their distances
    quality.md          the report: mean relative regret per strategy x pool (§5.1-5.3),
                        the same per task kind (§4.1), the hybrid against its parts
                        (§5.3), time against fine-tuning the whole pool (§3: the budget
                        counts fine-tunings), the nearest-task table of the meta-learned
                        strategies (seed 002 Appendix H, Table 6), and per-task detail
    regret_by_pool.png  mean relative regret per strategy, grouped by pool
    time_vs_regret.png  search time against mean relative regret, with the time of
                        fine-tuning the whole pool as reference

The output is a function of the input only (rows are sorted, nothing is timestamped
unless `meta` says so), so a committed report diffs cleanly. quality.csv holds floats
in Python's round-trip notation, which is what lets

    python -m bench.quality.report RESULTS_DIR [--hybrid NAME=PART,PART ...]

rebuild summary.csv, quality.md and the plots from an existing quality.csv without
re-running any search or fine-tuning.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bench.quality.metrics import ALL_KINDS, Row, SummaryRow, kind_order, per_task_means, sort_rows, summarise

QUALITY_CSV = "quality.csv"
SUMMARY_CSV = "summary.csv"
META_JSON = "meta.json"
QUALITY_MD = "quality.md"
REGRET_PNG = "regret_by_pool.png"
TIME_PNG = "time_vs_regret.png"
NEAREST_CSV = "nearest.csv"

PICKED_SEPARATOR = ";"

# Search times at or below this are drawn at it: a log axis has no room for 0 s
# (a task-agnostic ranking is a table lookup).
TIME_FLOOR_SECONDS = 1e-3

# Two per-task regrets closer than this count as a tie in the hybrid comparison.
TIE_TOLERANCE = 1e-12



@dataclasses.dataclass(frozen=True)
class NearestTask:
    """A task and its nearest other tasks, nearest first: (task, kind, distance) each."""

    task: str
    kind: str
    nearest: Sequence[tuple[str, str, float]]


_NEAREST_FIELDS = ["task", "kind", "rank", "neighbour", "neighbour_kind", "distance"]
_ROW_FIELDS = [f.name for f in dataclasses.fields(Row)]
_SUMMARY_FIELDS = [f.name for f in dataclasses.fields(SummaryRow)]


# ---------------------------------------------------------------- CSV


def _csv_value(value: object) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly, including nan and inf
    if isinstance(value, tuple):
        return PICKED_SEPARATOR.join(value)
    return str(value)


def _write_csv(path: Path, fields: list[str], records: Iterable[object]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(fields)
        for record in records:
            writer.writerow([_csv_value(getattr(record, name)) for name in fields])


def _check_model_ids(rows: Iterable[Row]) -> None:
    for row in rows:
        for model in (*row.picked, row.best_model):
            if PICKED_SEPARATOR in model:
                raise ValueError(f"model id {model!r} contains {PICKED_SEPARATOR!r}, the CSV's list separator")


def read_rows(csv_path: Path | str) -> list[Row]:
    """The rows of a quality.csv written by `write`, equal to the ones written (sorted)."""
    types = typing.get_type_hints(Row)
    rows = []
    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(_ROW_FIELDS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path} lacks column(s): {', '.join(sorted(missing))}")
        for record in reader:
            values: dict[str, object] = {}
            for name in _ROW_FIELDS:
                text, kind = record[name], types[name]
                if kind is float:
                    values[name] = float(text)
                elif kind is int:
                    values[name] = int(text)
                elif name == "picked":
                    values[name] = tuple(text.split(PICKED_SEPARATOR)) if text else ()
                else:
                    values[name] = text
            rows.append(Row(**values))
    return sort_rows(rows)


def _write_nearest(path: Path, nearest: Sequence[NearestTask]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_NEAREST_FIELDS)
        for n in sorted(nearest, key=lambda n: n.task):
            for rank, (other, kind, distance) in enumerate(n.nearest, 1):
                writer.writerow([n.task, n.kind, rank, other, kind, repr(float(distance))])


def read_nearest(csv_path: Path | str) -> list[NearestTask]:
    """The nearest-task table of a nearest.csv written by `write`."""
    by_task: dict[tuple[str, str], list[tuple[int, str, str, float]]] = {}
    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            by_task.setdefault((r["task"], r["kind"]), []).append(
                (int(r["rank"]), r["neighbour"], r["neighbour_kind"], float(r["distance"])))
    return [NearestTask(task, kind, [(o, k, d) for _, o, k, d in sorted(found)])
            for (task, kind), found in sorted(by_task.items())]


# ---------------------------------------------------------------- ordering and formatting


def pool_order(pools: Iterable[str]) -> list[str]:
    """Pools with "All" (the seed's hardest pool, §4.2 D) first, the rest by name."""
    pools = set(pools)
    return sorted(pools, key=lambda p: (p.lower() != "all", p))


def infer_hybrids(strategies: Iterable[str]) -> dict[str, list[str]]:
    """Each strategy named like "hybrid..." against every strategy that is not a hybrid."""
    strategies = sorted(set(strategies))
    hybrids = [s for s in strategies if "hybrid" in s.lower()]
    parts = [s for s in strategies if s not in hybrids]
    return {h: parts for h in hybrids}


def fmt(value: object) -> str:
    """Numbers to 3 decimals, undefined ones as n/a; anything else as text safe in a table."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str).replace("|", "\\|")
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], body: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in body]
    return lines + [""]


# ---------------------------------------------------------------- Markdown


def _overall(summary: Sequence[SummaryRow]) -> dict[tuple[str, int, str], SummaryRow]:
    return {(s.strategy, s.budget, s.pool): s for s in summary if s.kind == ALL_KINDS}


def _series(summary: Sequence[SummaryRow]) -> list[tuple[str, int]]:
    return sorted({(s.strategy, s.budget) for s in summary})


def _strategy_by_pool(summary: Sequence[SummaryRow], kind: str, value: str) -> list[str]:
    """Strategy (rows, with budget) x pool (columns) table of one SummaryRow field."""
    cells = {(s.strategy, s.budget, s.pool): getattr(s, value) for s in summary if s.kind == kind}
    pools = pool_order(p for _, _, p in cells)
    series = sorted({(st, b) for st, b, _ in cells})
    body = [[st, b, *[cells.get((st, b, p), math.nan) for p in pools]] for st, b in series]
    return _table(["strategy", "B", *pools], body)


def _hybrid_section(
    rows: Sequence[Row], summary: Sequence[SummaryRow], hybrids: Mapping[str, Sequence[str]]
) -> list[str]:
    lines = ["## Hybrid against its parts", ""]
    overall = _overall(summary)
    pools = pool_order(p for _, _, p in overall)
    budgets_of: dict[str, list[int]] = {}
    for strategy, budget in _series(summary):
        budgets_of.setdefault(strategy, []).append(budget)
    present = {h: [p for p in parts if p in budgets_of] for h, parts in sorted(hybrids.items()) if h in budgets_of}
    if not present:
        return lines + ["No hybrid strategy in this run.", ""]
    lines += [
        "Seed 002 §5.3: the hybrid fine-tunes the top task-agnostic model together with the top "
        "task-aware ones. Mean relative regret of each hybrid budget against its parts at the same "
        "or a smaller budget, then, per task, how often the hybrid's regret is lower / equal / "
        "higher than the part's at the same budget (wins / ties / losses).",
        "",
    ]
    task_means = per_task_means(rows)
    for hybrid, parts in present.items():
        for budget in budgets_of[hybrid]:
            lines += [f"### {fmt(hybrid)}, B = {budget}", ""]
            series = [(hybrid, budget)] + [(p, b) for p in parts for b in budgets_of[p] if b <= budget]
            body = [[s, b, *[overall[(s, b, p)].mean_relative_regret if (s, b, p) in overall else math.nan
                             for p in pools]] for s, b in series]
            lines += _table(["strategy", "B", *pools], body)
            comparisons = []
            for part in parts:
                if budget not in budgets_of[part]:
                    continue
                cells = []
                for pool in pools:
                    tasks = sorted({t for (s, b, p, t) in task_means if (s, b, p) == (hybrid, budget, pool)})
                    wins = ties = losses = 0
                    for task in tasks:
                        other = task_means.get((part, budget, pool, task))
                        if other is None:
                            continue
                        diff = task_means[(hybrid, budget, pool, task)].relative_regret - other.relative_regret
                        if abs(diff) <= TIE_TOLERANCE:
                            ties += 1
                        elif diff < 0:
                            wins += 1
                        else:
                            losses += 1
                    cells.append(f"{wins} / {ties} / {losses}" if wins + ties + losses else "n/a")
                comparisons.append([f"vs {part}", budget, *cells])
            if comparisons:
                lines += _table(["hybrid", "B", *pools], comparisons)
    return lines


def _time_section(summary: Sequence[SummaryRow]) -> list[str]:
    overall = _overall(summary)
    body = []
    for pool in pool_order(p for _, _, p in overall):
        for strategy, budget in _series(summary):
            s = overall.get((strategy, budget, pool))
            if s is None:
                continue
            body.append([strategy, budget, pool, s.mean_search_seconds, s.mean_finetune_picked_seconds,
                         s.mean_search_seconds + s.mean_finetune_picked_seconds, s.mean_finetune_all_seconds,
                         s.speedup])
    return [
        "## Time against fine-tuning the whole pool",
        "",
        "Seconds per task (means over tasks). The budget B counts fine-tunings (seed 002 §3): a "
        "strategy costs its search plus fine-tuning its B picks; the alternative is fine-tuning every "
        "model of the pool. Speedup = total time of fine-tuning all / total time of search and "
        "fine-tuning the picks, over all tasks.",
        "",
        *_table(["strategy", "B", "pool", "search s", "fine-tune picks s", "search + fine-tune s",
                 "fine-tune all s", "speedup"], body),
    ]


def _nearest_section(nearest: Sequence[NearestTask]) -> list[str]:
    if not nearest:
        return []
    same = sum(1 for n in nearest if n.nearest and n.nearest[0][1] == n.kind)
    order = kind_order(n.kind for n in nearest)
    body = []
    for n in sorted(nearest, key=lambda n: (order.index(n.kind), n.task)):
        cells = [f"{n.task} ({n.kind})"]
        for other, kind, distance in list(n.nearest[:2]) + [("", "", math.nan)] * (2 - len(n.nearest[:2])):
            cells += [f"{other} ({kind})" if other else "", distance]
        body.append(cells)
    return [
        "## Nearest tasks (Task2Vec)",
        "",
        "The meta-learned strategies (seed 002 §3, Appendix H) leave each task out, find its nearest "
        "task among the others by the Task2Vec distance of their training readers, and rank the "
        "models by the accuracy they reached when fine-tuned there (Q5 of seed 000 §3.2); "
        "Hybrid-Task2Vec adds the task-agnostic top-1. Which task each task finds nearest, the "
        f"analogue of seed 002 Table 6: {same} of {len(nearest)} find a task of their own kind.",
        "",
        *_table(["task", "nearest", "distance", "second nearest", "distance"], body),
    ]


def _task_section(rows: Sequence[Row]) -> list[str]:
    lines = ["## Per task", ""]
    tasks = sorted({(r.task, r.kind) for r in rows})
    for task, kind in tasks:
        task_rows = [r for r in rows if r.task == task]
        order = {p: i for i, p in enumerate(pool_order(r.pool for r in task_rows))}
        task_rows.sort(key=lambda r: (order[r.pool], r.strategy, r.budget, r.picked))
        lines += [f"### {fmt(task)} ({fmt(kind)})", ""]
        lines += _table(
            ["pool", "strategy", "B", "picked", "best model", "oracle acc", "achieved acc", "regret",
             "relative regret", "log-odds regret", "weighted tau", "search s"],
            [[r.pool, r.strategy, r.budget, r.picked, r.best_model, r.oracle_accuracy, r.achieved_accuracy,
              r.regret, r.relative_regret, r.log_odds_regret, r.weighted_tau, r.search_seconds]
             for r in task_rows],
        )
    return lines


def markdown(rows: Sequence[Row], summary: Sequence[SummaryRow], meta: Mapping[str, object],
             hybrids: Mapping[str, Sequence[str]], nearest: Sequence[NearestTask] = ()) -> str:
    """The text of quality.md."""
    rows = sort_rows(rows)
    lines = [
        "# Search quality",
        "",
        "How close each search strategy's picks come to fine-tuning every model of the pool, in the "
        "terms of seed 002 §3: relative regret = (oracle accuracy - best accuracy among the B picks) / "
        "oracle accuracy, where the oracle is the best fine-tuned test accuracy of any model in the "
        "pool (Eq. 1, Eq. 2). 0 means a best model was picked. Log-odds regret (Appendix C) is the "
        "same gap on logit-transformed accuracies; weighted tau is the weighted Kendall correlation "
        "between a strategy's scores and the fine-tuned accuracies (a diagnostic, Appendix B).",
        "",
    ]
    if meta:
        lines += ["## Run", ""]
        lines += _table(["setting", "value"], [[key, value] for key, value in meta.items()])
    lines += ["## Mean relative regret per strategy and pool", ""]
    lines += _strategy_by_pool(summary, ALL_KINDS, "mean_relative_regret")
    lines += [f"![Mean relative regret per strategy and pool]({REGRET_PNG})", ""]
    lines += ["Median relative regret:", ""]
    lines += _strategy_by_pool(summary, ALL_KINDS, "median_relative_regret")
    lines += ["Fraction of tasks on which a best model of the pool was picked (zero regret, seed 002 §5.4):", ""]
    lines += _strategy_by_pool(summary, ALL_KINDS, "zero_regret_fraction")
    lines += ["Mean log-odds regret (Appendix C):", ""]
    lines += _strategy_by_pool(summary, ALL_KINDS, "mean_log_odds_regret")

    lines += ["## Mean relative regret per task kind", ""]
    for kind in kind_order(s.kind for s in summary if s.kind != ALL_KINDS):
        tasks = sorted({r.task for r in rows if r.kind == kind})
        lines += [f"### {fmt(kind)} ({len(tasks)} task{'s' if len(tasks) != 1 else ''}: {fmt(tasks)})", ""]
        lines += _strategy_by_pool(summary, kind, "mean_relative_regret")

    lines += _nearest_section(nearest)
    lines += _hybrid_section(rows, summary, hybrids)
    lines += _time_section(summary)
    lines += [f"![Search time against mean relative regret]({TIME_PNG})", ""]
    lines += _task_section(rows)
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------- plots


def _figure(width: float, height: float):
    # The object-oriented API on an explicit Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> None:
    # No Software tag: the bytes then depend on the data only.
    figure.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})


def _styles(series: Sequence[tuple[str, int]]):
    from matplotlib import colormaps

    strategies = sorted({s for s, _ in series})
    budgets = sorted({b for _, b in series})
    palette = colormaps["tab10" if len(strategies) <= 10 else "tab20"]
    colour = {s: palette(i % palette.N) for i, s in enumerate(strategies)}
    hatches = ["", "//", "..", "xx", "\\\\", "oo", "++", "--"]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    hatch = {b: hatches[i % len(hatches)] for i, b in enumerate(budgets)}
    marker = {b: markers[i % len(markers)] for i, b in enumerate(budgets)}
    return strategies, budgets, colour, hatch, marker


def plot_regret_by_pool(summary: Sequence[SummaryRow], path: Path) -> None:
    """Grouped bars: one group per pool, one bar per (strategy, budget); colour = strategy, hatch = budget."""
    overall = _overall(summary)
    pools = pool_order(p for _, _, p in overall)
    series = _series(summary)
    _, _, colour, hatch, _ = _styles(series)
    figure = _figure(max(6.0, 1.2 + 0.35 * len(series) * max(len(pools), 1)), 4.0)
    axes = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, (strategy, budget) in enumerate(series):
        xs, heights = [], []
        for j, pool in enumerate(pools):
            s = overall.get((strategy, budget, pool))
            if s is not None and not math.isnan(s.mean_relative_regret):
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(s.mean_relative_regret)
        axes.bar(xs, heights, width, color=colour[strategy], hatch=hatch[budget], edgecolor="black",
                 linewidth=0.5, label=f"{strategy} (B={budget})")
        for x, height in zip(xs, heights, strict=True):
            if height == 0.0:
                # A zero-regret bar has no height; say so rather than leave a gap that reads as "not run".
                axes.annotate("0", (x, 0.0), xytext=(0, 2), textcoords="offset points", ha="center",
                              va="bottom", fontsize="x-small", color=colour[strategy])
    axes.set_xticks(range(len(pools)), pools)
    axes.set_xlim(-0.5, len(pools) - 0.5)
    axes.set_ylim(bottom=0.0)
    axes.set_xlabel("pool")
    axes.set_ylabel("mean relative regret")
    axes.set_title("Mean relative regret per strategy (lower is better)")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    _save(figure, path)


def plot_time_vs_regret(summary: Sequence[SummaryRow], path: Path) -> None:
    """One panel per pool: mean search time (log) against mean relative regret per (strategy, budget).

    A faint line runs from each point to its search + fine-tune-the-picks time; the dashed
    vertical line is the time of fine-tuning the whole pool, the cost a search avoids.
    """
    from matplotlib.lines import Line2D

    overall = _overall(summary)
    pools = pool_order(p for _, _, p in overall)
    series = _series(summary)
    strategies, budgets, colour, _, marker = _styles(series)
    figure = _figure(max(4.0, 3.6 * max(len(pools), 1)) + 2.0, 3.8)
    panels = figure.subplots(1, max(len(pools), 1), sharey=True, squeeze=False)[0]
    for axes, pool in zip(panels, pools, strict=True):
        times = []
        reference = [s.mean_finetune_all_seconds for k, s in overall.items() if k[2] == pool]
        for strategy, budget in series:
            s = overall.get((strategy, budget, pool))
            if s is None or math.isnan(s.mean_relative_regret):
                continue
            search = max(s.mean_search_seconds, TIME_FLOOR_SECONDS)
            total = max(s.mean_search_seconds + s.mean_finetune_picked_seconds, TIME_FLOOR_SECONDS)
            axes.plot([search, total], [s.mean_relative_regret] * 2, color=colour[strategy], alpha=0.35,
                      linewidth=1.0)
            axes.plot([search], [s.mean_relative_regret], linestyle="none", marker=marker[budget],
                      color=colour[strategy], markeredgecolor="black", markeredgewidth=0.5, markersize=7)
            times += [search, total]
        finetune_all = max(reference) if reference else math.nan
        if math.isfinite(finetune_all) and finetune_all > 0:
            axes.axvline(finetune_all, color="black", linestyle="--", linewidth=1.0)
            times.append(finetune_all)
        axes.set_xscale("log")
        if times:
            axes.set_xlim(min(times) / 2.0, max(times) * 2.0)
        axes.set_title(f"pool {pool}")
        axes.set_xlabel(f"search seconds per task (log; < {TIME_FLOOR_SECONDS:g} s drawn at it)")
        axes.grid(alpha=0.3)
        axes.set_axisbelow(True)
    panels[0].set_ylabel("mean relative regret")
    # A little room below 0 so that zero-regret markers are not cut in half by the axis.
    top = max([s.mean_relative_regret for s in overall.values() if math.isfinite(s.mean_relative_regret)] + [0.0])
    panels[0].set_ylim(-0.04 * (top or 1.0), 1.08 * (top or 1.0))
    handles = [Line2D([], [], linestyle="none", marker="o", color=colour[s], label=s) for s in strategies]
    handles += [Line2D([], [], linestyle="none", marker=marker[b], color="grey", label=f"B={b}") for b in budgets]
    handles += [
        Line2D([], [], color="grey", alpha=0.35, label="to search + fine-tune picks"),
        Line2D([], [], color="black", linestyle="--", label="fine-tune all"),
    ]
    panels[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                      frameon=False)
    _save(figure, path)


# ---------------------------------------------------------------- entry points


def write(rows: Sequence[Row], summary: Sequence[SummaryRow], out_dir: Path, meta: Mapping[str, object],
          *, hybrids: Mapping[str, Sequence[str]] | None = None,
          nearest: Sequence[NearestTask] | None = None) -> dict[str, Path]:
    """Write the report into `out_dir` (created if missing); file name -> path of what was written.

    `meta` describes the run (profile, machine, zoo size, tasks, total times, ...) and is
    printed as given, in its order. `hybrids` maps each hybrid strategy to the strategies
    it combines, for the "hybrid against its parts" section; by default every strategy
    whose name contains "hybrid" is compared with every other strategy. `nearest` is the
    nearest-task table of the meta-learned strategies (none: no such section, no nearest.csv).
    """
    if not rows:
        raise ValueError("no rows to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sort_rows(rows)
    _check_model_ids(rows)
    if hybrids is None:
        hybrids = infer_hybrids(r.strategy for r in rows)
    hybrids = {h: list(parts) for h, parts in sorted(hybrids.items())}
    paths = {name: out_dir / name for name in (QUALITY_CSV, SUMMARY_CSV, META_JSON, QUALITY_MD, REGRET_PNG, TIME_PNG)}
    _write_csv(paths[QUALITY_CSV], _ROW_FIELDS, rows)
    _write_csv(paths[SUMMARY_CSV], _SUMMARY_FIELDS, summary)
    paths[META_JSON].write_text(json.dumps({"meta": dict(meta), "hybrids": hybrids}, indent=2, default=str) + "\n",
                                encoding="utf-8")
    if nearest:
        paths[NEAREST_CSV] = out_dir / NEAREST_CSV
        _write_nearest(paths[NEAREST_CSV], nearest)
    paths[QUALITY_MD].write_text(markdown(rows, summary, meta, hybrids, nearest or ()), encoding="utf-8")
    plot_regret_by_pool(summary, paths[REGRET_PNG])
    plot_time_vs_regret(summary, paths[TIME_PNG])
    return paths


def rebuild(results_dir: Path, hybrids: Mapping[str, Sequence[str]] | None = None) -> dict[str, Path]:
    """Rewrite the report in `results_dir` from its quality.csv (and meta.json, if there)."""
    results_dir = Path(results_dir)
    rows = read_rows(results_dir / QUALITY_CSV)
    meta: Mapping[str, object] = {}
    meta_path = results_dir / META_JSON
    if meta_path.exists():
        stored = json.loads(meta_path.read_text(encoding="utf-8"))
        meta = stored.get("meta", {})
        if hybrids is None and "hybrids" in stored:
            hybrids = stored["hybrids"]
    nearest_path = results_dir / NEAREST_CSV
    nearest = read_nearest(nearest_path) if nearest_path.exists() else None
    return write(rows, summarise(rows), results_dir, meta, hybrids=hybrids, nearest=nearest)


def _parse_hybrid(text: str) -> tuple[str, list[str]]:
    name, sep, parts = text.partition("=")
    if not sep or not name or not parts:
        raise argparse.ArgumentTypeError(f"expected NAME=PART,PART, got {text!r}")
    return name, [p for p in parts.split(",") if p]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality.report", description=rebuild.__doc__)
    parser.add_argument("results_dir", type=Path, help="folder holding quality.csv")
    parser.add_argument("--hybrid", type=_parse_hybrid, action="append", metavar="NAME=PART,PART",
                        help="a hybrid strategy and its parts (default: as stored in meta.json, else by name)")
    args = parser.parse_args(argv)
    paths = rebuild(args.results_dir, dict(args.hybrid) if args.hybrid else None)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    main()
