"""Asking again: the time of a SHiFT-QL query whose features and proxy values are all cached.

Starts its own cluster (in /tmp, fsync off) and a CPU worker, registers the test
zoo and the digits readers, runs Q2 and Q3 of seed 000 §3.2 once to fill the
caches, then runs each again `--repeats` times on one connection (one database
session, as an application keeps) and on a new connection each time (a fresh
session, which pays for loading the in-database Python and preparing its
statements). Prints the median and the spread of each, in milliseconds.

    .venv/bin/python bench/cached_query.py [--repeats 50]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shift_cli.testbed import Database, WorkerProcess, register_digits, register_model, start_scratch_cluster  # noqa: E402,E501
from shift_cli.zoo import build_zoo  # noqa: E402

QUERIES = {
    "Q2": "SELECT ModelId FROM Models ORDER BY CosineNN ASC LIMIT 1 TESTED ON BenchTest TRAINED ON BenchTrain",
    "Q3": "SELECT ModelId FROM Models ORDER BY Linear(lr=0.1) ASC LIMIT 1 TESTED ON BenchTest TRAINED ON BenchTrain",
}


def setup(database, cluster):
    with database.connect() as conn:
        for m in build_zoo(ROOT / ".shift" / "test-zoo", profile="test"):
            register_model(conn, m)
        register_digits(conn, cluster, "BenchTrain", "BenchTest", "bench_train")


def timed(conn, text):
    started = time.perf_counter()
    conn.execute("SELECT * FROM shift.query(%s)", (text,)).fetchall()
    return 1000 * (time.perf_counter() - started)


def spread(ms):
    return "median %7.2f ms  (min %.2f, max %.2f)" % (statistics.median(ms), min(ms), max(ms))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    cluster = start_scratch_cluster("shift-bench-cached-")
    home = cluster.home
    try:
        with Database(cluster, "bench_cached") as database:
            setup(database, cluster)
            worker = WorkerProcess(database.worker_dsn, home / "worker.log", "bench-cached").wait_ready()
            try:
                with database.connect() as conn:
                    for name, text in QUERIES.items():
                        print("%s first run (computes): %.0f ms" % (name, timed(conn, text)))
            finally:
                worker.stop()  # from here on nothing may need a worker: everything is cached
            for name, text in QUERIES.items():
                with database.connect() as conn:
                    timed(conn, text)  # load the in-database Python once for this session
                    same = [timed(conn, text) for _ in range(args.repeats)]
                fresh = []
                for _ in range(args.repeats):
                    with psycopg.connect(database.dsn, autocommit=True) as conn:
                        fresh.append(timed(conn, text))
                print("%s cached, one session:      %s" % (name, spread(same)))
                print("%s cached, a session each:   %s" % (name, spread(fresh)))
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
