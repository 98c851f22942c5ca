"""The worker: claims tasks from shift.tasks and runs them on one device.

Any number of workers, on any machines, share the queue: a task is claimed in
one statement with FOR UPDATE SKIP LOCKED and held by a lease that a heartbeat
extends; a worker that dies lets its lease expire and the task runs again
elsewhere. Everything a task produces is committed to the cache tables, so a
worker keeps no state a restart would lose.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from pyfuncs import proxies

from . import describe, finetune
from . import readers as reader_io
from .models import load_model

log = logging.getLogger("shift.worker")

LEASE_SECONDS = 60
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_GIVE_UP_SECONDS = 10.0  # under the 15 s after which shift.live_workers counts it dead

# A running task is abandoned when its lease ran out or its worker's heartbeat stopped
# (shift.live_workers: 15 s), whichever comes first; then another worker may take it.
_ABANDONED = """(c.status = 'running' AND (c.lease_until < now()
    OR NOT EXISTS (SELECT 1 FROM shift.live_workers w WHERE w.worker_id = c.worker_id)))"""

_EXPIRE = """
UPDATE shift.tasks c SET status = 'failed', finished_at = now(),
       error = format('lease expired %%s times; the worker running it stopped', attempts)
WHERE %s AND attempts >= max_attempts
""" % _ABANDONED

_FAIL_DEPENDENTS = """
UPDATE shift.tasks t SET status = 'failed', finished_at = now(), error = format('task %s it depends on failed', d.task_id)
FROM shift.tasks d
WHERE t.status = 'queued' AND d.task_id = ANY(t.depends_on) AND d.status = 'failed'
"""

_CLAIM = """
UPDATE shift.tasks t
SET status = 'running', worker_id = %(worker)s, lease_until = now() + make_interval(secs => %(lease)s),
    attempts = t.attempts + 1, started_at = now(), progress = 0
WHERE t.task_id = (
    SELECT c.task_id FROM shift.tasks c
    WHERE (c.status = 'queued' OR """ + _ABANDONED + """)
      AND NOT EXISTS (SELECT 1 FROM shift.tasks d WHERE d.task_id = ANY(c.depends_on) AND d.status <> 'done')
    -- a model already loaded here stays loaded while it has work (seed 000 §4.2: loads are costly)
    ORDER BY (c.payload->>'model_id') = ANY(%(loaded)s::text[]) DESC, c.task_id
    FOR UPDATE SKIP LOCKED
    LIMIT 1)
RETURNING t.task_id, t.kind, t.payload, t.attempts
"""


def pick_device(device="auto"):
    if device != "auto":
        return device
    import torch
    return "cuda:0" if torch.cuda.is_available() else "cpu"


class Worker:
    def __init__(self, dsn, device="auto", worker_id=None, batch_size=None, max_loaded_models=2,
                 lease_seconds=LEASE_SECONDS):
        self.dsn = dsn
        self.lease_seconds = lease_seconds
        self.device = pick_device(device)
        self.worker_id = worker_id or "%s-%d-%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6])
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 64)
        self.max_loaded_models = max_loaded_models
        self._models = OrderedDict()  # model_id -> LoadedModel; kept while they have work
        self._batch_sizes = {}  # model_id -> batch size after an out-of-memory fallback
        self._stop = threading.Event()
        self._current = None
        self._last_progress = 0.0
        self.conn = None

    # -- lifecycle -----------------------------------------------------------------

    def stop(self, *_):
        self._stop.set()

    def run(self, once=False):
        self.conn = psycopg.connect(self.dsn, autocommit=True, application_name="shift-worker")
        self.conn.execute("LISTEN shift_tasks")
        self.conn.execute(
            "INSERT INTO shift.workers (worker_id, hostname, pid, device) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), started_at = now()",
            (self.worker_id, socket.gethostname(), os.getpid(), self.device))
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        log.info("worker %s ready on %s", self.worker_id, self.device)
        try:
            while not self._stop.is_set():
                if not self.run_one() and not once:
                    # sleep until a NOTIFY arrives or a second passes (leases may expire meanwhile)
                    for _ in self.conn.notifies(timeout=1.0, stop_after=1):
                        pass
                elif once:
                    break
        finally:
            self._stop.set()
            beat.join(timeout=5)
            try:
                self.conn.execute("DELETE FROM shift.workers WHERE worker_id = %s", (self.worker_id,))
            finally:
                self.conn.close()

    def _heartbeat(self):
        """Beat every HEARTBEAT_SECONDS on a connection of its own, reconnecting after an error.

        A worker whose heartbeat cannot be written for HEARTBEAT_GIVE_UP_SECONDS stops
        (loudly): the queries would count it dead and hand its task to another worker.
        """
        conn, failing_since = None, None
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, application_name="shift-heartbeat")
                self._beat(conn)
                failing_since = None
            except psycopg.Error as e:
                failing_since = failing_since or time.monotonic()
                log.warning("heartbeat of %s failed: %s", self.worker_id, str(e).strip().splitlines()[0])
                if conn is not None:
                    conn.close()
                if time.monotonic() - failing_since > HEARTBEAT_GIVE_UP_SECONDS:
                    log.error("no heartbeat written for %.0fs; worker %s stops", HEARTBEAT_GIVE_UP_SECONDS,
                              self.worker_id)
                    self._stop.set()
        if conn is not None:
            conn.close()

    def _beat(self, conn):
        task = self._current
        conn.execute("UPDATE shift.workers SET heartbeat_at = now(), current_task = %s WHERE worker_id = %s",
                     (task, self.worker_id))
        if task is not None:
            conn.execute(
                "UPDATE shift.tasks SET lease_until = now() + make_interval(secs => %s) "
                "WHERE task_id = %s AND worker_id = %s AND status = 'running'",
                (self.lease_seconds, task, self.worker_id))

    # -- the queue -----------------------------------------------------------------

    def run_one(self):
        """Claim and run one task; False when none is ready."""
        self.conn.execute(_EXPIRE)
        self.conn.execute(_FAIL_DEPENDENTS)
        row = self.conn.execute(_CLAIM, {"worker": self.worker_id, "lease": self.lease_seconds,
                                         "loaded": list(self._models)}).fetchone()
        if row is None:
            return False
        task_id, kind, payload, attempt = row
        self._current = task_id
        started = time.perf_counter()
        try:
            run = {"inference": self.run_inference, "proxy": self.run_proxy, "describe": self.run_describe,
                   "finetune": self.run_finetune}.get(kind)
            if run is None:
                raise ValueError("this worker does not run %s tasks yet" % kind)
            # rights may have changed since the task was queued: check them again before reading anything
            denied = self.conn.execute("SELECT shift._task_denied(%s)", (task_id,)).fetchone()[0]
            if denied:
                raise PermissionError("permission denied: %s" % denied)
            run(task_id, payload)
        except Exception as e:  # noqa: BLE001 -- any failure is recorded on the task for the waiting query
            log.exception("task %s (%s) failed", task_id, kind)
            self.conn.execute(
                "UPDATE shift.tasks SET status = 'failed', error = %s, finished_at = now() "
                "WHERE task_id = %s AND worker_id = %s",
                ("%s: %s" % (type(e).__name__, e), task_id, self.worker_id))
        else:
            self.conn.execute(
                "UPDATE shift.tasks SET status = 'done', progress = 1, finished_at = now(), error = NULL "
                "WHERE task_id = %s AND worker_id = %s", (task_id, self.worker_id))
            self.conn.execute("UPDATE shift.workers SET tasks_done = tasks_done + 1 WHERE worker_id = %s",
                              (self.worker_id,))
            log.info("task %s (%s) done in %.2fs", task_id, kind, time.perf_counter() - started)
        finally:
            self._current = None
        return True

    def _progress(self, task_id, fraction):
        self.conn.execute("UPDATE shift.tasks SET progress = %s WHERE task_id = %s", (min(fraction, 1.0), task_id))

    # -- inference (seed 000 §3.4 "Inference Task") ------------------------------------------

    def _row(self, table, key, value):
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        row = cur.execute("SELECT * FROM shift.%s WHERE %s = %%s" % (table, key), (value,)).fetchone()
        if row is None:
            raise LookupError("%s %s is no longer registered" % (table[:-1], value))
        return row

    def _model(self, model_id):
        if model_id in self._models:
            self._models.move_to_end(model_id)
            return self._models[model_id], 0.0
        row = self._row("models", "model_id", model_id)
        started = time.perf_counter()
        try:
            model = load_model(row, self.device)
        except Exception as e:
            describe.record_failure(self.conn, model_id, e)
            raise
        load_seconds = time.perf_counter() - started
        self._models[model_id] = model
        while len(self._models) > self.max_loaded_models:
            self._models.popitem(last=False)
        describe.record_model(self.conn, model_id, model)
        return model, load_seconds

    def run_describe(self, task_id, payload):
        """Load a model and record what the library knows, or why it fails; or count a reader."""
        describe.run(self.conn, task_id, payload, self.device, load=lambda m: self._model(m)[0])

    def run_inference(self, task_id, payload):
        model_id, reader_id = payload["model_id"], payload["reader_id"]
        reader = self._row("readers", "reader_id", reader_id)
        done = {r[0] for r in self.conn.execute(
            "SELECT block FROM shift.features WHERE model_id = %s AND reader_id = %s AND block = ANY(%s)",
            (model_id, reader_id, payload["blocks"]))}
        blocks = [b for b in payload["blocks"] if b not in done]
        if not blocks:
            return
        model, load_seconds = self._model(model_id)
        infer_seconds, read_seconds, samples = 0.0, 0.0, 0
        with psycopg.connect(self.dsn, autocommit=True, application_name="shift-reader") as rconn:
            read_started = time.perf_counter()
            for i, (block, xs, ys) in enumerate(reader_io.iter_blocks(reader, blocks, conn=rconn)):
                read_seconds += time.perf_counter() - read_started
                started = time.perf_counter()
                feats, logits = self._extract(model, xs)
                seconds = time.perf_counter() - started
                infer_seconds += seconds
                samples += len(ys)
                check_block(model_id, reader_id, block, len(ys), feats, logits)
                with self.conn.transaction():
                    self.conn.execute(
                        "INSERT INTO shift.features (model_id, reader_id, block, num_rows, dim, data, num_logits, "
                        "logits, device, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (model_id, reader_id, block, feats.shape[0], feats.shape[1], _float32_bytes(feats),
                         None if logits is None else logits.shape[1],
                         None if logits is None else _float32_bytes(logits), self.device, seconds))
                    self.conn.execute(
                        "INSERT INTO shift.labels (reader_id, block, y) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                        (reader_id, block, [int(v) for v in ys]))
                self._progress(task_id, (i + 1) / len(blocks))
                read_started = time.perf_counter()
        self._record_cost(model_id, load_seconds, infer_seconds, samples)
        self._record_reader_cost(reader_id, read_seconds, samples)

    def _extract(self, model, xs):
        """Features and logits (None without a head) of a block in mini-batches.

        On CUDA out-of-memory the batch halves and the block goes on.
        """
        outs, heads, start = [], [], 0
        size = self._batch_sizes.get(model.model_id, self.batch_size)
        while start < len(xs):
            try:
                batch = model.preprocess(xs[start:start + size])
                feats, logits = model.extract(batch)
            except RuntimeError as e:
                if "out of memory" not in str(e).lower() or size == 1:
                    raise
                import torch
                torch.cuda.empty_cache()
                size = max(1, size // 2)
                self._batch_sizes[model.model_id] = size
                log.warning("out of memory with %s; batch size now %d", model.model_id, size)
                continue
            outs.append(feats)
            heads.append(logits)
            start += len(feats)
        logits = None if any(h is None for h in heads) else np.concatenate(heads, axis=0)
        return np.concatenate(outs, axis=0), logits

    def _record_cost(self, model_id, load_seconds, infer_seconds, samples):
        """L_i and I_i of the cost model (seed 000 §4.2), as a running per-sample mean."""
        if not samples:
            return
        self.conn.execute(
            """
            INSERT INTO shift.costs AS c (model_id, device, load_seconds, per_sample_seconds, samples)
            VALUES (%(m)s, %(d)s, %(load)s, %(per)s, %(n)s)
            ON CONFLICT (model_id, device) DO UPDATE SET
                load_seconds = CASE WHEN %(load)s > 0 THEN %(load)s ELSE c.load_seconds END,
                per_sample_seconds = (c.per_sample_seconds * c.samples + %(per)s * %(n)s) / (c.samples + %(n)s),
                samples = c.samples + %(n)s,
                measured_at = now()
            """,
            {"m": model_id, "d": self.device, "load": load_seconds, "per": infer_seconds / samples, "n": samples})

    def _record_reader_cost(self, reader_id, read_seconds, samples):
        """t_N of the cost model: seconds to read one sample of this reader."""
        if not samples:
            return
        self.conn.execute(
            """
            INSERT INTO shift.reader_costs AS c (reader_id, per_sample_seconds, samples) VALUES (%(r)s, %(per)s, %(n)s)
            ON CONFLICT (reader_id) DO UPDATE SET
                per_sample_seconds = (c.per_sample_seconds * c.samples + %(per)s * %(n)s) / (c.samples + %(n)s),
                samples = c.samples + %(n)s, measured_at = now()
            """, {"r": reader_id, "per": read_seconds / samples, "n": samples})

    # -- proxies (seed 000 §3.4 "Proxy Task") ---------------------------------------------

    def run_proxy(self, task_id, payload):
        p = payload
        key = (p["proxy"], Jsonb(p["params"]), p["model_id"], p["test_reader"], p["train_reader"], p["fidelity"])
        if self.conn.execute(
                "SELECT 1 FROM shift.scores WHERE proxy = %s AND params = %s AND model_id = %s AND test_reader = %s "
                "AND train_reader = %s AND fidelity = %s", key).fetchone():
            return
        train_x, train_y = read_features(self.conn, p["model_id"], p["train_reader"], limit=p["fidelity"])
        started = time.perf_counter()
        test_x, test_y = read_features(self.conn, p["model_id"], p["test_reader"])
        feature_read = (time.perf_counter() - started) / len(test_x)
        classes = dict(self.conn.execute("SELECT reader_id, classes FROM shift.readers WHERE reader_id IN (%s, %s)",
                                         (p["test_reader"], p["train_reader"])).fetchall())
        test_y = align_labels(test_y, classes[p["test_reader"]], classes[p["train_reader"]])
        started = time.perf_counter()
        value = proxies.compute(p["proxy"], p["params"], train_x, train_y, test_x, test_y)
        seconds = time.perf_counter() - started
        self.conn.execute(
            "INSERT INTO shift.scores (proxy, params, model_id, test_reader, train_reader, fidelity, value, seconds) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", key + (value, seconds))
        # E_Proxy and t_O of the cost model, as running means over training samples
        self.conn.execute(
            """
            INSERT INTO shift.proxy_costs AS c (proxy, params, per_sample_seconds, feature_read_seconds, samples)
            VALUES (%(p)s, %(params)s, %(e)s, %(o)s, %(n)s)
            ON CONFLICT (proxy, params) DO UPDATE SET
                per_sample_seconds = (c.per_sample_seconds * c.samples + %(e)s * %(n)s) / (c.samples + %(n)s),
                feature_read_seconds = (c.feature_read_seconds * c.samples + %(o)s * %(n)s) / (c.samples + %(n)s),
                samples = c.samples + %(n)s, measured_at = now()
            """, {"p": p["proxy"], "params": Jsonb(p["params"]), "e": seconds / len(train_x), "o": feature_read,
                  "n": len(train_x)})


    # -- fine-tuning (seed 002 §4.3) --------------------------------------------------------

    def _read_reader(self, reader_id, like=None):
        """Every sample of a reader, in its order, as a finetune.Split; class ids as `like` numbers them."""
        reader = self._row("readers", "reader_id", reader_id)
        blocks = range(-(-reader["num_samples"] // reader["block_size"]))
        xs, ys = [], []
        with psycopg.connect(self.dsn, autocommit=True, application_name="shift-reader") as rconn:
            for _block, x, y in reader_io.iter_blocks(reader, blocks, conn=rconn):
                xs.append(x)
                ys.append(np.asarray(y, dtype=np.int64))
        if all(isinstance(x, np.ndarray) for x in xs):
            x = np.concatenate(xs)
        else:
            x = [s for block in xs for s in block]
        y = np.concatenate(ys)
        if like is not None:
            y = align_labels(y, reader["classes"], like["classes"])
        return reader, finetune.Split(x, y)

    def run_finetune(self, task_id, payload):
        p = payload
        key = (p["model_id"], p["train_reader"], p["validation_reader"], p["test_reader"], Jsonb(p["params"]))
        if self.conn.execute(
                "SELECT 1 FROM shift.finetune_results WHERE model_id = %s AND train_reader = %s "
                "AND validation_reader = %s AND test_reader = %s AND params = %s", key).fetchone():
            return
        self._last_progress = 0.0
        train_reader, train = self._read_reader(p["train_reader"])
        _, validation = self._read_reader(p["validation_reader"], like=train_reader)
        _, test = self._read_reader(p["test_reader"], like=train_reader)
        # a fresh copy: fine-tuning changes the weights, and the loaded models serve inference
        loaded = load_model(self._row("models", "model_id", p["model_id"]), self.device)
        result = finetune.run(loaded, train, validation, test, len(train_reader["classes"]), p["params"],
                              progress=lambda f: self._progress_every(task_id, f))
        self.conn.execute(
            "INSERT INTO shift.finetune_results (model_id, train_reader, validation_reader, test_reader, params, "
            "test_accuracy, validation_accuracy, settings, seconds, device, worker_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            key + (result["test_accuracy"], result["validation_accuracy"], Jsonb(result["settings"]),
                   result["seconds"], self.device, self.worker_id))

    def _progress_every(self, task_id, fraction, step=0.05):
        """Progress, written when it has moved by `step` (fine-tuning reports every SGD step)."""
        if fraction - self._last_progress >= step or fraction >= 1.0:
            self._last_progress = fraction
            self._progress(task_id, fraction)


def align_labels(y, classes, to_classes):
    """Class ids of one reader -> the ids another reader gives the same class names; -1 where it lacks one.

    Each reader numbers its own classes, so a test reader lacking a class of the
    train reader numbers the others differently.
    """
    if list(classes) == list(to_classes):
        return y
    index = {c: i for i, c in enumerate(to_classes)}
    mapping = np.array([index.get(c, -1) for c in classes], dtype=np.int64)
    return mapping[np.asarray(y, dtype=np.int64)]


def _float32_bytes(rows):
    return np.ascontiguousarray(rows, dtype="<f4").tobytes()


def check_block(model_id, reader_id, block, num_rows, feats, logits):
    """What a model gave for one block must be one finite row per sample before it is cached."""
    for what, rows in (("features", feats), ("logits", logits)):
        if rows is None:
            continue
        if rows.ndim != 2 or rows.shape[0] != num_rows:
            raise ValueError("model %s gave %s of shape %s for block %d of reader %s, which has %d samples"
                             % (model_id, what, tuple(rows.shape), block, reader_id, num_rows))
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            raise ValueError("model %s gave non-finite %s for %d of the %d samples of block %d of reader %s "
                             "(first: sample %d of the block); nothing of the block is cached"
                             % (model_id, what, int(bad.sum()), num_rows, block, reader_id, int(bad.argmax())))


def read_logits(conn, model_id, reader_id):
    """The source task's logits of one model over one reader, in the reader's order; None without a head."""
    rows = conn.execute(
        "SELECT num_rows, num_logits, logits FROM shift.features WHERE model_id = %s AND reader_id = %s "
        "ORDER BY block", (model_id, reader_id)).fetchall()
    if not rows or any(r[2] is None for r in rows):
        return None
    return np.concatenate([np.frombuffer(r[2], dtype="<f4").reshape(r[0], r[1]) for r in rows])


def read_features(conn, model_id, reader_id, limit=None):
    """Features and labels of one model over one reader, in the reader's order, from the cache."""
    rows = conn.execute(
        "SELECT f.block, f.num_rows, f.dim, f.data, l.y FROM shift.features f "
        "JOIN shift.labels l USING (reader_id, block) "
        "WHERE f.model_id = %s AND f.reader_id = %s ORDER BY f.block", (model_id, reader_id)).fetchall()
    expected = conn.execute("SELECT num_samples FROM shift.readers WHERE reader_id = %s", (reader_id,)).fetchone()
    want = expected[0] if limit is None else limit
    total = sum(r[1] for r in rows)
    if [r[0] for r in rows] != list(range(len(rows))) or total < want:
        raise LookupError("features of %s on %s cover %d of %d samples in the cache" % (model_id, reader_id, total, want))
    xs = np.concatenate([np.frombuffer(r[3], dtype="<f4").reshape(r[1], r[2]) for r in rows])[:want]
    ys = np.concatenate([np.asarray(r[4], dtype=np.int64) for r in rows])[:want]
    return xs, ys
