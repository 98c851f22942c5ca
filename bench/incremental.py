"""Incremental execution (seed 000 §5, §6.5, Fig. 12): Q2 after a change-reader or an add-reader.

Starts its own cluster (in /tmp, fsync off) and one CPU worker, registers eight small models
(the test zoo's ResNet and RegNet, each at four input sizes), a training reader of 20,000 samples (8x8 digit scans
with noise) and a test reader, and runs Q2 (CosineNN) once on the training reader to fill
the cache. Then, for each scenario (change 1%, 10%, 50% of the samples with a change-reader;
add 10% with an add-reader), it makes a mutable reader over the training reader with that
one step and times Q2 on it (incremental: only the step's samples are inferred), then
registers a plain reader holding the same final data, in the same order, and times Q2 on
it (from scratch: every training sample is inferred; the test reader's features are cached
for both). Prints both times, their ratio, the samples each inferred, the worker's inference
and proxy seconds, and whether the proxy values agree. Whole passes only
(shift.successive_halving = off), so both runs do the same proxy work.

    .venv/bin/python bench/incremental.py [--quick] [--samples 20000] [--test-samples 500] [--out FILE]
        [--sizes 56,60,64,72] [--scenarios change1,change10,change50,add10] [--python-dir DIR --install]

With --python-dir (a private `make install-pyfuncs SHIFT_LIBDIR=DIR`) other installs cannot change
the in-database Python mid-run; --install installs this checkout's SQL and creates the database
under the integration lock.
"""

import argparse
import fcntl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shift_cli.cluster import Cluster  # noqa: E402
from shift_cli.testbed import Database, WorkerProcess, free_port, register_model  # noqa: E402
from shift_cli.zoo import build_zoo  # noqa: E402

LOCK = "/tmp/shift-integration.lock"
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


# Input sides the checkpoints are fed at. A re-run's speed-up is bounded by (I + R) / (I_step + R), with I
# the inference of every sample, I_step that of the step's, and R what a run costs whatever it infers (the
# proxies over all 20,000 samples, reading features, loading models, planning): ~4 s for these eight models.
# So the speed-up measures how much inference a model costs. Fed 56 to 72 pixels these small networks infer
# a sample in ~1 ms on two cores (a from-scratch Q2 ~160 s); fed 32 to 48, in ~0.5 ms, and 10% changed gave
# 7.1x; fed 12 to 24, in ~0.3 ms, 6.1x. A hub model at 224 pixels costs ~50x more per sample than these.
SIZES = (56, 60, 64, 72)
QUICK_SIZES = (8, 10)


def models(quick, sizes=None):
    """The test zoo's ResNet and RegNet checkpoints, each fed the scans at several input sizes.

    A model fed 8x8 and the same one fed 16x16 give different features at a different cost, so for
    shift they are different models."""
    zoo = [m for m in build_zoo(ROOT / ".shift" / "test-zoo", profile="test") if "convnext" not in m["model_id"]]
    return [dict(m, model_id="%s.%dpx" % (m["model_id"], size), input_size=size)
            for m in zoo for size in (sizes or (QUICK_SIZES if quick else SIZES))]


def q2(conn, train, model_ids):
    started = time.perf_counter()
    conn.execute("SELECT * FROM shift.query(%s)", (Q2.format(train=train),)).fetchall()
    seconds = time.perf_counter() - started
    values = dict(conn.execute("SELECT model_id, score FROM shift.score('CosineNN', '{}', %s, 'BenchTest', %s)",
                               (model_ids, train)).fetchall())
    return seconds, values


def inferred_samples(conn):
    return conn.execute("SELECT coalesce(sum(num_rows), 0) FROM shift.features").fetchone()[0]


def worker_seconds(conn):
    """(inference seconds, proxy seconds) the worker recorded for every cached block and every proxy value."""
    return conn.execute("SELECT (SELECT coalesce(sum(seconds), 0) FROM shift.features), "
                        "(SELECT coalesce(sum(seconds), 0) FROM shift.scores)").fetchone()


def run(conn, train, model_ids):
    """Q2 on `train`: (seconds, proxy values, samples inferred, inference seconds, proxy seconds)."""
    samples, (inference, proxies) = inferred_samples(conn), worker_seconds(conn)
    seconds, values = q2(conn, train, model_ids)
    after, (inference_after, proxies_after) = inferred_samples(conn), worker_seconds(conn)
    return seconds, values, after - samples, inference_after - inference, proxies_after - proxies


def make_step(conn, readers, x, y, kind, k, tag, index, r):
    """A mutable reader over BenchTrain with one step of k fresh samples: (its name, the final x, y)."""
    step, live = "Step_%s_%d" % (tag, r), "Live_%s_%d" % (tag, r)
    new_x, new_y = scans(k, seed=10 + index + 100 * r)
    readers.npz(step, new_x, new_y)
    conn.execute("SELECT shift.create_mutable_reader(%s, 'BenchTrain')", (live,))
    if kind == "add":
        conn.execute("SELECT shift.add_to_reader(%s, %s)", (live, step))
        return live, np.concatenate([x, new_x]), np.concatenate([y, new_y])
    where = np.sort(np.random.default_rng(index + 100 * r).choice(len(y), k, replace=False))
    conn.execute("SELECT shift.change_reader(%s, %s, %s)", (live, step, where.tolist()))
    final_x, final_y = x.copy(), y.copy()
    final_x[where], final_y[where] = new_x, new_y
    return live, final_x, final_y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,000 training samples and four models")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=500)
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    parser.add_argument("--python-dir", type=Path, help="shift.python_dir of the cluster")
    parser.add_argument("--install", action="store_true", help="make install-extension under the lock first")
    parser.add_argument("--sizes", help="input sides the models are fed at, comma-separated (default: %s)"
                        % ",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=3,
                        help="incremental runs per scenario, each over a fresh step; the median is reported")
    parser.add_argument("--scenarios", default="change1,change10,change50,add10",
                        help="which scenarios to run, comma-separated (default: all four)")
    args = parser.parse_args(argv)
    wanted = set(args.scenarios.split(","))
    n = args.samples or (4000 if args.quick else 20000)
    zoo = models(args.quick, args.sizes and [int(v) for v in args.sizes.split(",")])
    model_ids = [m["model_id"] for m in zoo]
    x, y = scans(n, seed=1)
    home = Path(tempfile.mkdtemp(prefix="shift-bench-incremental-", dir="/tmp"))
    home.chmod(0o755)
    cluster = Cluster(home=home, port=free_port(), fast=True,
                      settings={"shift.python_dir": str(args.python_dir)} if args.python_dir else {})
    cluster.start()
    try:
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the install and CREATE EXTENSION read the shared install
            if args.install:
                subprocess.run(["make", "install-extension", "VPY=" + sys.executable], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL)
            database = Database(cluster, "bench_incremental").__enter__()
        try:
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
                    readers.conn = conn
                    first, _ = q2(conn, "BenchTrain", model_ids)
                    print("%d models, %d training samples, %d test samples; Q2 first run %.1f s"
                          % (len(model_ids), n, args.test_samples, first))
                    print("%-12s %9s %16s %16s %8s %13s" % ("scenario", "samples", "incremental (s)",
                                                            "from scratch (s)", "ratio", "values agree"))
                    rows = []
                    for index, (kind, fraction) in enumerate((("change", 0.01), ("change", 0.10), ("change", 0.50),
                                                               ("add", 0.10))):
                        k = int(round(fraction * n))
                        tag = "%s%d" % (kind, round(100 * fraction))
                        if tag not in wanted:
                            continue
                        runs = []
                        for r in range(args.repeat):  # each over a fresh step of the same size
                            live, final_x, final_y = make_step(conn, readers, x, y, kind, k, tag, index, r)
                            runs.append(run(conn, live, model_ids) + (final_x, final_y))
                        middle = sorted(runs, key=lambda one: one[0])[len(runs) // 2]
                        incremental, _, inc_work, inc_i, inc_p, _, _ = middle
                        _, inc_values, _, _, _, final_x, final_y = runs[0]
                        readers.npz("Final_" + tag, final_x, final_y)
                        scratch, scratch_values, scratch_work, scratch_i, scratch_p = run(conn, "Final_" + tag,
                                                                                          model_ids)
                        agree = inc_values == scratch_values
                        rows.append((tag, k, incremental, scratch, scratch / incremental, agree, inc_work,
                                     scratch_work, inc_i, inc_p, scratch_i, scratch_p, [one[0] for one in runs]))
                        print("%-12s %9d %16.2f %16.2f %7.1fx %13s   (inferred %d vs %d samples; worker seconds "
                              "inference %.1f vs %.1f, proxies %.1f vs %.1f; incremental runs %s s)"
                              % (tag, k, incremental, scratch, scratch / incremental, "yes" if agree else "NO",
                                 inc_work, scratch_work, inc_i, scratch_i, inc_p, scratch_p,
                                 ", ".join("%.2f" % one[0] for one in runs)))
            finally:
                worker.stop()
        finally:
            database.__exit__(None, None, None)
    finally:
        cluster.remove()
    if args.out:
        write(args.out, rows, model_ids, n, args.test_samples, first, argv)
    return rows


def write(path, rows, models, n, test_samples, first, argv):
    lines = ["# Incremental execution: Q2 after a change-reader or an add-reader", "",
             "`bench/incremental.py %s` on %s: %d models (%s), %d training samples, %d test samples, one CPU worker; "
             "Q2 (CosineNN) first run %.1f s. Incremental: Q2 on a mutable reader over the training reader "
             "with the one step; from scratch: Q2 on a plain reader holding the same final data in the same "
             "order (the test reader's features cached for both)."
             % (" ".join(argv or sys.argv[1:]), time.strftime("%Y-%m-%d"), len(models), ", ".join(models), n,
                test_samples, first), "",
             "| scenario | step samples | incremental (s) | from scratch (s) | ratio | samples inferred "
             "(incremental / from scratch) | inference s (incr. / scratch) | proxy s (incr. / scratch) "
             "| proxy values agree |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for tag, k, inc, scratch, ratio, agree, inc_work, scratch_work, inc_i, inc_p, scratch_i, scratch_p, _ in rows:
        lines.append("| %s | %d | %.2f | %.2f | %.1f× | %d / %d | %.1f / %.1f | %.1f / %.1f | %s |"
                     % (tag, k, inc, scratch, ratio, inc_work, scratch_work, inc_i, scratch_i, inc_p, scratch_p,
                        "yes" if agree else "no"))
    lines += ["", "Incremental: the median of %d runs, each over a fresh step of the same size (seconds: %s); "
              "its samples inferred and worker seconds are the median run's, its proxy values the first's."
              % (len(rows[0][-1]) if rows else 0,
                 "; ".join("%s %s" % (row[0], ", ".join("%.2f" % t for t in row[-1])) for row in rows))]
    lines += ["", "Worker seconds: what the worker recorded for the blocks it inferred (shift.features.seconds) "
              "and for the proxies it computed on the run's training reader (shift.scores.seconds, reading "
              "excluded); the rest of a run is planning, model loading, reading features and waiting."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
