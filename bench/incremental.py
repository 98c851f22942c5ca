"""Incremental execution (seed 000 §5, §6.5, Fig. 12): Q2 after a change-reader or an add-reader.

Starts its own cluster (in /tmp, fsync off) and one CPU worker, registers the demo zoo and
the test zoo (nine small timm models), a training reader of 20,000 samples (8x8 digit scans
with noise) and a test reader, and runs Q2 (CosineNN) once on the training reader to fill
the cache. Then, for each scenario (change 1%, 10%, 50% of the samples with a change-reader;
add 10% with an add-reader), it makes a mutable reader over the training reader with that
one step and times Q2 on it (incremental: only the step's samples are inferred), then
registers a plain reader holding the same final data, in the same order, and times Q2 on
it (from scratch: every training sample is inferred; the test reader's features are cached
for both). Prints both times, their ratio, and whether the proxy values agree. Whole passes
only (shift.successive_halving = off), so both runs do the same proxy work.

    .venv/bin/python bench/incremental.py [--quick] [--samples 20000] [--test-samples 500]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shift_cli.testbed import Database, WorkerProcess, register_model, start_scratch_cluster  # noqa: E402
from shift_cli.zoo import build_zoo  # noqa: E402

Q2 = "SELECT ModelId FROM Models ORDER BY CosineNN ASC LIMIT 1 TESTED ON BenchTest TRAINED ON {train}"


def scans(n, seed):
    """n noisy 8x8 digit scans (scikit-learn's digits, each drawn with fresh noise) and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(d.target), n)
    x = np.clip(d.images[pick] / 16.0 + rng.normal(0, 0.15, (n, 8, 8)), 0, 1).astype(np.float32)
    return x, d.target[pick].astype(np.int64)


class Readers:
    def __init__(self, conn, cluster):
        self.conn, self.dir = conn, cluster.server_readable_dir("bench-incremental")

    def npz(self, name, x, y):
        path = self.dir / ("%s.npz" % name.lower())
        np.savez(path, x=x, y=y)
        path.chmod(0o644)
        self.conn.execute("SELECT shift.register_npz_reader(%s, %s)", (name, str(path)))


def models(quick, zoo_dir):
    """The demo zoo (six architectures) and the test zoo (three more, trained differently)."""
    out = [] if quick else list(build_zoo(zoo_dir, profile="demo"))
    for m in build_zoo(ROOT / ".shift" / "test-zoo", profile="test"):
        out.append(dict(m, model_id=m["model_id"].replace("shapes10.", "shapes10-test.")))
    return out


def q2(conn, train, model_ids):
    started = time.perf_counter()
    conn.execute("SELECT * FROM shift.query(%s)", (Q2.format(train=train),)).fetchall()
    seconds = time.perf_counter() - started
    values = dict(conn.execute("SELECT model_id, score FROM shift.score('CosineNN', '{}', %s, 'BenchTest', %s)",
                               (model_ids, train)).fetchall())
    return seconds, values


def inferred_samples(conn):
    return conn.execute("SELECT coalesce(sum(num_rows), 0) FROM shift.features").fetchone()[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,000 training samples and the test zoo only")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=500)
    parser.add_argument("--zoo", type=Path, default=ROOT / ".shift" / "zoo", help="where the demo zoo is (built)")
    args = parser.parse_args(argv)
    n = args.samples or (4000 if args.quick else 20000)
    zoo = models(args.quick, args.zoo)
    model_ids = [m["model_id"] for m in zoo]
    rng = np.random.default_rng(0)
    x, y = scans(n, seed=1)
    cluster = start_scratch_cluster("shift-bench-incremental-")
    try:
        with Database(cluster, "bench_incremental") as database:
            with database.connect() as conn:
                for m in zoo:
                    register_model(conn, m)
                conn.execute("ALTER DATABASE bench_incremental SET shift.successive_halving = 'off'")
                readers = Readers(conn, cluster)
                readers.npz("BenchTrain", x, y)
                readers.npz("BenchTest", *scans(args.test_samples, seed=2))
            worker = WorkerProcess(database.worker_dsn, cluster.home / "worker.log", "bench-incremental").wait_ready()
            try:
                with database.connect() as conn:
                    first, _ = q2(conn, "BenchTrain", model_ids)
                    print("%d models, %d training samples, %d test samples; Q2 first run %.1f s"
                          % (len(model_ids), n, args.test_samples, first))
                    print("%-12s %9s %16s %16s %8s %13s" % ("scenario", "samples", "incremental (s)",
                                                            "from scratch (s)", "ratio", "values agree"))
                    rows = []
                    for kind, fraction in (("change", 0.01), ("change", 0.10), ("change", 0.50), ("add", 0.10)):
                        k = int(round(fraction * n))
                        tag = "%s%d" % (kind, round(100 * fraction))
                        new_x, new_y = scans(k, seed=10 + len(rows))
                        readers.npz("Step_" + tag, new_x, new_y)
                        conn.execute("SELECT shift.create_mutable_reader(%s, 'BenchTrain')", ("Live_" + tag,))
                        if kind == "change":
                            where = np.sort(rng.choice(n, k, replace=False))
                            conn.execute("SELECT shift.change_reader(%s, %s, %s)",
                                         ("Live_" + tag, "Step_" + tag, where.tolist()))
                            final_x, final_y = x.copy(), y.copy()
                            final_x[where], final_y[where] = new_x, new_y
                        else:
                            conn.execute("SELECT shift.add_to_reader(%s, %s)", ("Live_" + tag, "Step_" + tag))
                            final_x, final_y = np.concatenate([x, new_x]), np.concatenate([y, new_y])
                        before = inferred_samples(conn)
                        incremental, inc_values = q2(conn, "Live_" + tag, model_ids)
                        inc_work = inferred_samples(conn) - before
                        readers.npz("Final_" + tag, final_x, final_y)
                        before = inferred_samples(conn)
                        scratch, scratch_values = q2(conn, "Final_" + tag, model_ids)
                        scratch_work = inferred_samples(conn) - before
                        agree = inc_values == scratch_values
                        rows.append((tag, k, incremental, scratch, scratch / incremental, agree, inc_work,
                                     scratch_work))
                        print("%-12s %9d %16.2f %16.2f %7.1fx %13s   (inferred %d vs %d samples)"
                              % (tag, k, incremental, scratch, scratch / incremental, "yes" if agree else "NO",
                                 inc_work, scratch_work))
            finally:
                worker.stop()
    finally:
        cluster.remove()
    return rows


if __name__ == "__main__":
    main()
