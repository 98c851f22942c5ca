"""Successive halving against one full pass, and the cost model's choice (seed 000 §4, §6.2-6.4).

Builds a heterogeneous pool of timm architectures (random weights, saved once so
every run sees the same networks), a large and a small training reader of
generated shape images, and runs the Q2 kind (CosineNN) and Q3 kind (Linear) of
top-1 query three ways on each: without SH, with SH, and with the plan the cost
model picks. Between runs the feature and score caches are emptied; measured
costs are kept, as they would be in use. Prints measured times, the ratio
SH / no-SH, the cost model's predicted ratio and its pick, and the overhead of a
full query over plain batched inference of the same models on the same samples.

    .venv/bin/python bench/engine.py [--train 20000] [--small 1000] [--test 1000] [--models 16]

It starts its own cluster (in /tmp, fsync off) and one worker per device.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_daemon.models import load_model  # noqa: E402
from shift_cli.testbed import Database, WorkerProcess, start_scratch_cluster  # noqa: E402
from shift_cli.zoo import shapes_dataset  # noqa: E402

POOL = ["resnet10t", "resnet14t", "resnet18", "resnet26", "resnet34", "mobilenetv3_small_050",
        "mobilenetv3_small_100", "mobilenetv3_large_100", "efficientnet_b0", "regnetx_002", "regnetx_004",
        "regnety_002", "convnext_atto", "convnext_femto", "lcnet_050", "lcnet_100", "mnasnet_small",
        "ghostnet_100", "densenet121", "resnet50"]
KINDS = {"Q2": ("CosineNN", "{}"), "Q3": ("Linear", '{"lr": 0.1}')}


def build_pool(out, count):
    """Random-init timm models saved to disk, seeded: the same weights in every run."""
    import timm

    out.mkdir(parents=True, exist_ok=True)
    pool = []
    for i, name in enumerate(POOL[:count]):
        path = out / ("%s.pth" % name)
        if not path.exists():
            torch.manual_seed(i)
            torch.save(timm.create_model(name, pretrained=False, num_classes=10).state_dict(), path)
        pool.append({"model_id": "bench.%s" % name, "locator": name, "checkpoint": str(path)})
    return pool


def reset(conn):
    conn.execute("DELETE FROM shift.scores; DELETE FROM shift.features; DELETE FROM shift.labels; "
                 "DELETE FROM shift.tasks")


def run_query(conn, scorer, params, train, mode):
    conn.execute("SET shift.successive_halving = %s" % ("'%s'" % mode))
    started = time.perf_counter()
    rows = conn.execute("SELECT model_id, score FROM shift.score(%s, %s, ARRAY(SELECT model_id FROM shift.models), "
                        "'BenchTest', %s, top_k => 1)", (scorer, params, train)).fetchall()
    seconds = time.perf_counter() - started
    plan = conn.execute("SELECT choice, estimate_full, estimate_sh, terms FROM shift.plans ORDER BY plan_id DESC "
                        "LIMIT 1").fetchone()
    inferred = conn.execute("SELECT coalesce(sum(num_rows), 0) FROM shift.features WHERE reader_id = %s",
                            (train,)).fetchone()[0]
    out = {"seconds": seconds, "top1": rows[0][0], "score": rows[0][1], "choice": plan[0],
           "estimate_full": plan[1], "estimate_sh": plan[2], "survival": (plan[3] or {}).get("survival"),
           "train_samples_inferred": int(inferred)}
    out.update(breakdown(conn))
    return out


def breakdown(conn):
    """Where the query's time went, from what the worker recorded: model time, proxy time, task wall times."""
    tasks = dict(conn.execute("SELECT kind, sum(extract(epoch FROM finished_at - started_at)) FROM shift.tasks "
                              "WHERE status = 'done' GROUP BY kind").fetchall())
    return {"inference_task_seconds": float(tasks.get("inference") or 0.0),
            "proxy_task_seconds": float(tasks.get("proxy") or 0.0),
            "model_seconds": float(conn.execute("SELECT coalesce(sum(seconds), 0) FROM shift.features").fetchone()[0]),
            "proxy_seconds": float(conn.execute("SELECT coalesce(sum(seconds), 0) FROM shift.scores").fetchone()[0])}


def plain_inference(pool, arrays, batch_size):
    """The same models over the same samples, batched, in one process: no database, no queue."""
    torch.set_num_threads(torch.get_num_threads())
    started = time.perf_counter()
    for m in pool:
        model = load_model({"model_id": m["model_id"], "source": "timm", "locator": m["locator"],
                            "checkpoint": m["checkpoint"], "input_size": 32,
                            "options": {"num_classes": 10, "pretrained": False}}, "cpu")
        for xs in arrays:
            for s in range(0, len(xs), batch_size):
                model.extract(model.preprocess(xs[s:s + batch_size]))
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    cluster = start_scratch_cluster("shift-bench-")
    home = cluster.home
    results = {"machine": {"torch_threads": torch.get_num_threads(),
                           "device": "cuda:0" if torch.cuda.is_available() else "cpu"}}
    try:
        pool = build_pool(ROOT / ".shift" / "bench-pool", args.models)
        data = cluster.server_readable_dir("bench")
        x, y = shapes_dataset(args.train + args.test, seed=11)
        np.savez(data / "train.npz", x=x[:args.train], y=y[:args.train])
        np.savez(data / "small.npz", x=x[:args.small], y=y[:args.small])
        np.savez(data / "test.npz", x=x[args.train:], y=y[args.train:])
        for f in data.iterdir():
            f.chmod(0o644)
        with Database(cluster, "bench") as db:
            with db.connect() as conn:
                for m in pool:
                    conn.execute("SELECT shift.register_model(%s, 'timm', %s, checkpoint => %s, input_size => 32, "
                                 "options => '{\"num_classes\": 10, \"pretrained\": false}')",
                                 (m["model_id"], m["locator"], m["checkpoint"]))
                for rid, f in (("BenchTrain", "train"), ("BenchSmall", "small"), ("BenchTest", "test")):
                    conn.execute("SELECT shift.register_npz_reader(%s, %s, block_size => 256)",
                                 (rid, str(data / ("%s.npz" % f))))
            worker = WorkerProcess(db.worker_dsn, home / "worker.log", "bench").wait_ready()
            try:
                with db.connect() as conn:
                    for reader, n in (("BenchTrain", args.train), ("BenchSmall", args.small)):
                        for kind, (scorer, params) in KINDS.items():
                            runs = {}
                            for mode in ("off", "on", "auto"):
                                reset(conn)
                                runs[mode] = run_query(conn, scorer, params, reader, mode)
                                print("%-10s %s %-4s %8.1fs  plan %-18s top-1 %s" % (
                                    reader, kind, mode, runs[mode]["seconds"], runs[mode]["choice"],
                                    runs[mode]["top1"]), flush=True)
                            results["%s/%s" % (reader, kind)] = runs
                    batch = 64
                    started = time.perf_counter()
                    plain = plain_inference(pool, [x[:args.train], x[args.train:]], batch)
                    results["plain_inference_seconds"] = plain
                    print("plain batched inference of the pool over train+test: %.1fs (%.1fs wall)"
                          % (plain, time.perf_counter() - started), flush=True)
                    costs = conn.execute("SELECT model_id, load_seconds, per_sample_seconds FROM shift.costs "
                                         "ORDER BY per_sample_seconds").fetchall()
                    results["costs"] = [{"model": c[0], "L": c[1], "I": c[2]} for c in costs]
            finally:
                worker.stop()
    finally:
        cluster.remove()
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def report(results, args):
    print()
    print("| reader | query | no SH (s) | SH (s) | picked (s) | plan picked | SH / no-SH measured | "
          "predicted (§4.2 prior) | predicted (measured survival) | top-1 same |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, runs in results.items():
        if "/" not in key:
            continue
        reader, kind = key.split("/")
        off, on, auto = runs["off"], runs["on"], runs["auto"]
        measured = on["seconds"] / off["seconds"]
        prior, predicted = (r["estimate_sh"] / r["estimate_full"] for r in (on, auto))
        faster = "successive halving" if on["seconds"] < off["seconds"] else "full"
        print("| %s (%d) | %s | %.1f | %.1f | %.1f | %s%s | %.2f | %.2f | %.2f (s = %.2f) | %s |" % (
            reader, args.train if reader == "BenchTrain" else args.small, kind, off["seconds"], on["seconds"],
            auto["seconds"], auto["choice"], "" if auto["choice"] == faster else " (slower one)", measured,
            prior, predicted, auto["survival"], "yes" if off["top1"] == on["top1"] else "no"))
    plain = results.get("plain_inference_seconds")
    if plain:
        for kind in KINDS:
            off = results["BenchTrain/%s" % kind]["off"]
            full = off["seconds"]
            print("overhead %s: full query %.1fs / plain batched inference %.1fs = %.2f" % (kind, full, plain,
                                                                                           full / plain))
            print("  of the full query: models %.1fs, rest of inference tasks (read, store) %.1fs, proxies %.1fs "
                  "(tasks %.1fs), outside tasks %.1fs" % (
                      off["model_seconds"], off["inference_task_seconds"] - off["model_seconds"],
                      off["proxy_seconds"], off["proxy_task_seconds"],
                      full - off["inference_task_seconds"] - off["proxy_task_seconds"]))
    speedups = [results["BenchTrain/%s" % k]["off"]["seconds"] / results["BenchTrain/%s" % k]["on"]["seconds"]
                for k in KINDS]
    print("SH speed-up on the large reader: %s" % ", ".join("%.2fx" % s for s in speedups))
    print("median model inference cost: %.3f ms/sample" % (1e3 * statistics.median(
        c["I"] for c in results["costs"])))


if __name__ == "__main__":
    main()
