"""The search-quality benchmark: every strategy, through SHiFT-QL, judged by fine-tuning (seed 002).

One run:

1. builds (or reuses) the zoo of bench.quality.zoo and draws the downstream tasks of
   bench.quality.datasets, VTAB-1K-like train / validation / test splits (seed 002 §4.1);
2. registers the models and, per task, three .npz readers in a shift database;
3. records the ground truth with `shift.finetune`: every model fine-tuned on every
   task by the protocol of seed 002 §4.3, run by the workers and kept in
   shift.finetune_results (a rerun reads it back);
4. embeds every task's training reader with Task2Vec (datasim tasks of the workers,
   the profile's probe) and finds, for each task, its nearest other task (the
   nearest-task table, the analogue of seed 002 Table 6);
5. runs every strategy as a SHiFT-QL query per task, pool and budget B: the
   task-agnostic Q1 of seed 000 §3.2 (upstream accuracy), the task-aware NN (Q2, with
   Euclidean distance as seed 002 §4.3) and Linear (Q3), the hybrids of seed 002
   §5.3 (Q4: the task-agnostic top-1 and the task-aware top-(B-1)), the meta-learned
   Q5 (seed 002 §3, Appendix H: leave the task out, find its nearest task among the
   others by Task2Vec, rank the models by their fine-tuned accuracy there) and the
   hybrid of the task-agnostic top-1 and the meta-learned top-(B-1);
6. scores the picks with bench.quality.metrics (relative regret, eq. 2) and writes the
   report of bench.quality.report.

Task-aware proxies are computed on the validation reader, as seed 002 §4.3 does.
Search time is measured with a cold cache: before a task-aware strategy runs on a
task, the features and proxy values of that task's readers are deleted, and one
query over the All pool ranks every model; the pools' queries then read the cache.
A smaller pool's search time is the All pool's wall time in proportion to the
worker time its models took, which the queue records per task. A meta-learned
strategy's search time is the worker time of embedding the new task (its datasim
task; the other tasks' embeddings and fine-tuning results are the history a
meta-learned search assumes) plus the time of its query.

    python -m bench.quality [--profile small|full] [--dsn DSN] [--out DIR]

Without --dsn the benchmark runs on the embedded cluster (database shift_quality_<profile>)
with the workers `shift worker start` would start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import datasets, metrics, report

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Profile:
    zoo: str                      # a bench.quality.zoo profile
    tasks: tuple[str, ...]        # downstream tasks, keys of datasets.DOWNSTREAM
    sizes: dict                   # samples per split
    finetune: dict                # shift.finetune parameters (seed 002 §4.3 protocol)
    probe: str                    # the Task2Vec probe network, a zoo model
    task2vec: dict                # Task2Vec parameters besides the probe
    budgets: tuple[int, ...] = (1, 2, 3)


PROFILES = {
    # VTAB-1K sizes (800 + 200), every downstream task. Seed 002 fine-tunes 2,500 steps of 512
    # on accelerators; on 2 CPU cores 40 steps of 32 (1.6 epochs) per learning rate keep the
    # ground truth of every model and task under an hour
    "full": Profile(zoo="full", tasks=tuple(datasets.DOWNSTREAM),
                    sizes={"train": 800, "validation": 200, "test": 500},
                    finetune={"lr": 0.01, "lr_grid": 2, "steps": 40, "batch_size": 32},
                    # seed 002 Appendix H probes with an ImageNet ResNet-34: here the ResNet trained
                    # longest on the broad upstream task. 300 of the 800 training samples keep a
                    # datasim task near a minute on 2 CPU cores
                    probe="mixture.resnet10t-long", task2vec={"max_samples": 300}),
    # the test suite's: a few minutes end to end
    "small": Profile(zoo="small", tasks=tuple(datasets.DOWNSTREAM)[:2],
                     sizes={"train": 120, "validation": 60, "test": 60},
                     finetune={"lr": 0.01, "lr_grid": 2, "steps": 8, "batch_size": 32},
                    probe="mixture.resnet10t", task2vec={"max_samples": 60}),
}

LINEAR = "Linear(lr=0.1)"
NN = "EuclideanNN"


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: str                     # 'agnostic', 'proxy' or 'hybrid'
    scorer: str | None = None     # the task-aware scorer of a proxy or hybrid strategy
    family: str | None = None     # strategies sharing one cold-cache measurement
    min_budget: int = 1


STRATEGIES = (
    Strategy("TaskAgnostic", "agnostic"),
    Strategy("NN", "proxy", NN, "NN"),
    Strategy("Linear", "proxy", LINEAR, "Linear"),
    Strategy("Hybrid-NN", "hybrid", NN, "NN", min_budget=2),
    Strategy("Hybrid-Linear", "hybrid", LINEAR, "Linear", min_budget=2),
    Strategy("Task2Vec", "meta", family="Task2Vec"),
    Strategy("Hybrid-Task2Vec", "hybrid-meta", family="Task2Vec", min_budget=2),
)
STRATEGIES_BY_NAME = {s.name: s for s in STRATEGIES}
HYBRIDS = {"Hybrid-NN": ["TaskAgnostic", "NN"], "Hybrid-Linear": ["TaskAgnostic", "Linear"],
           "Hybrid-Task2Vec": ["TaskAgnostic", "Task2Vec"]}


@dataclass
class Pool:
    name: str
    where: str                    # its SHiFT-QL condition on Models
    members: list[str]


def pools(zoo: list[dict]) -> list[Pool]:
    """The model pools of seed 002 §4.2, as SHiFT-QL conditions on the Models view.

    All; Expert (narrow-domain models, §4.2 B); Generalist (several architectures on one
    broad upstream task, the ImNetAccuracies pool of §4.2 C); Small (at most the median
    parameter count, the resource-constrained pool of §4.2 A).
    """
    median = int(statistics.median(m["num_params"] for m in zoo))
    return [
        Pool("All", "Input == 'Vision'", [m["model_id"] for m in zoo]),
        Pool("Expert", "UpstreamDataset <> 'mixture'", [m["model_id"] for m in zoo if m["upstream_dataset"] != "mixture"]),
        Pool("Generalist", "UpstreamDataset == 'mixture'",
             [m["model_id"] for m in zoo if m["upstream_dataset"] == "mixture"]),
        Pool("Small", "NumParams <= %d" % median, [m["model_id"] for m in zoo if m["num_params"] <= median]),
    ]


def reader_ids(task: str) -> dict[str, str]:
    base = task.replace("-", "_")
    return {split: "%s_%s" % (base, split) for split in ("train", "validation", "test")}


def shiftql_params(params: dict) -> str:
    """Scorer parameters as SHiFT-QL writes them: (lr=0.01, steps=40)."""
    return "(%s)" % ", ".join("%s=%s" % (k, "'%s'" % v if isinstance(v, str) else v) for k, v in sorted(params.items()))


def meta_learned(profile: Profile, pool: Pool, task: str) -> str:
    """Q5 of seed 000 §3.2 with the task left out: the models of the pool where they were fine-tuned
    on the task nearest this one by Task2Vec among the others, ranked by that recorded accuracy."""
    others = ", ".join("'%s'" % reader_ids(t)["train"] for t in profile.tasks if t != task)
    return ("SELECT ModelId FROM Models WHERE {w} AND Readers.ReaderId IN "
            "(SELECT DataReaderId FROM DataReaders WHERE DataReaderId IN ({others}) "
            "ORDER BY Task2Vec{t2v} LIMIT 1 TESTED ON {target}) "
            "ORDER BY FineTune{ft}").format(w=pool.where, others=others, target=reader_ids(task)["train"],
                                            t2v=shiftql_params(dict(profile.task2vec, probe=profile.probe)),
                                            ft=shiftql_params(profile.finetune))


def shiftql(strategy: Strategy, pool: Pool, budget: int | None, readers: dict[str, str],
            profile: Profile | None = None, task: str | None = None) -> str:
    """The SHiFT-QL text of a strategy; budget None ranks the whole pool. The meta-learned
    strategies need the profile (its tasks, probe and protocol) and the task left out."""
    limit = "" if budget is None else " LIMIT %d" % budget
    on = "TESTED ON %s TRAINED ON %s" % (readers["validation"], readers["train"])
    if strategy.kind == "agnostic":
        return "SELECT ModelId FROM Models WHERE %s ORDER BY UpstreamAccuracy DESC%s" % (pool.where, limit)
    if strategy.kind == "proxy":
        return "SELECT ModelId FROM Models WHERE %s ORDER BY %s ASC%s %s" % (pool.where, strategy.scorer, limit, on)
    if strategy.kind == "meta":
        return meta_learned(profile, pool, task) + limit
    if strategy.kind == "hybrid-meta":
        rest = Pool(pool.name, "%s AND ModelId NOT IN Q1" % pool.where, pool.members)
        return ("Q1 := SELECT ModelId FROM Models WHERE {w} ORDER BY UpstreamAccuracy DESC LIMIT 1\n"
                "Q4 := Q1 UNION {meta} LIMIT {k}").format(w=pool.where, meta=meta_learned(profile, rest, task),
                                                         k=budget - 1)
    # Q4 of seed 000 §3.2, the hybrid of seed 002 §5.3
    return ("Q1 := SELECT ModelId FROM Models WHERE {w} ORDER BY UpstreamAccuracy DESC LIMIT 1\n"
            "Q4 := Q1 UNION SELECT ModelId FROM Models WHERE {w} AND ModelId NOT IN Q1 "
            "ORDER BY {s} ASC LIMIT {k} {on}").format(w=pool.where, s=strategy.scorer, k=budget - 1, on=on)


def _log(msg: str) -> None:
    print("quality: " + msg, file=sys.stderr, flush=True)


class Benchmark:
    """One profile on one database: `conn` is an autocommit psycopg connection with live workers."""

    def __init__(self, conn, data_dir: Path, profile: str = "full", seed: int = 0, zoo_dir: Path | None = None):
        if profile not in PROFILES:
            raise ValueError("unknown profile %r; profiles: %s" % (profile, ", ".join(PROFILES)))
        self.conn = conn
        self.data_dir = Path(data_dir)
        self.profile_name = profile
        self.profile = PROFILES[profile]
        self.seed = seed
        self.zoo_dir = zoo_dir or ROOT / ".shift" / ("quality-%s-zoo" % profile)
        self.zoo: list[dict] = []
        self.pools: list[Pool] = []
        self.timings: dict[str, float] = {}
        self.rankings: dict[tuple[str, str], dict[str, float]] = {}  # (task, family) -> every model's proxy error
        self.nearest: list[report.NearestTask] = []
        self.embedding_seconds: dict[str, float] = {}   # task -> worker seconds of its Task2Vec embedding
        self.embedding_facts: dict[str, list] = {"samples": [], "devices": []}

    # -- set-up --------------------------------------------------------------------------

    def build(self):
        from .zoo import build_zoo

        started = time.perf_counter()
        self.zoo = build_zoo(self.zoo_dir, seed=self.seed, profile=self.profile.zoo)
        self.timings["zoo (build or reuse)"] = time.perf_counter() - started
        self.pools = pools(self.zoo)
        self._register_models()
        started = time.perf_counter()
        self._register_tasks()
        self.timings["drawing and registering tasks"] = time.perf_counter() - started

    def _register_models(self):
        have = {r[0] for r in self.conn.execute("SELECT model_id FROM shift.models")}
        for m in self.zoo:
            if m["model_id"] in have:
                continue
            self.conn.execute(
                "SELECT shift.register_model(%(model_id)s, %(source)s, %(locator)s, checkpoint => %(checkpoint)s, "
                "input => %(input)s, upstream_dataset => %(upstream_dataset)s, "
                "upstream_accuracy => %(upstream_accuracy)s, num_params => %(num_params)s, "
                "feature_dim => %(feature_dim)s, input_size => %(input_size)s, architecture => %(architecture)s, "
                "options => %(options)s::jsonb)", dict(m, options=json.dumps(m.get("options") or {})))

    def _register_tasks(self):
        have = {r[0] for r in self.conn.execute("SELECT reader_id FROM shift.readers")}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for task in self.profile.tasks:
            ids = reader_ids(task)
            if all(r in have for r in ids.values()):
                continue
            parts = datasets.splits(datasets.DOWNSTREAM[task], self.profile.sizes, seed=self.seed)
            for split, (x, y) in parts.items():
                path = self.data_dir / ("%s.npz" % ids[split])
                np.savez(path, x=x, y=y)
                path.chmod(0o644)
                if ids[split] not in have:
                    self.conn.execute("SELECT shift.register_npz_reader(%s, %s)", (ids[split], str(path)))

    # -- ground truth ----------------------------------------------------------------------

    def ground_truth(self) -> dict[tuple[str, str], metrics.FineTuneResult]:
        """Every model fine-tuned on every task by shift.finetune (recorded results are reused)."""
        started = time.perf_counter()
        models = [m["model_id"] for m in self.zoo]
        out = {}
        for i, task in enumerate(self.profile.tasks):
            ids = reader_ids(task)
            t0 = time.perf_counter()
            rows = self.conn.execute(
                "SELECT model_id, test_accuracy, validation_accuracy, seconds FROM shift.finetune(%s, %s, %s, %s, %s)",
                (models, ids["train"], ids["validation"], ids["test"], json.dumps(self.profile.finetune))).fetchall()
            for model_id, test_acc, val_acc, seconds in rows:
                out[(task, model_id)] = metrics.FineTuneResult(test_acc, val_acc, seconds)
            best = max(rows, key=lambda r: r[1])
            _log("fine-tuned %d models on %s (%d/%d) in %.1fs; best %s at %.3f"
                 % (len(rows), task, i + 1, len(self.profile.tasks), time.perf_counter() - t0, best[0], best[1]))
        self.timings["fine-tuning every model (wall)"] = time.perf_counter() - started
        return out

    # -- strategies ----------------------------------------------------------------------

    def _query(self, text: str) -> list[tuple[str, float]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT model_id, score FROM shift.query(%s)", (text,))]

    def _cold(self, task: str, strategy: Strategy) -> tuple[dict[str, float], float, dict[str, float]]:
        """Rank the All pool with an empty cache: scores, wall seconds, worker seconds per model."""
        from pyfuncs import scorers

        ids = reader_ids(task)
        # this family's scores only: the other families' stay cached, so their top-B queries read back the very
        # ranking their cold run measured (recomputed, a top-B query may halve, and pick by fewer samples)
        self.conn.execute("DELETE FROM shift.scores WHERE train_reader = %s AND test_reader = %s AND proxy = %s",
                          (ids["train"], ids["validation"], scorers.get(strategy.scorer.split("(")[0]).proxy))
        self.conn.execute("DELETE FROM shift.features WHERE reader_id = ANY(%s)", ([ids["train"], ids["validation"]],))
        since = self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        everything = next(p for p in self.pools if p.name == "All")
        started = time.perf_counter()
        scores = dict(self._query(shiftql(strategy, everything, None, ids)))
        wall = time.perf_counter() - started
        # tasks are keyed by their work, so a task this query ran again keeps its row: select by start time
        rows = self.conn.execute(
            "SELECT payload->>'model_id', sum(extract(epoch FROM finished_at - started_at))::float8 "
            "FROM shift.tasks WHERE kind IN ('inference', 'proxy') AND status = 'done' AND started_at >= %s "
            "GROUP BY 1", (since,)).fetchall()
        return scores, wall, dict(rows)

    def nearest_tasks(self) -> list[report.NearestTask]:
        """Every task's training reader embedded by Task2Vec, and each task's nearest others.

        The first call queues a datasim task per training reader (the workers compute them);
        the embedding seconds the workers recorded are kept for the meta-learned search times."""
        started = time.perf_counter()
        params = json.dumps(dict(self.profile.task2vec, probe=self.profile.probe))
        trains = {t: reader_ids(t)["train"] for t in self.profile.tasks}
        out = []
        for task in self.profile.tasks:
            others = [trains[t] for t in self.profile.tasks if t != task]
            ranked = self.conn.execute(
                "SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', %s, %s, %s) "
                "ORDER BY score, reader_id", (params, others, trains[task])).fetchall()
            by_reader = {r: t for t, r in trains.items()}
            out.append(report.NearestTask(task, datasets.DOWNSTREAM[task].kind,
                                          [(by_reader[r], datasets.DOWNSTREAM[by_reader[r]].kind, d)
                                           for r, d in ranked[:2]]))
        rows = self.conn.execute(
            "SELECT reader_id, seconds, num_samples, device FROM shift.task_embeddings "
            "WHERE kind = 'task2vec' AND reader_id = ANY(%s) AND settings @> %s",
            (list(trains.values()), params)).fetchall()
        seconds = {r[0]: r[1] for r in rows}
        self.embedding_seconds = {t: seconds[trains[t]] for t in self.profile.tasks}
        self.timings["task2vec embeddings and nearest tasks (wall)"] = time.perf_counter() - started
        self.timings["task2vec datasim seconds, all tasks (workers)"] = sum(self.embedding_seconds.values())
        self.embedding_facts = {"samples": sorted({r[2] for r in rows}), "devices": sorted({r[3] for r in rows})}
        _log("embedded %d tasks with Task2Vec (probe %s) in %.1fs of worker time"
             % (len(rows), self.profile.probe, sum(self.embedding_seconds.values())))
        return out

    def selections(self) -> list[metrics.Selection]:
        started = time.perf_counter()
        out = []
        upstream = {m["model_id"]: m["upstream_accuracy"] for m in self.zoo}
        for i, task in enumerate(self.profile.tasks):
            ids = reader_ids(task)
            measured = {}
            for strategy in STRATEGIES:
                if strategy.kind == "proxy":
                    measured[strategy.family] = self._cold(task, strategy)
                    self.rankings[(task, strategy.family)] = measured[strategy.family][0]
            for strategy in STRATEGIES:
                for pool in self.pools:
                    if strategy.kind == "agnostic":
                        t0 = time.perf_counter()
                        self._query(shiftql(strategy, pool, None, ids))
                        seconds, scores, higher = time.perf_counter() - t0, \
                            {m: upstream[m] for m in pool.members}, True
                    elif strategy.kind in ("meta", "hybrid-meta"):
                        # the embedding of the new task, then Q5 over the recorded history
                        t0 = time.perf_counter()
                        ranked = dict(self._query(shiftql(STRATEGIES_BY_NAME["Task2Vec"], pool, None, ids,
                                                          self.profile, task)))
                        seconds = self.embedding_seconds[task] + time.perf_counter() - t0
                        scores = ranked if strategy.kind == "meta" else None
                        higher = False
                    else:
                        all_scores, wall, worker = measured[strategy.family]
                        share = sum(worker.get(m, 0.0) for m in pool.members) / max(sum(worker.values()), 1e-9)
                        seconds = wall * share
                        scores = {m: all_scores[m] for m in pool.members} if strategy.kind == "proxy" else None
                        higher = False
                    for budget in self.profile.budgets:
                        if budget < strategy.min_budget or budget > len(pool.members):
                            continue
                        picked = [m for m, _ in self._query(shiftql(strategy, pool, budget, ids, self.profile,
                                                                    task))]
                        stray = set(picked) - set(pool.members)
                        if stray:
                            raise AssertionError("pool %s returned %s, outside the pool" % (pool.name, sorted(stray)))
                        out.append(metrics.Selection(task, pool.name, strategy.name, budget, picked, scores, higher,
                                                     seconds))
            _log("ran %d strategies on %s (%d/%d)" % (len(STRATEGIES), task, i + 1, len(self.profile.tasks)))
        self.timings["search strategies, cold and warm (wall)"] = time.perf_counter() - started
        return out

    # -- the whole run -------------------------------------------------------------------------

    def run(self):
        started = time.perf_counter()
        self.build()
        truth = self.ground_truth()
        self.nearest = self.nearest_tasks()
        chosen = self.selections()
        kinds = {t: datasets.DOWNSTREAM[t].kind for t in self.profile.tasks}
        rows = metrics.evaluate(chosen, truth, {p.name: p.members for p in self.pools}, kinds)
        summary = metrics.summarise(rows)
        self.timings["benchmark (wall)"] = time.perf_counter() - started
        return rows, summary, self.meta(truth)

    def meta(self, truth) -> dict:
        stamp = self.zoo_dir / "zoo.build.json"
        build = json.loads(stamp.read_text()) if stamp.is_file() else {}
        families = sorted({m["architecture"] for m in self.zoo})
        upstream = sorted({m["upstream_dataset"] for m in self.zoo})
        fine_seconds = sum(r.seconds for r in truth.values())
        meta = {
            "profile": self.profile_name,
            "seed": self.seed,
            "machine": "%s, %s, %d CPU cores" % (platform.platform(terse=True), platform.machine(), os.cpu_count()),
            "zoo": "%d models, %d families (%s), %d upstream tasks (%s)" % (
                len(self.zoo), len(families), ", ".join(families), len(upstream), ", ".join(upstream)),
            "zoo build seconds": build.get("seconds"),
            "downstream tasks": ", ".join("%s (%s)" % (t, datasets.DOWNSTREAM[t].kind) for t in self.profile.tasks),
            "split sizes": ", ".join("%s %d" % kv for kv in self.profile.sizes.items()),
            "fine-tuning protocol": json.dumps(self.profile.finetune, sort_keys=True),
            "task2vec": "probe %s, %s; %s samples per task, on %s" % (
                self.profile.probe, json.dumps(self.profile.task2vec, sort_keys=True),
                ", ".join(map(str, self.embedding_facts["samples"])), ", ".join(self.embedding_facts["devices"])),
            "pools": ", ".join("%s (%d): %s" % (p.name, len(p.members), p.where) for p in self.pools),
            "fine-tuning seconds, all models and tasks": round(fine_seconds, 1),
        }
        meta.update({k: round(v, 1) for k, v in self.timings.items()})
        return meta


def write(rows, summary, meta, out_dir: Path, nearest=None) -> dict:
    return report.write(rows, summary, Path(out_dir), meta, hybrids=HYBRIDS, nearest=nearest)


def _live_workers(conn) -> int:
    return conn.execute("SELECT count(*) FROM shift.live_workers").fetchone()[0]


def _wait_for_worker(conn, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not _live_workers(conn):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not come up within %.0fs; see its log" % timeout)
        time.sleep(0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dsn", help="a database with the shift extension and live workers "
                                      "(default: the embedded cluster)")
    parser.add_argument("--data-dir", type=Path, help="where the server can read the task files (with --dsn)")
    parser.add_argument("--out", type=Path, help="report directory (default: bench/results/quality-<profile>)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / ("quality" if args.profile == "full" else
                                                    "quality-%s" % args.profile)
    import psycopg

    started_here = None
    if args.dsn:
        if not args.data_dir:
            parser.error("--data-dir is needed with --dsn")
        dsn, worker_dsn, data_dir = args.dsn, args.dsn, args.data_dir
    else:
        from shift_cli.cluster import Cluster

        cluster = Cluster()
        cluster.init()
        cluster.start()
        name = "shift_quality_%s" % args.profile
        cluster.ensure_database(name)
        dsn, worker_dsn = cluster.dsn(name), cluster.worker_dsn(name)
        data_dir = cluster.server_readable_dir("quality-%s" % args.profile)
        started_here = cluster.home / ("quality-%s-workers" % args.profile)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if started_here is not None and not _live_workers(conn):
            from shift_cli.workers import start_workers
            start_workers(worker_dsn, count=1, home=started_here)
            _wait_for_worker(conn)
        else:
            started_here = None
        try:
            benchmark = Benchmark(conn, data_dir, args.profile, args.seed)
            rows, summary, meta = benchmark.run()
        finally:
            if started_here is not None:
                from shift_cli.workers import stop_workers
                stop_workers(started_here)
    paths = write(rows, summary, meta, out, benchmark.nearest)
    _log("wrote %s" % ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
