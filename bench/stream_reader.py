"""Stream a large reader through a small model: the worker's memory stays flat as the reader grows.

For each reader size (default 100,000 and 1,000,000 samples), writes a reader of small
samples (8x8 grayscale images; 64 numbers per row for CSV), registers it with the SQL
function of its kind, registers a small TorchScript network, starts a fresh worker,
enqueues one inference task over every block of the reader, and samples the worker's
memory (/proc/PID/status) while it runs. Prints, per size: samples, blocks, seconds,
samples per second, the worker's resident memory after its first block, its peak
resident memory (VmHWM, all pages), its peak anonymous memory (heap: what the reader
and the model hold; file pages are page cache the kernel can drop), and at the end.

    .venv/bin/python bench/stream_reader.py [--samples 100000 1000000] [--reader npz|npy|csv|sql]
                                            [--block-size 1024]

It starts its own cluster (in /tmp, fsync off) and a CPU worker, and removes them at the end.
"""

import argparse
import json
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyfuncs import tasks  # noqa: E402
from shift_cli.testbed import Database, WorkerProcess, start_scratch_cluster  # noqa: E402

SIDE = 8          # samples are SIDE x SIDE grayscale images
CLASSES = 10
CHUNK = 100_000   # samples written at a time


class SmallNet(nn.Module):
    """Two convolutions and a linear head: 32-d features, 10 logits."""

    def __init__(self, tabular=False):
        super().__init__()
        self.tabular = tabular
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(32, CLASSES)

    @torch.jit.export
    def forward_features(self, x):
        if self.tabular:  # N x 64 feature rows as one-channel 8 x 8 images
            x = x.view(-1, 1, 8, 8).expand(-1, 3, -1, -1)
        return self.body(x)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def write_model(path, tabular):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(SmallNet(tabular).eval()).save(str(path))


def chunks(n, seed=0):
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        yield start, rng.integers(0, 256, size=(m, SIDE, SIDE), dtype=np.uint8), \
            rng.integers(0, CLASSES, size=m).astype(np.int64)


def write_reader(conn, kind, n, data_dir, reader_id, block_size):
    """Write n samples in the reader kind's format and register them; returns the registered count."""
    if kind in ("npz", "npy"):
        x = np.empty((n, SIDE, SIDE), np.uint8)
        y = np.empty(n, np.int64)
        for start, cx, cy in chunks(n):
            x[start:start + len(cx)], y[start:start + len(cy)] = cx, cy
        if kind == "npz":
            path = data_dir / ("%s.npz" % reader_id)
            np.savez(path, x=x, y=y)
            path.chmod(0o644)
            sql, args = "SELECT shift.register_npz_reader(%s, %s, block_size => %s)", (reader_id, str(path), block_size)
        else:
            np.save(data_dir / ("%s_x.npy" % reader_id), x)
            np.save(data_dir / ("%s_y.npy" % reader_id), y)
            for p in data_dir.glob("%s_*.npy" % reader_id):
                p.chmod(0o644)
            sql, args = "SELECT shift.register_npy_reader(%s, %s, %s, block_size => %s)", (
                reader_id, str(data_dir / ("%s_x.npy" % reader_id)), str(data_dir / ("%s_y.npy" % reader_id)),
                block_size)
        del x, y
    elif kind == "csv":
        path = data_dir / ("%s.csv" % reader_id)
        with open(path, "w") as f:
            f.write(",".join("p%d" % i for i in range(SIDE * SIDE)) + ",label\n")
            for _, cx, cy in chunks(n):
                np.savetxt(f, np.concatenate([cx.reshape(len(cx), -1), cy[:, None]], axis=1), fmt="%d", delimiter=",")
        path.chmod(0o644)
        sql, args = "SELECT shift.register_csv_reader(%s, %s, block_size => %s)", (reader_id, str(path), block_size)
    elif kind == "sql":
        table = "public.%s" % reader_id.lower()
        conn.execute("CREATE TABLE %s (id integer PRIMARY KEY, x smallint[] NOT NULL, y integer NOT NULL)" % table)
        with conn.cursor().copy("COPY %s (id, x, y) FROM STDIN" % table) as copy:
            for start, cx, cy in chunks(n):
                for i, (xi, yi) in enumerate(zip(cx.reshape(len(cx), -1).tolist(), cy.tolist())):
                    copy.write_row((start + i, xi, yi))
        sql, args = ("SELECT shift.register_sql_reader(%s, %s, options => '{\"shape\": [8, 8]}', block_size => %s)",
                     (reader_id, "SELECT x, y FROM %s ORDER BY id" % table, block_size))
    else:
        raise SystemExit("unknown reader kind %s" % kind)
    return conn.execute(sql, args).fetchone()[0]


def memory(pid):
    """Resident memory figures of a process, in MiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def run_one(db, cluster, kind, n, block_size, model_path, tabular):
    reader_id = "Bench%s%d" % (kind.capitalize(), n)
    data_dir = cluster.server_readable_dir("bench-data")
    with db.connect() as conn:
        t0 = time.perf_counter()
        count = write_reader(conn, kind, n, data_dir, reader_id, block_size)
        write_s = time.perf_counter() - t0
        assert count == n, (count, n)
        model_id = "small_net_%s" % kind
        if not conn.execute("SELECT 1 FROM shift.models WHERE model_id = %s", (model_id,)).fetchone():
            conn.execute("SELECT shift.register_model(%s, 'torchscript', %s, input => %s, input_size => %s)",
                         (model_id, str(model_path), "Tabular" if tabular else "Vision", SIDE))
    worker = WorkerProcess(db.worker_dsn, cluster.home / ("worker-bench-%s-%d.log" % (kind, n)),
                           "bench-%s-%d" % (kind, n)).wait_ready()
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(memory(worker.proc.pid))
            except OSError:
                break
            stop.wait(0.1)

    idle = memory(worker.proc.pid)
    blocks = list(range(-(-n // block_size)))
    key = "inference/%s/%s/0-%d" % (model_id, reader_id, blocks[-1])  # one task over every block: one stream
    try:
        with db.connect() as conn:
            conn.execute("INSERT INTO shift.tasks (kind, key, payload) VALUES ('inference', %s, %s)",
                         (key,
                          json.dumps(tasks.inference_payload(model_id, reader_id, blocks))))
            conn.execute("NOTIFY shift_tasks")
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            first_block = None
            while True:
                status, progress, error = conn.execute(
                    "SELECT status, progress, error FROM shift.tasks WHERE key = %s",
                    (key,)).fetchone()
                if first_block is None and progress > 0:
                    first_block = memory(worker.proc.pid)
                if status in ("done", "failed"):
                    break
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            end = memory(worker.proc.pid)
            stop.set()
            sampler.join()
            if status == "failed":
                raise SystemExit("inference failed: %s" % error)
            stored = conn.execute("SELECT sum(num_rows) FROM shift.features WHERE model_id = %s AND reader_id = %s",
                                  (model_id, reader_id)).fetchone()[0]
            assert stored == n, (stored, n)
    finally:
        stop.set()
        worker.stop()
    return dict(kind=kind, samples=n, blocks=len(blocks), write_s=write_s, seconds=seconds,
                rate=n / seconds, idle=idle["VmRSS"], first=(first_block or end)["VmRSS"], peak=end["VmHWM"],
                peak_anon=max(s.get("RssAnon", 0.0) for s in samples + [end]), end=end["VmRSS"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reader", default="npz", choices=["npz", "npy", "csv", "sql"])
    parser.add_argument("--block-size", type=int, default=1024)
    args = parser.parse_args(argv)

    cluster = start_scratch_cluster("shift-bench-")
    home = cluster.home
    tabular = args.reader == "csv"
    model_path = cluster.server_readable_dir("bench-models") / "small_net.pt"
    write_model(model_path, tabular)
    model_path.chmod(0o644)
    rows = []
    ok = False
    try:
        with Database(cluster, "shift_bench") as db:
            for n in args.samples:
                r = run_one(db, cluster, args.reader, n, args.block_size, model_path, tabular)
                rows.append(r)
                print("%s reader, %d samples: %.1f s (%.0f samples/s); worker RSS %.0f MiB idle, %.0f MiB after "
                      "the first block, peak %.0f MiB (anonymous %.0f MiB), %.0f MiB at the end"
                      % (r["kind"], r["samples"], r["seconds"], r["rate"], r["idle"], r["first"], r["peak"],
                         r["peak_anon"], r["end"]), flush=True)
        ok = True
    finally:
        cluster.remove()
        if ok:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print("worker logs kept in %s" % home, file=sys.stderr)
    print()
    print("| reader | samples | blocks | seconds | samples/s | RSS idle (MiB) | RSS after block 1 | peak RSS (VmHWM) "
          "| peak anonymous | RSS at end |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| %s | %d | %d | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |"
              % (r["kind"], r["samples"], r["blocks"], r["seconds"], r["rate"], r["idle"], r["first"], r["peak"],
                 r["peak_anon"], r["end"]))


if __name__ == "__main__":
    main()
