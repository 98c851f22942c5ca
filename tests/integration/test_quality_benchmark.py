"""The search-quality benchmark's small profile end to end, and the arithmetic of its report (seed 002)."""

import json
import math

import pytest

from bench.quality import harness
from shift_cli.testbed import Database, WorkerProcess


@pytest.fixture(scope="module")
def benchmark(cluster, tmp_path_factory):
    with Database(cluster, "shift_quality") as database:
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-quality.log", "quality-worker").wait_ready()
        try:
            with database.connect() as conn:
                bench = harness.Benchmark(conn, cluster.server_readable_dir("quality-small"), "small")
                rows, summary, meta = bench.run()
                out = tmp_path_factory.mktemp("quality-report")
                paths = harness.write(rows, summary, meta, out)
                yield bench, rows, summary, paths, database
        finally:
            worker.stop()


def recorded(database, profile):
    """{(train reader, model): test accuracy} straight from shift.finetune_results."""
    with database.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(
            "SELECT train_reader, model_id, test_accuracy FROM shift.finetune_results WHERE params @> %s",
            (json.dumps(profile.finetune),))}


def test_every_strategy_pool_task_and_budget_is_scored(benchmark):
    bench, rows, _, _, _ = benchmark
    assert len(bench.zoo) >= 4 and len(bench.profile.tasks) == 2
    expected = set()
    for task in bench.profile.tasks:
        for pool in bench.pools:
            for s in harness.STRATEGIES:
                for b in bench.profile.budgets:
                    if s.min_budget <= b <= len(pool.members):
                        expected.add((task, pool.name, s.name, b))
    assert {(r.task, r.pool, r.strategy, r.budget) for r in rows} == expected
    for r in rows:
        pool = next(p for p in bench.pools if p.name == r.pool)
        assert len(r.picked) == r.budget and set(r.picked) <= set(pool.members)


def test_regret_is_the_gap_to_the_best_fine_tuned_model_of_the_pool(benchmark):
    bench, rows, _, _, database = benchmark
    truth = recorded(database, bench.profile)
    for r in rows:
        train = harness.reader_ids(r.task)["train"]
        pool = next(p for p in bench.pools if p.name == r.pool)
        accuracy = {m: truth[(train, m)] for m in pool.members}
        oracle = max(accuracy.values())
        achieved = max(accuracy[m] for m in r.picked)
        assert r.oracle_accuracy == pytest.approx(oracle)
        assert r.achieved_accuracy == pytest.approx(achieved)
        assert r.regret == pytest.approx(oracle - achieved)
        # seed 002 eq. 2 with the oracle as the first strategy
        assert r.relative_regret == pytest.approx((oracle - achieved) / oracle)
        best_picked = any(accuracy[m] == oracle for m in r.picked)
        assert (r.regret == 0) == best_picked
        assert r.finetune_all_seconds >= r.finetune_picked_seconds > 0
        assert r.speedup == pytest.approx(r.finetune_all_seconds / (r.search_seconds + r.finetune_picked_seconds))


def test_picks_follow_each_strategys_definition(benchmark):
    bench, rows, _, _, _ = benchmark
    upstream = {m["model_id"]: m["upstream_accuracy"] for m in bench.zoo}
    families = {s.name: s.family for s in harness.STRATEGIES}
    for r in rows:
        members = next(p for p in bench.pools if p.name == r.pool).members
        agnostic = sorted(members, key=lambda m: (-upstream[m], m))
        if r.strategy == "TaskAgnostic":
            assert list(r.picked) == agnostic[:r.budget]
            continue
        # the cold ranking of every model, which the pool's top-B query read back from the cache
        errors = bench.rankings[(r.task, families[r.strategy])]
        ranked = sorted(members, key=lambda m: (errors[m], m))
        if r.strategy.startswith("Hybrid-"):
            # seed 002 §5.3: the task-agnostic top-1 and the task-aware top-(B-1) of the others
            rest = [m for m in ranked if m != agnostic[0]]
            assert set(r.picked) == {agnostic[0], *rest[:r.budget - 1]}
        else:
            assert list(r.picked) == ranked[:r.budget]
            assert -1 <= r.weighted_tau <= 1 or math.isnan(r.weighted_tau)


def test_report_and_a_rerun_that_reuses_the_ground_truth(benchmark):
    bench, rows, summary, paths, database = benchmark
    text = paths["quality.md"].read_text()
    for name in ("Hybrid-Linear", "TaskAgnostic", "Expert", "Generalist", "relative regret"):
        assert name in text
    for png in ("regret_by_pool.png", "time_vs_regret.png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {(s.strategy, s.budget, s.pool) for s in summary} >= {(r.strategy, r.budget, r.pool) for r in rows}
    with database.connect() as conn:
        before = conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune'").fetchone()[0]
        rerun = harness.Benchmark(conn, bench.data_dir, "small")
        rerun.build()  # the zoo, the models and the readers are all there already
        again = rerun.ground_truth()
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune'").fetchone()[0] == before
    assert len(again) == len(bench.zoo) * len(bench.profile.tasks)
