"""What detecting changed data costs: the source check, the validation of cached blocks, a re-run.

Starts its own cluster (in /tmp, fsync off) and a CPU worker, registers the test zoo and a
SQL training reader of `--samples` digits (blocks of `--block-size`) beside an .npz test
reader, and runs Q2 (CosineNN, top-1) of seed 000 §3.2:

1. from scratch; the inference seconds per block (shift.features.seconds, model time only);
2. again, unchanged: the time of the per-reader source check (shift._reader_digest over the
   SQL reader's rows, in PostgreSQL) and of the whole cached query;
3. after an UPDATE of the samples of one block: the validation task's seconds per block
   (re-read and fingerprint, no model), the blocks recomputed, and the re-run's time.

    .venv/bin/python bench/fingerprints.py [--samples 4096] [--block-size 256]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from shift_cli.testbed import Database, WorkerProcess, copy_samples, register_model, start_scratch_cluster  # noqa: E402,E501
from shift_cli.zoo import build_zoo  # noqa: E402

Q2 = "SELECT ModelId FROM Models ORDER BY CosineNN ASC LIMIT 1 TESTED ON FpTest TRAINED ON FpTrain"


def timed(conn, text):
    started = time.perf_counter()
    conn.execute("SELECT * FROM shift.query(%s)", (text,)).fetchall()
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=256)
    args = parser.parse_args(argv)
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(d.target), size=args.samples + 200)
    x = (d.images[idx] / 16.0).astype(np.float32)
    y = d.target[idx].astype(np.int64)
    cluster = start_scratch_cluster("shift-bench-fp-")
    try:
        with Database(cluster, "bench_fp") as database:
            npz = cluster.server_readable_dir("data") / "fp_test.npz"
            np.savez(npz, x=x[args.samples:], y=y[args.samples:])
            npz.chmod(0o644)
            with database.connect() as conn:
                models = build_zoo(ROOT / ".shift" / "test-zoo", profile="test")
                for m in models:
                    register_model(conn, m)
                conn.execute("CREATE TABLE public.fp_train (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)")
                copy_samples(conn, "fp_train", x[:args.samples], y[:args.samples])
                conn.execute("SELECT shift.register_sql_reader('FpTrain', 'SELECT x, y FROM public.fp_train ORDER BY id', "
                             "options => '{\"shape\": [8, 8]}', block_size => %s)", (args.block_size,))
                conn.execute("SELECT shift.register_npz_reader('FpTest', %s, block_size => 100)", (str(npz),))
            worker = WorkerProcess(database.worker_dsn, cluster.home / "worker.log", "bench-fp").wait_ready()
            try:
                with database.connect() as conn:
                    blocks = -(-args.samples // args.block_size)
                    print("models %d, training samples %d in %d blocks of %d"
                          % (len(models), args.samples, blocks, args.block_size))
                    first = timed(conn, Q2)
                    infer = conn.execute("SELECT avg(seconds) FROM shift.features WHERE reader_id = 'FpTrain'").fetchone()[0]
                    read = conn.execute("SELECT per_sample_seconds FROM shift.reader_costs "
                                        "WHERE reader_id = 'FpTrain'").fetchone()[0] * args.block_size
                    print("from scratch:                 %.2f s" % first)
                    print("inference per block:          %.1f ms (model only; reading a block %.1f ms)"
                          % (1000 * infer, 1000 * read))
                    digests = []
                    for _ in range(5):
                        started = time.perf_counter()
                        conn.execute("SELECT shift._reader_digest(current_user, 'FpTrain')").fetchone()
                        digests.append(time.perf_counter() - started)
                    print("source check (SQL digest):    %.1f ms for the reader (%.3f ms per block)"
                          % (1000 * statistics.median(digests), 1000 * statistics.median(digests) / blocks))
                    print("cached re-run, unchanged:     %.1f ms" % (1000 * statistics.median(timed(conn, Q2)
                                                                                          for _ in range(5))))
                    conn.execute("UPDATE public.fp_train SET x = array_fill(0.25::real, ARRAY[64]) "
                                 "WHERE id BETWEEN %s AND %s", (args.block_size, 2 * args.block_size - 1))
                    marker = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                    rerun = timed(conn, Q2)
                    checked, changed, seconds = conn.execute(
                        "SELECT blocks_checked, blocks_changed, seconds FROM shift.reader_sources "
                        "WHERE reader_id = 'FpTrain'").fetchone()
                    recomputed = conn.execute("SELECT count(*) FROM shift.features WHERE reader_id = 'FpTrain' "
                                              "AND computed_at > %s", (marker,)).fetchone()[0]
                    print("validation:                   %.1f ms per block (%d checked, %d changed, %.2f s)"
                          % (1000 * seconds / max(1, checked), checked, changed, seconds))
                    print("validation / inference:       %.3f per block (inference of one model)"
                          % (seconds / max(1, checked) / infer))
                    stale = conn.execute("SELECT terms->'recomputed_blocks'->>'FpTrain' FROM shift.plans "
                                         "ORDER BY plan_id DESC LIMIT 1").fetchone()[0]
                    # successive halving may keep other models on the changed data: their blocks are new work
                    print("re-run after the change:      %.2f s, %s stale block inferences recomputed, %d block "
                          "inferences in all (%.1fx faster than from scratch)"
                          % (rerun, stale or 0, recomputed, first / rerun))
            finally:
                worker.stop()
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
