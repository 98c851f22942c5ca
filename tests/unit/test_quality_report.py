"""The search-quality report: files written, CSV round trip, Markdown content, plots (bench/quality/report.py)."""

import dataclasses
import json
import math

import pytest

from bench.quality import report
from bench.quality.metrics import FineTuneResult, Selection, evaluate, summarise

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POOLS = {"All": ["a", "b", "c", "d"], "Small": ["b", "c", "d"]}
KINDS = {"flowers": "natural", "clevr": "structured", "eurosat": "specialised"}
ACCURACY = {
    "flowers": {"a": 0.9, "b": 0.8, "c": 0.6, "d": 0.5},
    "clevr": {"a": 0.4, "b": 0.5, "c": 0.7, "d": 0.3},
    "eurosat": {"a": 0.95, "b": 0.97, "c": 0.96, "d": 1.0},
}
SECONDS = {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}
META = {"profile": "test", "machine": "2 CPU cores", "zoo size": 4, "tasks": ["clevr", "eurosat", "flowers"],
        "total search s": 12.3456}


def rows_and_summary():
    finetune = {(t, m): FineTuneResult(acc[m], acc[m], SECONDS[m]) for t, acc in ACCURACY.items() for m in acc}
    selections = []
    for task, acc in ACCURACY.items():
        for pool, models in POOLS.items():
            # "linear" ranks by a noisy copy of the truth (swaps the top two); "agnostic" always likes a, then b.
            truth = sorted(models, key=lambda m: -acc[m])
            linear_rank = [truth[1], truth[0], *truth[2:]]
            agnostic_rank = sorted(models)
            linear_scores = {m: float(len(models) - i) for i, m in enumerate(linear_rank)}
            agnostic_errors = {m: float(i) for i, m in enumerate(agnostic_rank)}
            for budget in (1, 2):
                selections.append(Selection(task, pool, "linear", budget, linear_rank[:budget], linear_scores,
                                            True, 2.5 * budget))
                selections.append(Selection(task, pool, "agnostic", budget, agnostic_rank[:budget],
                                            agnostic_errors, False, 0.0))
            hybrid = [agnostic_rank[0]] + [m for m in linear_rank if m != agnostic_rank[0]][:1]
            selections.append(Selection(task, pool, "hybrid", 2, hybrid, None, True, 2.5))
    rows = evaluate(selections, finetune, POOLS, KINDS)
    return rows, summarise(rows)


def same_rows(left, right):
    """Field-by-field equality with NaN equal to NaN (a hybrid's weighted tau is NaN)."""
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        for name in (f.name for f in dataclasses.fields(a)):
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, float) and math.isnan(x):
                assert isinstance(y, float) and math.isnan(y), name
            else:
                assert x == y and type(x) is type(y), name


@pytest.fixture
def written(tmp_path):
    rows, summary = rows_and_summary()
    return rows, summary, report.write(rows, summary, tmp_path / "out", META)


def test_write_produces_every_file(written):
    _, _, paths = written
    assert set(paths) == {"quality.csv", "summary.csv", "meta.json", "quality.md", "regret_by_pool.png",
                          "time_vs_regret.png"}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0


def test_plots_are_png_files(written):
    _, _, paths = written
    for name in ("regret_by_pool.png", "time_vs_regret.png"):
        data = paths[name].read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_csv_round_trips_through_read_rows(written):
    rows, _, paths = written
    back = report.read_rows(paths["quality.csv"])
    same_rows(back, rows)
    assert any(math.isnan(r.weighted_tau) for r in back)
    assert any(len(r.picked) == 2 for r in back)
    lines = paths["quality.csv"].read_text().splitlines()
    assert lines[0].startswith("task,kind,pool,strategy,budget,picked,best_model,")
    assert len(lines) == len(rows) + 1
    assert "b;a" in paths["quality.csv"].read_text()


def test_summary_csv_has_a_line_per_summary_row(written):
    _, summary, paths = written
    lines = paths["summary.csv"].read_text().splitlines()
    assert lines[0].startswith("strategy,budget,pool,kind,tasks,mean_relative_regret,")
    assert len(lines) == len(summary) + 1


def test_markdown_tables_and_values(written):
    _, summary, paths = written
    text = paths["quality.md"].read_text()
    # meta, generically, floats to 3 decimals
    assert "| profile | test |" in text
    assert "| zoo size | 4 |" in text
    assert "| tasks | clevr, eurosat, flowers |" in text
    assert "| total search s | 12.346 |" in text
    # strategy x pool table of mean relative regret, All first
    assert "| strategy | B | All | Small |" in text
    overall = {(s.strategy, s.budget, s.pool): s for s in summary if s.kind == "all"}
    linear_all = overall[("linear", 1, "All")].mean_relative_regret
    linear_small = overall[("linear", 1, "Small")].mean_relative_regret
    assert f"| linear | 1 | {linear_all:.3f} | {linear_small:.3f} |" in text
    # B=2 linear picks the top two, so it never misses
    assert "| linear | 2 | 0.000 | 0.000 |" in text
    # per kind, in the seed's order
    assert text.index("### natural") < text.index("### specialised") < text.index("### structured")
    # hybrid against its parts, at equal budget, with wins / ties / losses
    assert "## Hybrid against its parts" in text
    assert "### hybrid, B = 2" in text
    assert "| hybrid | B | All | Small |" in text
    assert "| vs linear | 2 |" in text
    # time against fine-tuning all: agnostic B=1 on All searches in 0 s and fine-tunes a (10 s) of 100 s
    assert ("| strategy | B | pool | search s | fine-tune picks s | search + fine-tune s | fine-tune all s "
            "| speedup |") in text
    assert "| agnostic | 1 | All | 0.000 | 10.000 | 10.000 | 100.000 | 10.000 |" in text
    # plots embedded with relative links, per-task detail
    assert "](regret_by_pool.png)" in text and "](time_vs_regret.png)" in text
    assert "### flowers (natural)" in text
    assert "| All | linear | 1 | b | a | 0.900 | 0.800 | 0.100 | 0.111 |" in text
    assert "| All | hybrid | 2 | a, b | a | 0.900 | 0.900 | 0.000 | 0.000 | 0.000 | n/a |" in text


def test_hybrid_comparison_counts_per_task_outcomes(written):
    rows, _, paths = written
    text = paths["quality.md"].read_text()
    by_key = {(r.task, r.pool, r.strategy, r.budget): r.relative_regret for r in rows}
    cells = []
    for pool in ("All", "Small"):
        diffs = [by_key[(t, pool, "hybrid", 2)] - by_key[(t, pool, "agnostic", 2)] for t in ACCURACY]
        cells.append(f"{sum(d < 0 for d in diffs)} / {sum(d == 0 for d in diffs)} / {sum(d > 0 for d in diffs)}")
    assert f"| vs agnostic | 2 | {cells[0]} | {cells[1]} |" in text


def test_output_is_deterministic(tmp_path):
    rows, summary = rows_and_summary()
    first = report.write(rows, summary, tmp_path / "first", META)
    second = report.write(list(reversed(rows)), summary, tmp_path / "second", META)
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name


def test_command_line_rebuilds_the_report_from_quality_csv(written, capsys):
    _, _, paths = written
    before = {name: path.read_bytes() for name, path in paths.items()}
    for name in ("quality.md", "summary.csv", "regret_by_pool.png", "time_vs_regret.png"):
        paths[name].unlink()
    report.main([str(paths["quality.csv"].parent)])
    for name, path in paths.items():
        assert path.read_bytes() == before[name], name
    assert "quality.md" in capsys.readouterr().out


def test_explicit_hybrid_parts_are_kept_for_rebuilds(tmp_path):
    rows, summary = rows_and_summary()
    paths = report.write(rows, summary, tmp_path, META, hybrids={"hybrid": ["linear"]})
    assert json.loads(paths["meta.json"].read_text())["hybrids"] == {"hybrid": ["linear"]}
    report.rebuild(tmp_path)
    text = paths["quality.md"].read_text()
    assert "| vs linear | 2 |" in text and "vs agnostic" not in text


def test_a_model_id_with_the_list_separator_is_refused(tmp_path):
    rows, summary = rows_and_summary()
    bad = [dataclasses.replace(rows[0], picked=("x;y",))]
    with pytest.raises(ValueError, match="list separator"):
        report.write(bad, summary, tmp_path, META)


def test_nothing_to_report_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        report.write([], [], tmp_path, META)


NEAREST = [report.NearestTask("flowers", "natural", [("eurosat", "specialised", 0.125), ("clevr", "structured", 0.5)]),
           report.NearestTask("clevr", "structured", [("eurosat", "specialised", 0.25)]),
           report.NearestTask("eurosat", "specialised", [("flowers", "natural", 0.125), ("clevr", "structured", 0.25)])]


def test_the_nearest_task_table_is_written_and_rebuilt(tmp_path):
    rows, summary = rows_and_summary()
    paths = report.write(rows, summary, tmp_path, META, nearest=NEAREST)
    text = paths["quality.md"].read_text()
    assert "## Nearest tasks (Task2Vec)" in text and "0 of 3 find a task of their own kind" in text
    # the seed's kind order: natural, specialised, structured; a missing second neighbour is blank
    assert text.index("| flowers (natural) | eurosat (specialised) | 0.125 | clevr (structured) | 0.500 |") \
        < text.index("| eurosat (specialised) |") < text.index("| clevr (structured) | eurosat (specialised) | 0.250 |")
    assert report.read_nearest(paths["nearest.csv"]) == sorted(NEAREST, key=lambda n: n.task)
    before = {name: path.read_bytes() for name, path in paths.items()}
    paths["quality.md"].unlink()
    assert report.rebuild(tmp_path).keys() == paths.keys()
    assert {name: path.read_bytes() for name, path in paths.items()} == before


def test_without_a_nearest_task_table_there_is_no_such_section(written):
    _, _, paths = written
    assert "nearest.csv" not in paths and "Nearest tasks" not in paths["quality.md"].read_text()
