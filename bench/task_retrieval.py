"""Nearest-task retrieval: latency and recall of the HNSW index over stored Task2Vec embeddings.

Starts its own cluster (in /tmp, fsync off), stores `--n` synthetic task
embeddings (clustered, positive Fisher values of `--dim` filters, as a worker
writes them: exact values, scale and the vector(256) index projection of
pyfuncs.embeddings) for readers owned by a non-superuser, and then, as that user
(row-level security applies), times for `--queries` targets:

- index: the nearest 10 by the index vectors' cosine through the HNSW index
  (the candidate query of pyfuncs.datasim, hnsw.ef_search as set);
- exact scan: the same ranking by a sequential scan (ordered by an expression the
  index does not serve), for the first `--exact-queries` targets;
- shift.dataset_similarity(..., top_k => 10): the whole SQL function a
  Task2Vec ranking calls (index candidates re-ranked by the exact normalised
  cosine), over the first `--function-pool` readers (all with --function-pool 0).

It prints p50 and p99 of each, recall@10 of the index against the exact scan,
and recall@10 of the re-ranked answer against the exact normalised cosine of the
full embeddings. Targets (seed 000 issue on meta-learned search): p50 <= 5 ms
with recall@10 >= 0.95 at 10,000 embeddings, p50 <= 10 ms at 1,000,000.

    .venv/bin/python bench/task_retrieval.py [--n 10000] [--dim 512] [--queries 200]
    .venv/bin/python bench/task_retrieval.py --n 1000000 --dim 64 --exact-queries 10  # the scale run
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyfuncs import embeddings, fingerprints, scorers  # noqa: E402
from shift_cli.testbed import Database, connect_as, start_scratch_cluster, user_roles  # noqa: E402

PROBE = "bench-probe"
K = 10


def synthetic(n, dim, seed):
    """n (fisher, scale) pairs: tasks drawn around 50 centres, so that nearest neighbours mean something."""
    rng = np.random.default_rng(seed)
    centres = rng.lognormal(0.0, 1.0, size=(50, dim))
    which = rng.integers(0, len(centres), size=n)
    fisher = centres[which] * rng.lognormal(0.0, 0.35, size=(n, dim))
    scale = np.ones((n, dim))
    return fisher, scale


def index_vectors(fisher, scale):
    """pyfuncs.embeddings.index_vector of every row at once (one projection matrix for all)."""
    v = np.stack([embeddings.normalized(f, s) for f, s in zip(fisher, scale)])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    p = v @ embeddings.projection(v.shape[1])
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def vector_text(v):
    return "[%s]" % ",".join("%.7g" % x for x in v)


def store(conn, user, n, dim, seed, chosen):
    fisher, scale = synthetic(n, dim, seed)
    conn.execute("SELECT shift.grant_usage(%s::regrole)", (user,))
    started = time.perf_counter()
    # a bulk load: the rows first, the HNSW index once over all of them (inserting 10^6 rows into the graph
    # one at a time takes hours)
    index_sql = conn.execute("SELECT pg_get_indexdef('shift.task_embeddings_hnsw'::regclass)").fetchone()[0]
    conn.execute("DROP INDEX shift.task_embeddings_hnsw")
    with conn.transaction():
        # reader rows written directly (the benchmark owns the database): registering 10^6 files is not what is timed
        with conn.cursor().copy("COPY shift.readers (reader_id, kind, source, num_samples, classes, owner) "
                                "FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(("task_%07d" % i, "npz", "/nonexistent/task_%07d.npz" % i, 100, ["0", "1"], user))
        versions = dict(conn.execute("SELECT reader_id, shift._reader_version(reader_id) FROM shift.readers"))
        # what a query checks of a candidate's data: its file's stat (the files do not exist: one stat each)
        signature = {r: fingerprints.content_signature({r: fingerprints.file_signature(
            {"kind": "npz", "source": "/nonexistent/%s.npz" % r, "options": {}})}) for r in versions}
        settings = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        for lo in range(0, n, 10_000):
            hi = min(n, lo + 10_000)
            index = index_vectors(fisher[lo:hi], scale[lo:hi])
            with conn.cursor().copy("COPY shift.task_embeddings (reader_id, reader_version, kind, settings, "
                                    "source_signature, dim, embedding, scale, index_vector, num_samples, seconds, "
                                    "device) FROM STDIN") as copy:
                for i in range(lo, hi):
                    r = "task_%07d" % i
                    copy.write_row((r, versions[r], "task2vec", settings, signature[r], dim,
                                    "{%s}" % ",".join("%.7g" % x for x in fisher[i]),
                                    "{%s}" % ",".join("%.7g" % x for x in scale[i]),
                                    vector_text(index[i - lo]), 100, 0.0, "synthetic"))
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute(index_sql)
    conn.execute("ANALYZE shift.task_embeddings")
    conn.execute("ANALYZE shift.readers")
    return fisher, scale, loaded, time.perf_counter() - started


def timed(conn, sql, params):
    started = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    return 1000 * (time.perf_counter() - started), [r[0] for r in rows]


def percentiles(ms):
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="stored embeddings")
    parser.add_argument("--dim", type=int, default=512, help="filters per embedding (a ResNet-34 probe has 8,512)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=40, help="hnsw.ef_search of the index query")
    parser.add_argument("--function-pool", type=int, default=10_000,
                        help="readers in the pool of shift.dataset_similarity (0: all)")
    parser.add_argument("--exact-queries", type=int, default=0,
                        help="targets also ranked by the sequential scan (0: all; at 10^6 each takes seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--explain", action="store_true", help="print the plan of one index query, as run")
    args = parser.parse_args(argv)

    chosen = {k: v for k, v in scorers.get("Task2Vec").resolve({}).items() if k in scorers.TASK2VEC_SETTINGS}
    chosen["probe"] = PROBE
    cluster = start_scratch_cluster("shift-bench-retrieval-")
    try:
        with user_roles(cluster, ("bench",)) as roles, Database(cluster, "bench_retrieval") as database:
            user = roles["bench"]
            with database.connect() as conn:
                conn.execute("SET maintenance_work_mem = '4GB'")  # the HNSW graph of 10^6 vectors built in memory
                fisher, scale, loaded, indexed = store(conn, user, args.n, args.dim, args.seed, chosen)
            print("stored %d embeddings of %d filters in %.1f s, HNSW index built in %.1f s"
                  % (args.n, args.dim, loaded, indexed))
            targets = np.random.default_rng(args.seed + 1).choice(args.n, size=min(args.queries, args.n),
                                                                   replace=False)
            settings = json.dumps(chosen, sort_keys=True)
            # the target's vector as a scalar sub-query, as pyfuncs.datasim asks: a constant of the index scan
            nearest = ("SELECT e.reader_id FROM shift.task_embeddings e "
                       "WHERE e.kind = 'task2vec' AND e.settings = %s::jsonb AND e.reader_id <> %s "
                       "ORDER BY e.index_vector <=> (SELECT t.index_vector FROM shift.task_embeddings t "
                       "WHERE t.kind = 'task2vec' AND t.settings = %s::jsonb AND t.reader_id = %s) LIMIT " + str(K))
            pool = ["task_%07d" % i for i in range(args.n if args.function_pool <= 0
                                                   else min(args.n, args.function_pool))]
            with connect_as(database, user) as conn:
                conn.execute("SET hnsw.ef_search = %d" % args.ef_search)
                conn.execute("SET hnsw.iterative_scan = relaxed_order")  # row security filters what the index yields
                plan = "\n".join(r[0] for r in conn.execute(
                    "EXPLAIN " + nearest, (settings, "task_0000000", settings, "task_0000000")))
                if "task_embeddings_hnsw" not in plan:
                    raise SystemExit("the index query does not use the HNSW index:\n" + plan)
                if args.explain:
                    print("\n".join(r[0] for r in conn.execute(
                        "EXPLAIN (ANALYZE, COSTS OFF) " + nearest, (settings, "task_0000001", settings, "task_0000001"))))
                results = {}
                # the exact ranking orders by an expression the index does not serve: a sequential scan, while
                # the row-security look-ups keep their indexes (disabling index scans would take those too)
                exact = nearest.replace("ORDER BY e.index_vector <=> (", "ORDER BY (e.index_vector <=> (").replace(
                    ") LIMIT", ")) + 0.0 LIMIT")
                exact_targets = targets[:args.exact_queries or len(targets)]
                for name, query, chosen_targets in (("index", nearest, targets), ("exact scan", exact, exact_targets)):
                    timed(conn, query, (settings, "task_0000000", settings, "task_0000000"))  # warm the session
                    results[name] = [timed(conn, query, (settings, "task_%07d" % t, settings, "task_%07d" % t))
                                     for t in chosen_targets]
                function = ("SELECT reader_id FROM shift.dataset_similarity('Task2Vec', %s::jsonb, %s, %s, "
                            "top_k => " + str(K) + ") ORDER BY score LIMIT " + str(K))
                params = json.dumps({"probe": PROBE, "distance": "normalized_cosine"})
                fn_targets = [t for t in targets if t < len(pool)] or [0]
                timed(conn, function, (params, pool, "task_%07d" % fn_targets[0]))
                results["shift.dataset_similarity"] = [timed(conn, function, (params, pool, "task_%07d" % t))
                                                       for t in fn_targets]

            def recall(a, b):
                return statistics.mean(len(set(x[1]) & set(y[1])) / K for x, y in zip(a, b))

            # the truth of the re-ranked answer: the exact normalised cosine over the full embeddings
            normalized = np.stack([embeddings.normalized(f, s) for f, s in zip(fisher[:len(pool)], scale[:len(pool)])])
            normalized /= np.linalg.norm(normalized, axis=1, keepdims=True)
            truth = []
            for t in fn_targets:
                d = 1 - normalized @ normalized[t]
                d[t] = np.inf
                truth.append((0, ["task_%07d" % i for i in np.argsort(d, kind="stable")[:K]]))

            print("%d queries, k = %d, hnsw.ef_search = %d, as a non-superuser (row-level security on)"
                  % (len(targets), K, args.ef_search))
            for name, runs in results.items():
                p50, p99 = percentiles([ms for ms, _ in runs])
                extra = " (pool of %d readers)" % len(pool) if name.startswith("shift.") else ""
                print("  %-26s p50 %8.2f ms  p99 %8.2f ms%s" % (name, p50, p99, extra))
            print("  recall@%d of the index against the exact scan:            %.3f (%d queries)"
                  % (K, recall(results["index"], results["exact scan"]), len(results["exact scan"])))
            print("  recall@%d of shift.dataset_similarity against the exact   %.3f"
                  % (K, recall(results["shift.dataset_similarity"], truth)))
            print("    normalised cosine of the full embeddings")
            p50s = {name: percentiles([ms for ms, _ in runs])[0] for name, runs in results.items()}
            print("  exact scan / index p50: %.1fx" % (p50s["exact scan"] / p50s["index"]))
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
