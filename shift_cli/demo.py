"""`make demo`: the queries Q1-Q3 of seed 000 §3.2 on a real zoo and real data, end to end, then Q2 again
after a change-reader replaced some training samples (seed 000 §5), then Q5 (the meta-learned FineTune).

Starts the embedded cluster and a worker, builds a small zoo of timm models
pre-trained here on a generated upstream task (no hub is needed), registers
scikit-learn's handwritten digits as a SQL reader (train) and an .npz reader
(test), then runs the queries through shift.query.

For Q5 it registers three small generated benchmark tasks as readers (warped
digits, near the test digits; textures; object counts; from bench/quality's
generators), records every zoo model's fine-tuning result on each with a short
protocol through shift.finetune, and asks Q5 with the digits test reader as the
target: datasim tasks compute the Task2Vec embeddings (the zoo model with the best
upstream accuracy is the probe, shift.task2vec_probe), the nearest benchmark task is chosen and the
models are ranked by what fine-tuning achieved there. The pool of the inner
query is the benchmark readers (`DataReaderId LIKE 'Bench%'`): the digits' own
readers have no fine-tuning history to rank by.

A second run finds the zoo, the registrations and every feature, proxy value,
fine-tuning result and task embedding cached.
"""

import json
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from .zoo import build_zoo

from .cluster import Cluster
from .testbed import copy_samples, register_model
from .workers import running_workers, start_workers

QUERIES = {
    "Q1": ("best reported upstream accuracy",
           "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY UpstreamAccuracy DESC LIMIT 1"),
    "Q2": ("best nearest-neighbour classifier accuracy",
           "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY CosineNN ASC LIMIT 1 "
           "TESTED ON DigitsTest TRAINED ON DigitsTrain"),
    "Q3": ("best linear classifier accuracy",
           "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY Linear(lr=0.1) ASC LIMIT 1 "
           "TESTED ON DigitsTest TRAINED ON DigitsTrain"),
}

# the fine-tuning protocol of the recorded benchmark history: short, so that the demo stays quick
BENCH_PROTOCOL = {"steps": 10, "batch_size": 32}
# Q5 of seed 000 §3.2 with TestReader = DigitsTest, the recorded protocol's parameters, and the pool of
# the inner query restricted to the benchmark readers
Q5 = """SELECT ModelId FROM Models
WHERE Input == 'Vision' AND
      Readers.ReaderId IN
          (SELECT DataReaderId FROM DataReaders WHERE DataReaderId LIKE 'Bench%%'
          ORDER BY Task2Vec LIMIT 1
          TESTED ON DigitsTest
      ) Q6
ORDER BY FineTune(steps=%(steps)d, batch_size=%(batch_size)d) LIMIT 1""" % BENCH_PROTOCOL
# (reader, bench/quality task, samples, side): generated 32x32 images in grey; the warped digits are
# box-filtered to 8x8 like the scikit-learn scans
BENCH_TASKS = (("BenchWarpedDigits", "digits", 240, 8), ("BenchTextures", "textures", 240, 32),
               ("BenchCounts", "counts", 240, 32))

console = Console(width=110)


def digits_split(seed=0):
    """scikit-learn's 8x8 digits (1,797 real scans), split 80/20 in a fixed order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    x = (d.images[order] / 16.0).astype(np.float32)
    y = d.target[order].astype(np.int64)
    cut = int(0.8 * len(y))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def register_data(conn, cluster):
    (train_x, train_y), (test_x, test_y) = digits_split()
    have = {r[0] for r in conn.execute("SELECT reader_id FROM shift.readers")}
    if "DigitsTrain" not in have:
        conn.execute("CREATE TABLE IF NOT EXISTS public.digits_train (id integer PRIMARY KEY, x real[], y integer)")
        conn.execute("TRUNCATE public.digits_train")
        copy_samples(conn, "digits_train", train_x, train_y)
        conn.execute("SELECT shift.register_sql_reader('DigitsTrain', "
                     "'SELECT x, y FROM public.digits_train ORDER BY id', options => '{\"shape\": [8, 8]}')")
    if "DigitsTest" not in have:
        path = cluster.server_readable_dir("data") / "digits_test.npz"
        np.savez(path, x=test_x, y=test_y)
        path.chmod(0o644)
        conn.execute("SELECT shift.register_npz_reader('DigitsTest', %s)", (str(path),))
    return len(train_y), len(test_y)


def register_zoo(conn, zoo):
    have = {r[0] for r in conn.execute("SELECT model_id FROM shift.models")}
    new = [m for m in zoo if m["model_id"] not in have]
    for m in new:
        register_model(conn, m)
    return len(new)


def show_all_models(conn):
    """Every model's upstream accuracy and proxy errors, all from the cache the queries filled."""
    rows = conn.execute(
        """
        SELECT m.model_id, m.architecture, m.num_params, m.upstream_accuracy, nn.score, lin.score
        FROM shift.models m
        JOIN shift.score('CosineNN', '{}', ARRAY(SELECT model_id FROM shift.models),
                         'DigitsTest', 'DigitsTrain') nn USING (model_id)
        JOIN shift.score('Linear', '{"lr": 0.1}', ARRAY(SELECT model_id FROM shift.models),
                         'DigitsTest', 'DigitsTrain') lin USING (model_id)
        ORDER BY lin.score, m.model_id
        """).fetchall()
    console.print("[bold]every model[/], its proxy values read back from the cache:")
    table = Table()
    for name, justify in (("model", "left"), ("architecture", "left"), ("parameters", "right"),
                          ("upstream accuracy", "right"), ("CosineNN error", "right"), ("Linear error", "right")):
        table.add_column(name, justify=justify)
    for model_id, arch, params, upstream, nn, lin in rows:
        table.add_row(model_id, arch or "", "{:,}".format(params) if params else "",
                      "%.3f" % upstream, "%.4f" % nn, "%.4f" % lin)
    console.print(table)


CHANGED_SAMPLES = 72  # about 5% of DigitsTrain


def inferred(conn, readers):
    """(blocks, samples, seconds) of the inference cached so far over these readers."""
    return conn.execute("SELECT count(*), coalesce(sum(num_rows), 0), coalesce(sum(seconds), 0) "
                        "FROM shift.features WHERE reader_id = ANY(%s)", (list(readers),)).fetchone()


def incremental_q2(conn, first_seconds):
    """Seed 000 §5, scenario 1: replace samples of the training reader with a change-reader, re-run Q2.

    DigitsTrainLive is a mutable reader over DigitsTrain; its version 2 takes DigitsFixes (the same
    scans moved by a pixel) in place of 72 samples. Only those 72 samples are inferred, per model."""
    (train_x, train_y), _ = digits_split()
    have = {r[0] for r in conn.execute("SELECT reader_id FROM shift.readers")}
    where = np.random.default_rng(1).choice(len(train_y), CHANGED_SAMPLES, replace=False)
    if "DigitsFixes" not in have:
        conn.execute("CREATE TABLE IF NOT EXISTS public.digits_fixes (id integer PRIMARY KEY, x real[], y integer)")
        conn.execute("TRUNCATE public.digits_fixes")
        copy_samples(conn, "digits_fixes", np.roll(train_x[where], 1, axis=2), train_y[where])
        conn.execute("SELECT shift.register_sql_reader('DigitsFixes', "
                     "'SELECT x, y FROM public.digits_fixes ORDER BY id', options => '{\"shape\": [8, 8]}')")
    if "DigitsTrainLive" not in have:
        conn.execute("SELECT shift.create_mutable_reader('DigitsTrainLive', 'DigitsTrain')")
        conn.execute("SELECT shift.change_reader('DigitsTrainLive', 'DigitsFixes', %s)", ([int(i) for i in where],))
    first = inferred(conn, ["DigitsTrain", "DigitsTest"])
    before = inferred(conn, ["DigitsFixes"])
    text = QUERIES["Q2"][1].replace("TRAINED ON DigitsTrain", "TRAINED ON DigitsTrainLive")
    t = time.perf_counter()
    rows = conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (text,)).fetchall()
    seconds = time.perf_counter() - t
    after = inferred(conn, ["DigitsFixes"])
    versions = conn.execute("SELECT version_reader, step, step_samples FROM shift.reader_versions('DigitsTrainLive') "
                            "ORDER BY version").fetchall()
    console.print("[bold]Q2 after a change[/]: DigitsTrainLive is %s" % ", then ".join(
        "%s (%s, %s samples)" % v for v in versions))
    console.print("  " + " ".join(text.split()), style="dim")
    console.print("  best: %s (%.4f)" % (rows[0][1], rows[0][2]))
    table = Table()
    for name in ("run", "feature blocks inferred", "samples inferred", "inference seconds", "query seconds"):
        table.add_column(name, justify="left" if name == "run" else "right")
    table.add_row("Q2, first run (all of DigitsTrain, DigitsTest)", str(first[0]), str(first[1]), "%.2f" % first[2],
                  "%.2f" % first_seconds if first_seconds is not None else "")
    table.add_row("Q2 on the changed reader (DigitsFixes only)", str(after[0] - before[0]), str(after[1] - before[1]),
                  "%.2f" % (after[2] - before[2]), "%.2f" % seconds)
    console.print(table)


def bench_task(task, n, side, seed=0):
    """n images of a bench/quality upstream task in grey, floats in [0, 1], box-filtered to side x side."""
    from bench.quality.datasets import UPSTREAM

    x, y = UPSTREAM[task].generate(n, seed)
    grey = x.astype(np.float32).mean(axis=3) / 255.0
    f = grey.shape[1] // side
    return grey.reshape(n, side, f, side, f).mean(axis=(2, 4)).astype(np.float32), y


def register_benchmarks(conn):
    """The benchmark tasks as SQL readers, and the zoo's fine-tuning results on each (shift.finetune)."""
    have = {r[0] for r in conn.execute("SELECT reader_id FROM shift.readers")}
    for reader, task, n, side in BENCH_TASKS:
        if reader not in have:
            x, y = bench_task(task, n, side)
            table = "bench_" + task
            conn.execute("CREATE TABLE IF NOT EXISTS public.%s (id integer PRIMARY KEY, x real[], y integer)" % table)
            conn.execute("TRUNCATE public.%s" % table)
            copy_samples(conn, table, x, y)
            conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM public.%s ORDER BY id', "
                         "options => %%s)" % table, (reader, json.dumps({"shape": [side, side]})))
    models = [r[0] for r in conn.execute("SELECT model_id FROM shift.models WHERE input = 'Vision' ORDER BY model_id")]
    t = time.perf_counter()
    for reader, _, _, _ in BENCH_TASKS:  # trained, chosen and measured on the task itself, as a benchmark reports
        conn.execute("SELECT * FROM shift.finetune(%s, %s, %s, %s, %s)",
                     (models, reader, reader, reader, json.dumps(BENCH_PROTOCOL))).fetchall()
    return time.perf_counter() - t


def q5(conn):
    """Seed 000 §3.2 Q5 for the digits: the nearest benchmark task by Task2Vec, the models ranked by their history."""
    finetune_seconds = register_benchmarks(conn)
    # the probe is the zoo model that learned its upstream task best, as seed 002 probes with an
    # ImageNet ResNet: a probe that learned little has few filters that carry a Fisher signal
    probe = conn.execute("SELECT model_id FROM shift.models WHERE input = 'Vision' AND source = 'timm' "
                         "ORDER BY upstream_accuracy DESC, model_id LIMIT 1").fetchone()[0]
    conn.execute("SELECT set_config('shift.task2vec_probe', %s, false)", (probe,))  # this session
    conn.execute("ALTER DATABASE shift SET shift.task2vec_probe = '%s'" % probe)    # and later ones
    t = time.perf_counter()
    rows = conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (Q5,)).fetchall()
    seconds = time.perf_counter() - t
    readers = [b[0] for b in BENCH_TASKS]
    near = conn.execute("SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', '{}', %s, 'DigitsTest') "
                        "ORDER BY score, reader_id", (readers,)).fetchall()
    embedded = dict(conn.execute("SELECT reader_id, seconds FROM shift.task_embeddings WHERE settings->>'probe' = %s "
                                 "AND reader_id = ANY(%s)", (probe, readers + ["DigitsTest"])).fetchall())
    history = conn.execute("SELECT model_id, max(test_accuracy) FROM shift.finetune_results WHERE test_reader = %s "
                           "AND params @> %s GROUP BY model_id ORDER BY 2 DESC, 1",
                           (near[0][0], json.dumps(BENCH_PROTOCOL))).fetchall()
    console.print("[bold]Q5[/]: the model that fine-tuned best on the task nearest the digits, %.2fs" % seconds)
    console.print("  " + " ".join(Q5.split()), style="dim")
    console.print("  benchmark history: %d models fine-tuned on %s (steps=%d, batch_size=%d), %.1fs; probe %s"
                  % (len(history), ", ".join(readers), BENCH_PROTOCOL["steps"], BENCH_PROTOCOL["batch_size"],
                     finetune_seconds, probe))
    table = Table()
    for name in ("reader", "Task2Vec distance to DigitsTest", "datasim seconds"):
        table.add_column(name, justify="left" if name == "reader" else "right")
    for reader, distance in near:
        table.add_row(reader, "%.4f" % distance, "%.2f" % embedded.get(reader, float("nan")))
    table.add_row("DigitsTest (the target)", "", "%.2f" % embedded.get("DigitsTest", float("nan")))
    console.print(table)
    table = Table()
    for name in ("rank", "model", "fine-tuned accuracy on %s" % near[0][0]):
        table.add_column(name, justify="left" if name == "model" else "right")
    for i, (model_id, acc) in enumerate(history, 1):
        table.add_row(str(i), model_id, "%.4f" % acc)
    console.print(table)
    console.print("  answer: %s (FineTune error %.4f on %s, distance %.4f)"
                  % (rows[0][1], rows[0][2], near[0][0], near[0][1]))


def main():
    started = time.perf_counter()
    cluster = Cluster()
    fresh_cluster = cluster.init()
    cluster.start()
    cluster.ensure_database("shift")
    if not running_workers(cluster.home):
        start_workers(cluster.worker_dsn("shift"), count=1, home=cluster.home)
    console.print("[bold]shift demo[/] cluster %s (%s)" % (cluster.dsn("shift"), "new" if fresh_cluster else "reused"))

    t = time.perf_counter()
    zoo = build_zoo(cluster.home / "zoo", profile="demo")
    zoo_seconds = time.perf_counter() - t

    with cluster.connect("shift", autocommit=True) as conn:
        new_models = register_zoo(conn, zoo)
        n_train, n_test = register_data(conn, cluster)
        tasks_before = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
        features_before = conn.execute("SELECT count(*) FROM shift.features").fetchone()[0]
        console.print("zoo: %d timm models pre-trained on a generated shapes task (%.1fs, %d newly registered); "
                      "readers DigitsTrain (SQL, %d samples) and DigitsTest (.npz, %d samples)"
                      % (len(zoo), zoo_seconds, new_models, n_train, n_test))
        query_seconds = {}
        for name, (what, text) in QUERIES.items():
            t = time.perf_counter()
            rows = conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (text,)).fetchall()
            seconds = query_seconds[name] = time.perf_counter() - t
            console.print("[bold]%s[/]: %s, %.2fs" % (name, what, seconds))
            table = Table()
            table.add_column("rank", justify="right")
            table.add_column("model")
            table.add_column("score", justify="right")
            for rank, model_id, value in rows:
                table.add_row(str(rank), model_id, "%.4f" % value)
            console.print("  " + " ".join(text.split()), style="dim")
            console.print(table)
        show_all_models(conn)
        incremental_q2(conn, query_seconds["Q2"])
        q5(conn)
        tasks_after = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
        features_after = conn.execute("SELECT count(*) FROM shift.features").fetchone()[0]

    total = time.perf_counter() - started
    if tasks_after == tasks_before:
        console.print("[green]everything came from the cache:[/] no new task, %d feature blocks reused; "
                      "%.1fs in all" % (features_after, total))
    else:
        console.print("computed %d tasks and %d feature blocks; %.1fs in all. Run `make demo` again: "
                      "the second run reuses the cache." % (tasks_after - tasks_before,
                                                            features_after - features_before, total))
    console.print("explore with `.venv/bin/shift psql`, e.g. SELECT * FROM shift.query($$ ... $$);")


if __name__ == "__main__":
    main()
