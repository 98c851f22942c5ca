"""`make demo`: the queries Q1-Q3 of seed 000 §3.2 on a real zoo and real data, end to end, then Q2 again
after a change-reader replaced some training samples (seed 000 §5).

Starts the embedded cluster and a worker, builds a small zoo of timm models
pre-trained here on a generated upstream task (no hub is needed), registers
scikit-learn's handwritten digits as a SQL reader (train) and an .npz reader
(test), then runs the queries through shift.query. A second run finds the
zoo, the registrations and every feature and proxy value cached.
"""

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
