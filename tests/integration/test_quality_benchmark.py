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
                paths = harness.write(rows, summary, meta, out, bench.nearest)
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
    bench, rows, _, _, database = benchmark
    upstream = {m["model_id"]: m["upstream_accuracy"] for m in bench.zoo}
    families = {s.name: s.family for s in harness.STRATEGIES}
    truth = recorded(database, bench.profile)
    nearest = {n.task: n.nearest[0][0] for n in bench.nearest}
    for r in rows:
        members = next(p for p in bench.pools if p.name == r.pool).members
        agnostic = sorted(members, key=lambda m: (-upstream[m], m))
        if r.strategy == "TaskAgnostic":
            assert list(r.picked) == agnostic[:r.budget]
            continue
        if families[r.strategy] == "Task2Vec":
            # seed 002 Appendix H: the fine-tuned accuracies recorded on the nearest other task
            there = harness.reader_ids(nearest[r.task])["train"]
            assert nearest[r.task] != r.task
            ranked = sorted(members, key=lambda m: (-truth[(there, m)], m))
        else:
            # the cold ranking of every model, which the pool's top-B query read back from the cache
            errors = bench.rankings[(r.task, families[r.strategy])]
            ranked = sorted(members, key=lambda m: (errors[m], m))
        if r.strategy.startswith("Hybrid-"):
            # seed 002 §5.3: the task-agnostic top-1 and the task-aware top-(B-1) of the others
            rest = [m for m in ranked if m != agnostic[0]]
            assert set(r.picked) == {agnostic[0], *rest[:r.budget - 1]}
        else:
            assert list(r.picked) == ranked[:r.budget], (r.task, r.pool, r.strategy, errors if families[
                r.strategy] != "Task2Vec" else {m: truth[(there, m)] for m in members})
            assert -1 <= r.weighted_tau <= 1 or math.isnan(r.weighted_tau)


def test_the_nearest_task_table_is_the_order_of_the_task2vec_distances(benchmark):
    bench, _, _, paths, database = benchmark
    trains = {t: harness.reader_ids(t)["train"] for t in bench.profile.tasks}
    with database.connect() as conn:
        made = conn.execute("SELECT reader_id, num_samples FROM shift.task_embeddings WHERE kind = 'task2vec' "
                            "AND settings->>'probe' = %s", (bench.profile.probe,)).fetchall()
        assert sorted(r for r, _ in made) == sorted(trains.values())
        assert {n for _, n in made} == {bench.profile.task2vec["max_samples"]}
        for n in bench.nearest:
            distances = {o: conn.execute("SELECT shift.task_distance(%s, %s, 'normalized_cosine')",
                                         (trains[n.task], trains[o])).fetchone()[0]
                         for o in bench.profile.tasks if o != n.task}
            expected = sorted(distances, key=lambda o: (distances[o], trains[o]))[:2]
            assert [o for o, _, _ in n.nearest] == expected
            assert [d for _, _, d in n.nearest] == pytest.approx([distances[o] for o in expected])
    assert bench.embedding_seconds.keys() == set(bench.profile.tasks)
    assert all(s > 0 for s in bench.embedding_seconds.values())
    text = paths["quality.md"].read_text()
    assert "## Nearest tasks (Task2Vec)" in text and "Hybrid-Task2Vec" in text
    assert paths["nearest.csv"].read_text().count("\n") == 1 + sum(len(n.nearest) for n in bench.nearest)


def test_report_and_a_rerun_that_reuses_the_ground_truth(benchmark):
    bench, rows, summary, paths, database = benchmark
    text = paths["quality.md"].read_text()
    for name in ("Hybrid-Linear", "TaskAgnostic", "Expert", "Generalist", "relative regret"):
        assert name in text
    for png in ("regret_by_pool.png", "time_vs_regret.png"):
        assert paths[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {(s.strategy, s.budget, s.pool) for s in summary} >= {(r.strategy, r.budget, r.pool) for r in rows}
    with database.connect() as conn:
        before = conn.execute("SELECT kind, count(*) FROM shift.tasks WHERE kind IN ('finetune', 'datasim') "
                              "GROUP BY kind ORDER BY kind").fetchall()
        rerun = harness.Benchmark(conn, bench.data_dir, "small")
        rerun.build()  # the zoo, the models and the readers are all there already
        again = rerun.ground_truth()
        assert rerun.nearest_tasks() == bench.nearest  # the embeddings are read back, not recomputed
        assert conn.execute("SELECT kind, count(*) FROM shift.tasks WHERE kind IN ('finetune', 'datasim') "
                            "GROUP BY kind ORDER BY kind").fetchall() == before
    assert len(again) == len(bench.zoo) * len(bench.profile.tasks)
