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

from pyfuncs import embeddings, fingerprints, proxies, versions
from pyfuncs.tasks import num_blocks

from . import assemble, describe, finetune, task2vec
from .jobs import JobRunner
from . import readers as reader_io
from .models import load_model

log = logging.getLogger("shift.worker")

LEASE_SECONDS = 60
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_RETRY_SECONDS = 1.0
HEARTBEAT_WARN_SECONDS = 10.0  # under the 15 s after which shift.live_workers counts it dead
RECONNECT_FIRST_SECONDS = 0.5  # after a lost connection; doubling up to RECONNECT_MAX_SECONDS
RECONNECT_MAX_SECONDS = 10.0
FIRST_CONNECT_SECONDS = 120.0  # how long a starting worker waits for the database to come up
RETRY_FIRST_SECONDS = 2.0  # a task that failed for a transient reason waits this long, doubling per attempt
RETRY_MAX_SECONDS = 120.0
MAINTAIN_SECONDS = 60.0  # how often a worker prunes old tasks and gone waiters

# Settings the worker reads on every use, so ALTER SYSTEM and a reload change them
MAX_DEATHS = "coalesce(nullif(current_setting('shift.max_task_deaths', true), '')::integer, 2)"
WORKER_MEMORY_MB = "coalesce(nullif(current_setting('shift.worker_memory_mb', true), '')::float8, 1024)"
RETENTION = "coalesce(nullif(current_setting('shift.task_retention', true), ''), '7 days')::interval"

# A running task is abandoned when its lease ran out or its worker's heartbeat stopped
# (shift.live_workers: 15 s), whichever comes first; then another worker may take it.
_ABANDONED = """(c.status = 'running' AND (c.lease_until < now()
    OR NOT EXISTS (SELECT 1 FROM shift.live_workers w WHERE w.worker_id = c.worker_id)))"""

# An abandoned task whose workers died shift.max_task_deaths times is quarantined: it would kill the
# next worker too, so queries do not reset it (shift.retry_task does). One out of attempts just fails.
# Rows are locked in key order, as shift._enqueue locks them, and rows it holds are left for the next
# loop: waiting on them in another order could deadlock with it.
_EXPIRE = """
WITH s AS (SELECT """ + MAX_DEATHS + """ AS max_deaths),
doomed AS (
    SELECT c.task_id FROM shift.tasks c, s
    WHERE """ + _ABANDONED + """ AND (c.deaths + 1 >= s.max_deaths OR c.attempts >= c.max_attempts)
    ORDER BY c.key
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE shift.tasks c SET status = 'failed', finished_at = now(), deaths = c.deaths + 1,
       quarantined = c.deaths + 1 >= s.max_deaths,
       error = CASE WHEN c.deaths + 1 >= s.max_deaths THEN format(
           'the workers running it died %s times (the last: %s); shift.max_task_deaths is %s, so queries '
           'do not run it again until shift.retry_task(%s)', c.deaths + 1, c.worker_id, s.max_deaths, c.task_id)
           ELSE format('lease expired %s times; the worker running it stopped', c.attempts) END
FROM s, doomed
WHERE c.task_id = doomed.task_id
"""

# Rows a query's shift._enqueue holds are skipped (the next loop gets them): waiting on them, in
# another order than the enqueue's key order, could deadlock with it.
_FAIL_DEPENDENTS = """
WITH doomed AS (
    SELECT t.task_id, d.task_id AS failed_dependency
    FROM shift.tasks t JOIN shift.tasks d ON d.task_id = ANY(t.depends_on)
    WHERE t.status = 'queued' AND d.status = 'failed'
    ORDER BY t.key
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE shift.tasks t SET status = 'failed', finished_at = now(),
    error = format('task %s it depends on failed', doomed.failed_dependency)
FROM doomed
WHERE t.task_id = doomed.task_id AND t.status = 'queued'
"""

# Taking an abandoned task counts a death of the worker that held it.
_CLAIM = """
UPDATE shift.tasks t
SET status = 'running', worker_id = %(worker)s, lease_until = now() + make_interval(secs => %(lease)s),
    attempts = t.attempts + 1, deaths = t.deaths + (t.status = 'running')::integer, retry_at = NULL,
    started_at = now(), progress = 0
WHERE t.task_id = (
    SELECT c.task_id FROM shift.tasks c
    WHERE ((c.status = 'queued' AND (c.retry_at IS NULL OR c.retry_at <= now())) OR """ + _ABANDONED + """)
      AND NOT EXISTS (SELECT 1 FROM shift.tasks d WHERE d.task_id = ANY(c.depends_on) AND d.status <> 'done')
    -- a model already loaded here stays loaded while it has work (seed 000 §4.2: loads are costly)
    ORDER BY (c.payload->>'model_id') = ANY(%(loaded)s::text[]) DESC, c.task_id
    FOR UPDATE SKIP LOCKED
    LIMIT 1)
RETURNING t.task_id, t.kind, t.payload, t.attempts
"""

# A transient failure is retried after a pause that doubles per attempt, while attempts remain.
_RETRY_OR_FAIL = """
UPDATE shift.tasks SET
    status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    retry_at = CASE WHEN attempts < max_attempts
                    THEN now() + make_interval(secs => least(%(first)s * 2.0 ^ (attempts - 1), %(most)s)) END,
    finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
    worker_id = CASE WHEN attempts < max_attempts THEN NULL ELSE worker_id END,
    lease_until = NULL,
    error = CASE WHEN attempts < max_attempts
                 THEN format('attempt %%s of %%s failed, to be retried: %%s', attempts, max_attempts, %(error)s)
                 ELSE format('failed %%s times; the last time: %%s', attempts, %(error)s) END
WHERE task_id = %(task)s AND worker_id = %(worker)s
RETURNING status
"""

# Giving a task back (the worker stops, or lost its connection while running it)
_GIVE_BACK = """
UPDATE shift.tasks SET status = 'queued', worker_id = NULL, lease_until = NULL, progress = 0,
       attempts = greatest(attempts - %(undo)s, 0)
WHERE worker_id = %(worker)s AND status = 'running'
RETURNING task_id
"""

# The task that was running when the worker's connection was lost counts a death, as a killed worker's
# does (a task may break the connection itself: a reader query that crashes its backend, say), so one
# that keeps doing it is quarantined after shift.max_task_deaths, or fails when out of attempts.
_GIVE_BACK_LOST = """
UPDATE shift.tasks c SET deaths = c.deaths + 1, lease_until = NULL, progress = 0,
       status = CASE WHEN c.deaths + 1 >= s.max_deaths OR c.attempts >= c.max_attempts THEN 'failed'
                     ELSE 'queued' END,
       quarantined = c.deaths + 1 >= s.max_deaths,
       finished_at = CASE WHEN c.deaths + 1 >= s.max_deaths OR c.attempts >= c.max_attempts THEN now() END,
       worker_id = CASE WHEN c.deaths + 1 >= s.max_deaths OR c.attempts >= c.max_attempts
                        THEN c.worker_id END,
       error = CASE WHEN c.deaths + 1 >= s.max_deaths THEN format(
           'the workers running it lost their database connection or died %%s times (the last: %%s); '
           'shift.max_task_deaths is %%s, so queries do not run it again until shift.retry_task(%%s)',
           c.deaths + 1, c.worker_id, s.max_deaths, c.task_id)
           WHEN c.attempts >= c.max_attempts THEN format(
           'its worker lost its database connection on the last of %%s attempts', c.attempts)
           ELSE c.error END
FROM (SELECT """ + MAX_DEATHS + """ AS max_deaths) s
WHERE c.worker_id = %(worker)s AND c.status = 'running'
RETURNING c.task_id, c.status
"""

# Done and failed tasks past shift.task_retention go (quarantined ones stay: they guard against a
# poison task coming back), so do workers silent as long; waiters keep only live backends.
_PRUNE = (
    "DELETE FROM shift.tasks WHERE task_id IN (SELECT task_id FROM shift.tasks WHERE status IN ('done', 'failed') "
    "AND NOT quarantined AND finished_at < now() - " + RETENTION + " ORDER BY key FOR UPDATE SKIP LOCKED)",
    "DELETE FROM shift.workers WHERE heartbeat_at < now() - " + RETENTION,
    "DELETE FROM shift.jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < now() - " + RETENTION,
    # in key order, skipping rows an enqueue holds (see _EXPIRE)
    """WITH stale AS (
           SELECT t.task_id FROM shift.tasks t
           WHERE EXISTS (SELECT 1 FROM unnest(t.waiters) w
                         WHERE w NOT IN (SELECT pid FROM pg_catalog.pg_stat_activity))
           ORDER BY t.key
           FOR UPDATE OF t SKIP LOCKED)
       UPDATE shift.tasks t SET waiters = ARRAY(
           SELECT w FROM unnest(t.waiters) w WHERE w IN (SELECT pid FROM pg_catalog.pg_stat_activity))
       FROM stale WHERE t.task_id = stale.task_id""",
)

_REGISTER = """
INSERT INTO shift.workers (worker_id, hostname, pid, device, current_task) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), current_task = EXCLUDED.current_task
"""

# Failures that may pass by themselves: lost connections (08), serialization failures and deadlocks
# (40), insufficient resources (53), operator intervention such as a server shutting down (57), a lock
# not available (55P03); memory, and network errors
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")


class TaskStopped(Exception):
    """The worker was asked to stop in the middle of a task; the task is given back."""


class ContentChanged(Exception):
    """A reader's data changed while a task read it: what it computed is of no one version; try again."""


def is_transient(e):
    """Whether a task that failed with `e` may succeed when tried again later."""
    if isinstance(e, psycopg.Error):
        state = e.sqlstate
        if state is None:
            return isinstance(e, psycopg.OperationalError)  # raised by the client: the connection
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state == "55P03"
    if isinstance(e, (MemoryError, ConnectionError, TimeoutError, ContentChanged)):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def pick_device(device="auto"):
    if device != "auto":
        return device
    import torch
    return "cuda:0" if torch.cuda.is_available() else "cpu"


class Worker:
    def __init__(self, dsn, device="auto", worker_id=None, batch_size=None, max_loaded_models=2,
                 lease_seconds=LEASE_SECONDS, job_runners=1, first_connect_seconds=FIRST_CONNECT_SECONDS):
        self.dsn = dsn
        self.first_connect_seconds = first_connect_seconds
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
        self._next_maintenance = 0.0
        self.failed = False  # set when the worker stops because something broke
        self.conn = None
        # jobs wait on tasks, so they run beside the task loop, never on it
        self.job_runners = [JobRunner(self, "jobs-%d" % i) for i in range(job_runners)]

    # -- lifecycle -----------------------------------------------------------------

    def stop(self, *_):
        self._stop.set()

    def run(self, once=False):
        """Serve the queue until stopped; True when the worker stopped because something broke."""
        # the database may not be up yet (started with it, or restarting): wait as a reconnect does
        self.conn = self._connect("shift-worker", give_up_after=self.first_connect_seconds)
        if self.conn is None:
            if self._stop.is_set():
                return False
            log.error("worker %s could not connect to the database within %.0fs; it stops", self.worker_id,
                      self.first_connect_seconds)
            return True
        self._register(first=True)
        ready = os.environ.get("SHIFT_WORKER_READY_FILE")  # the supervisor restarts only a worker that came up
        if ready:
            open(ready, "w").close()
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        for runner in self.job_runners:
            runner.start()
        log.info("worker %s ready on %s", self.worker_id, self.device)
        try:
            while not self._stop.is_set():
                if not self._serve_once() and once:
                    break
        finally:
            self._stop.set()
            for runner in self.job_runners:
                runner.stop()  # gives its job back while the heartbeat still says this worker lives
            beat.join(timeout=5)
            self._unregister()
        return self.failed

    def _serve_once(self):
        """One turn of the loop: maintenance when due, a task or a wait; False after a failed turn."""
        try:
            if time.monotonic() >= self._next_maintenance:
                self._maintain()
            if not self.run_one():
                # sleep until a NOTIFY arrives or a second passes (leases may expire meanwhile)
                for _ in self.conn.notifies(timeout=1.0, stop_after=1):
                    pass
            return True
        except psycopg.Error as e:
            if self.conn.closed or self.conn.broken:
                self._reconnect(e)
            else:  # a deadlock with a query's enqueue, say: the statement is tried again
                log.warning("a queue statement of worker %s failed (%s); trying again", self.worker_id,
                            _first_line(e))
                self._stop.wait(1.0)
            return False

    def _register(self, first=False):
        self.conn.execute("LISTEN shift_tasks")
        if first:
            self.conn.execute("DELETE FROM shift.workers WHERE worker_id = %s", (self.worker_id,))
        self.conn.execute(_REGISTER, (self.worker_id, socket.gethostname(), os.getpid(), self.device, None))

    def _unregister(self):
        try:
            if not (self.conn.closed or self.conn.broken):
                self.conn.execute("DELETE FROM shift.workers WHERE worker_id = %s", (self.worker_id,))
        except psycopg.Error as e:
            log.warning("worker %s could not unregister: %s", self.worker_id, _first_line(e))
        finally:
            self.conn.close()

    def _connect(self, application_name, give_up_after=None):
        """A new connection, tried with a doubling pause until it opens; None when the worker stops first,
        or when `give_up_after` seconds have passed (0: one try)."""
        delay = RECONNECT_FIRST_SECONDS
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        while not self._stop.is_set():
            try:
                return psycopg.connect(self.dsn, autocommit=True, application_name=application_name,
                                       connect_timeout=10)
            except psycopg.Error as e:
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                if pause <= 0:
                    log.warning("worker %s cannot connect (%s)", self.worker_id, _first_line(e))
                    return None
                log.warning("worker %s cannot connect (%s); next try in %.1fs", self.worker_id, _first_line(e),
                            pause)
                self._stop.wait(pause)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        return None

    def _reconnect(self, error):
        """After a lost connection (a PostgreSQL restart, say): connect again, listen, give back what was held."""
        log.warning("worker %s lost its database connection (%s); reconnecting", self.worker_id, _first_line(error))
        self.conn.close()
        conn = self._connect("shift-worker")
        if conn is None:
            return
        self.conn = conn
        self._register()
        # the task that was running when the connection went is queued again, its attempt and a death counted
        given = self.conn.execute(_GIVE_BACK_LOST, {"worker": self.worker_id}).fetchall()
        if given:
            self.conn.execute("NOTIFY shift_tasks")
        log.info("worker %s reconnected%s", self.worker_id,
                 "".join("; task %s %s" % (t, "given back" if st == "queued" else "failed") for t, st in given))

    def _maintain(self):
        for statement in _PRUNE:
            self.conn.execute(statement)
        self._next_maintenance = time.monotonic() + MAINTAIN_SECONDS

    def _heartbeat(self):
        """Beat every HEARTBEAT_SECONDS on a connection of its own, reconnecting after a database error.

        Database errors are waited out (a PostgreSQL restart); anything else stops the
        worker loudly, since a worker without a heartbeat would be counted dead while it works.
        """
        try:
            self._beat_until_stopped()
        except Exception:  # noqa: BLE001 -- logged, and the worker exits with status 1
            log.exception("the heartbeat of worker %s broke; the worker stops", self.worker_id)
            self.failed = True
            self._stop.set()

    def _beat_until_stopped(self):
        conn, failing_since, warned, delay = None, None, False, HEARTBEAT_SECONDS
        while not self._stop.wait(delay):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, application_name="shift-heartbeat",
                                           connect_timeout=10)
                self._beat(conn)
                if failing_since is not None:
                    log.info("heartbeat of %s written again", self.worker_id)
                failing_since, warned, delay = None, False, HEARTBEAT_SECONDS
            except psycopg.Error as e:
                if conn is not None:
                    conn.close()
                log.warning("heartbeat of %s failed: %s", self.worker_id, _first_line(e))
                failing_since = failing_since or time.monotonic()
                if not warned and time.monotonic() - failing_since > HEARTBEAT_WARN_SECONDS:
                    warned = True
                    log.error("no heartbeat of %s written for %.0fs: queries count it dead and may hand its "
                              "task to another worker", self.worker_id, time.monotonic() - failing_since)
                delay = HEARTBEAT_RETRY_SECONDS  # soon: the worker counts as dead after 15 s
        if conn is not None:
            conn.close()

    def _beat(self, conn):
        task = self._current
        # an upsert: after a restart or a cleanup the row comes back
        conn.execute(_REGISTER, (self.worker_id, socket.gethostname(), os.getpid(), self.device, task))
        for runner in self.job_runners:
            runner.beat(conn)
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
                   "finetune": self.run_finetune, "datasim": self.run_datasim, "validate": self.run_validate}.get(kind)
            if run is None:
                raise ValueError("this worker does not run %s tasks yet" % kind)
            # rights may have changed since the task was queued: check them again before reading anything
            denied = self.conn.execute("SELECT shift._task_denied(%s)", (task_id,)).fetchone()[0]
            if denied:
                raise PermissionError("permission denied: %s" % denied)
            run(task_id, payload)
        except TaskStopped:
            self.conn.execute(_GIVE_BACK, {"undo": 1, "worker": self.worker_id})
            self.conn.execute("NOTIFY shift_tasks")
            log.info("task %s (%s) given back: worker %s stops", task_id, kind, self.worker_id)
        except Exception as e:  # noqa: BLE001 -- any failure is recorded on the task for the waiting query
            if isinstance(e, psycopg.Error) and (self.conn.closed or self.conn.broken):
                raise  # the reconnection gives the task back
            self._record_failure(task_id, kind, e)
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

    def _record_failure(self, task_id, kind, e):
        """A transient failure is retried later while attempts remain; any other fails the task at once."""
        message = "%s: %s" % (type(e).__name__, e)
        if is_transient(e):
            row = self.conn.execute(_RETRY_OR_FAIL, {"first": RETRY_FIRST_SECONDS, "most": RETRY_MAX_SECONDS,
                                                     "error": message, "task": task_id,
                                                     "worker": self.worker_id}).fetchone()
            if row is not None and row[0] == "queued":
                log.warning("task %s (%s) failed for a reason that may pass (%s); it will be retried",
                            task_id, kind, message)
            else:
                log.error("task %s (%s) failed on its last attempt", task_id, kind, exc_info=e)
            return
        log.error("task %s (%s) failed", task_id, kind, exc_info=e)
        self.conn.execute(
            "UPDATE shift.tasks SET status = 'failed', error = %s, finished_at = now() "
            "WHERE task_id = %s AND worker_id = %s", (message, task_id, self.worker_id))

    def _progress(self, task_id, fraction):
        if self._stop.is_set():
            raise TaskStopped()
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
        """Features of the blocks that lack features of the blocks' current content (fingerprints.py)."""
        model_id, reader_id = payload["model_id"], payload["reader_id"]
        reader = self._row("readers", "reader_id", reader_id)
        done = {r[0] for r in self.conn.execute(
            "SELECT f.block FROM shift.features f JOIN shift.labels l USING (reader_id, block) "
            "WHERE f.model_id = %s AND f.reader_id = %s AND f.block = ANY(%s) AND f.fingerprint = l.fingerprint",
            (model_id, reader_id, payload["blocks"]))}
        blocks = [b for b in payload["blocks"] if b not in done]
        if not blocks:
            return
        model, load_seconds = self._model(model_id)
        infer_seconds, read_seconds, samples = 0.0, 0.0, 0
        with psycopg.connect(self.dsn, autocommit=True, application_name="shift-reader") as rconn:
            read_started = time.perf_counter()
            for i, (block, xs, ys) in enumerate(reader_io.iter_blocks(reader, blocks, conn=rconn)):
                fingerprint = fingerprints.block_fingerprint(xs, ys)
                read_seconds += time.perf_counter() - read_started
                started = time.perf_counter()
                feats, logits = self._extract(model, xs)
                seconds = time.perf_counter() - started
                infer_seconds += seconds
                samples += len(ys)
                check_block(model_id, reader_id, block, len(ys), feats, logits)
                with self.conn.transaction():
                    # the block as read now is its content: features of other content become stale
                    self.conn.execute(
                        "INSERT INTO shift.features AS f (model_id, reader_id, block, fingerprint, num_rows, dim, data, "
                        "num_logits, logits, device, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (model_id, reader_id, block) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
                        "num_rows = EXCLUDED.num_rows, dim = EXCLUDED.dim, data = EXCLUDED.data, "
                        "num_logits = EXCLUDED.num_logits, logits = EXCLUDED.logits, device = EXCLUDED.device, "
                        "seconds = EXCLUDED.seconds, computed_at = now() WHERE f.fingerprint <> EXCLUDED.fingerprint",
                        (model_id, reader_id, block, fingerprint, feats.shape[0], feats.shape[1],
                         _float32_bytes(feats), None if logits is None else logits.shape[1],
                         None if logits is None else _float32_bytes(logits), self.device, seconds))
                    self._store_labels(reader_id, block, ys, fingerprint)
                self._progress(task_id, (i + 1) / len(blocks))
                read_started = time.perf_counter()
        self._record_cost(model_id, load_seconds, infer_seconds, samples)
        self._record_reader_cost(reader_id, read_seconds, samples)

    def _store_labels(self, reader_id, block, ys, fingerprint):
        self.conn.execute(
            "INSERT INTO shift.labels AS l (reader_id, block, y, fingerprint) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (reader_id, block) DO UPDATE SET y = EXCLUDED.y, fingerprint = EXCLUDED.fingerprint "
            "WHERE l.fingerprint <> EXCLUDED.fingerprint",
            (reader_id, block, [int(v) for v in ys], fingerprint))

    def run_validate(self, task_id, payload):
        """Re-read and fingerprint a reader's cached blocks, after its source changed (fingerprints.py).

        A block whose fingerprint differs gets its new labels and fingerprint, which makes its
        features and the scores over it stale; no model runs. The signature stored is the one
        this read saw: a SQL reader's digest from the snapshot the blocks are read in, a file
        reader's taken before reading."""
        reader_id = payload["reader_id"]
        reader = self._row("readers", "reader_id", reader_id)
        started = time.perf_counter()
        cached = {b: bytes(fp) for b, fp in self.conn.execute(
            "SELECT block, fingerprint FROM shift.labels WHERE reader_id = %s", (reader_id,))}
        changed = 0
        with psycopg.connect(self.dsn, autocommit=True, application_name="shift-reader") as rconn:
            with rconn.transaction():
                if reader["kind"] == "sql":
                    rconn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    signature = rconn.execute("SELECT shift._reader_digest(current_user, %s)",
                                              (reader_id,)).fetchone()[0]
                else:
                    signature = fingerprints.file_signature(reader)
                blocks = sorted(cached)
                for i, (block, xs, ys) in enumerate(reader_io.iter_blocks(reader, blocks, conn=rconn)):
                    fingerprint = fingerprints.block_fingerprint(xs, ys)
                    if fingerprint != cached[block]:
                        self._store_labels(reader_id, block, ys, fingerprint)
                        changed += 1
                    self._progress(task_id, (i + 1) / len(blocks))
        seconds = time.perf_counter() - started
        self.conn.execute(
            "INSERT INTO shift.reader_sources AS s (reader_id, signature, blocks_checked, blocks_changed, seconds) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (reader_id) DO UPDATE SET signature = EXCLUDED.signature, "
            "blocks_checked = EXCLUDED.blocks_checked, blocks_changed = EXCLUDED.blocks_changed, "
            "seconds = EXCLUDED.seconds, checked_at = now()",
            (reader_id, signature, len(cached), changed, seconds))
        if changed:
            log.info("reader %s changed: %d of its %d cached blocks differ", reader_id, changed, len(cached))

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
        """A proxy's value on cached features, read block by block under shift.worker_memory_mb."""
        p = payload
        key = (p["proxy"], Jsonb(p["params"]), p["model_id"], p["test_reader"], p["train_reader"], p["fidelity"])
        exists = ("SELECT 1 FROM shift.scores WHERE proxy = %s AND params = %s AND model_id = %s AND test_reader = %s "
                  "AND train_reader = %s AND fidelity = %s AND content = %s")
        # the content the value is of: a score is served only while the readers still hold it
        content = current_content(self.conn, p["train_reader"], p["test_reader"], p["fidelity"])
        if self.conn.execute(exists, key + (content,)).fetchone():
            return
        classes = dict(self.conn.execute("SELECT reader_id, classes FROM shift.readers WHERE reader_id IN (%s, %s)",
                                         (p["test_reader"], p["train_reader"])).fetchall())
        memory = int(self.conn.execute("SELECT " + WORKER_MEMORY_MB).fetchone()[0] * 2 ** 20)
        reading = _ReadClock()
        outputs = proxies.OUTPUTS.get(p["proxy"], "features")
        train = reading.timed(feature_blocks(self.conn, p["model_id"], p["train_reader"], limit=p["fidelity"],
                                             outputs=outputs))
        test = reading.timed(feature_blocks(
            self.conn, p["model_id"], p["test_reader"], outputs=outputs,
            relabel=lambda y: align_labels(y, classes[p["test_reader"]], classes[p["train_reader"]])))
        started = time.perf_counter()
        value = proxies.compute_blocks(p["proxy"], p["params"], train, test, memory)
        seconds = time.perf_counter() - started - reading.seconds
        # a pool-relative metric gives its raw terms, which queries combine over their pool
        terms = value if isinstance(value, dict) else None
        value = next(iter(terms.values())) if terms else value
        if current_content(self.conn, p["train_reader"], p["test_reader"], p["fidelity"]) != content:
            raise ContentChanged("the data of reader %s or %s changed while proxy %s read its features; the query "
                                 "computes it again" % (p["train_reader"], p["test_reader"], p["proxy"]))
        self.conn.execute(
            "INSERT INTO shift.scores (proxy, params, model_id, test_reader, train_reader, fidelity, content, value, "
            "terms, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            key + (content, value, terms and Jsonb(terms), seconds))
        # E_Proxy and t_O of the cost model, as running means over training samples
        self.conn.execute(
            """
            INSERT INTO shift.proxy_costs AS c (proxy, params, per_sample_seconds, feature_read_seconds, samples)
            VALUES (%(p)s, %(params)s, %(e)s, %(o)s, %(n)s)
            ON CONFLICT (proxy, params) DO UPDATE SET
                per_sample_seconds = (c.per_sample_seconds * c.samples + %(e)s * %(n)s) / (c.samples + %(n)s),
                feature_read_seconds = (c.feature_read_seconds * c.samples + %(o)s * %(n)s) / (c.samples + %(n)s),
                samples = c.samples + %(n)s, measured_at = now()
            """, {"p": p["proxy"], "params": Jsonb(p["params"]), "e": seconds / train.n,
                  "o": reading.seconds / max(1, reading.rows), "n": train.n})

    # -- fine-tuning (seed 002 §4.3) --------------------------------------------------------

    def _read_reader(self, reader_id, memory_bytes, like=None):
        """A reader's samples, read block by block under `memory_bytes`; class ids as `like` numbers them."""
        reader = self._row("readers", "reader_id", reader_id)
        relabel = None if like is None else (lambda y: align_labels(y, reader["classes"], like["classes"]))
        # SQL readers open a connection per pass: the task's own stays free
        return reader, finetune.reader_split(reader, memory_bytes, self.dsn, relabel)

    def run_finetune(self, task_id, payload):
        p = payload
        key = (p["model_id"], p["train_reader"], p["validation_reader"], p["test_reader"], Jsonb(p["params"]))
        signature = p["source_signature"]
        if self.conn.execute(
                "SELECT 1 FROM shift.finetune_results WHERE model_id = %s AND train_reader = %s "
                "AND validation_reader = %s AND test_reader = %s AND params = %s AND source_signature = %s",
                key + (signature,)).fetchone():
            return
        self._last_progress = 0.0
        # a fresh copy: fine-tuning changes the weights, and the loaded models serve inference
        try:
            loaded = load_model(self._row("models", "model_id", p["model_id"]), self.device)
        except Exception as e:
            describe.record_failure(self.conn, p["model_id"], e)  # queries and shift.finetune leave it out
            raise
        # shift.worker_memory_mb bounds what is held: half for the train reader's samples, a quarter for
        # the head's features, an eighth for each of the others (held when they fit, else read per pass)
        memory = int(self.conn.execute("SELECT " + WORKER_MEMORY_MB).fetchone()[0] * 2 ** 20)
        train_reader, train = self._read_reader(p["train_reader"], memory // 2)
        _, validation = self._read_reader(p["validation_reader"], memory // 8, like=train_reader)
        _, test = self._read_reader(p["test_reader"], memory // 8, like=train_reader)
        result = finetune.run(loaded, train, validation, test, len(train_reader["classes"]), p["params"],
                              progress=lambda f: self._progress_every(task_id, f), memory_bytes=memory // 2)
        # the result of the readers' earlier data, if any, is replaced
        self.conn.execute(
            "INSERT INTO shift.finetune_results AS f (model_id, train_reader, validation_reader, test_reader, params, "
            "source_signature, test_accuracy, validation_accuracy, settings, seconds, device, worker_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (model_id, train_reader, validation_reader, test_reader, params) DO UPDATE SET "
            "source_signature = EXCLUDED.source_signature, test_accuracy = EXCLUDED.test_accuracy, "
            "validation_accuracy = EXCLUDED.validation_accuracy, settings = EXCLUDED.settings, "
            "seconds = EXCLUDED.seconds, device = EXCLUDED.device, worker_id = EXCLUDED.worker_id, "
            "computed_at = now() WHERE f.source_signature <> EXCLUDED.source_signature",
            key + (signature, result["test_accuracy"], result["validation_accuracy"], Jsonb(result["settings"]),
                   result["seconds"], self.device, self.worker_id))

    # -- dataset similarity (seed 000 §3.4 "DataSim Task") ----------------------------------

    def run_datasim(self, task_id, payload):
        """The Task2Vec embedding of a reader's first max_samples samples, streamed block by block."""
        reader_id, version, settings = payload["reader_id"], payload["reader_version"], payload["settings"]
        signature = payload["source_signature"]
        key = (reader_id, version, "task2vec", Jsonb(settings))
        if self.conn.execute("SELECT 1 FROM shift.task_embeddings WHERE reader_id = %s AND reader_version = %s "
                             "AND kind = %s AND settings = %s AND source_signature = %s", key + (signature,)).fetchone():
            return
        current = self.conn.execute("SELECT shift._reader_version(%s)", (reader_id,)).fetchone()[0]
        if current != version:
            raise LookupError("reader %s changed since its datasim task was queued (version %s, now %s)"
                              % (reader_id, version, current))
        reader = self._row("readers", "reader_id", reader_id)
        n = min(int(reader["num_samples"]), int(settings["max_samples"]))
        blocks = list(range(num_blocks(n, reader["block_size"])))

        def stream():
            left = n
            with psycopg.connect(self.dsn, autocommit=True, application_name="shift-reader") as rconn:
                for _block, xs, ys in reader_io.iter_blocks(reader, blocks, conn=rconn):
                    take = min(left, len(ys))
                    yield xs[:take], np.asarray(ys[:take])
                    left -= take

        self._last_progress = 0.0
        # the variational Fisher hooks the probe's layers: a copy of its own, as fine-tuning takes
        probe = (load_model(self._row("models", "model_id", settings["probe"]), self.device)
                 if settings["method"] == "variational" else self._model(settings["probe"])[0])
        result = task2vec.embed(probe, stream, len(reader["classes"]), settings, reader_id,
                                progress=lambda f: self._progress_every(task_id, f))
        fisher, scale = result["fisher"], result["scale"]
        embeddings.check(fisher, scale)  # nothing half-made is stored
        index = embeddings.index_vector(fisher, scale)
        # the embedding of the reader's data as it was (an earlier signature) is replaced
        self.conn.execute(
            "INSERT INTO shift.task_embeddings AS e (reader_id, reader_version, kind, settings, source_signature, dim, "
            "embedding, scale, index_vector, num_samples, seconds, device, worker_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::vector, %s, %s, %s, %s) "
            "ON CONFLICT (reader_id, reader_version, kind, settings) DO UPDATE SET "
            "source_signature = EXCLUDED.source_signature, dim = EXCLUDED.dim, embedding = EXCLUDED.embedding, "
            "scale = EXCLUDED.scale, index_vector = EXCLUDED.index_vector, num_samples = EXCLUDED.num_samples, "
            "seconds = EXCLUDED.seconds, device = EXCLUDED.device, worker_id = EXCLUDED.worker_id, "
            "computed_at = now() WHERE e.source_signature <> EXCLUDED.source_signature",
            key + (signature, len(fisher), [float(v) for v in fisher], [float(v) for v in scale],
                   "[%s]" % ",".join(repr(float(v)) for v in index), result["num_samples"], result["seconds"],
                   self.device, self.worker_id))
        log.info("task2vec of %s: %d values from %d samples with probe %s (%s) on %s in %.2fs",
                 reader_id, len(fisher), result["num_samples"], settings["probe"], settings["method"], self.device,
                 result["seconds"])

    def _progress_every(self, task_id, fraction, step=0.05):
        """Progress, written when it has moved by `step` (fine-tuning reports every SGD step)."""
        if self._stop.is_set():
            raise TaskStopped()
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
        "SELECT f.num_rows, f.num_logits, f.logits FROM shift.features f JOIN shift.labels l USING (reader_id, block) "
        "WHERE f.model_id = %s AND f.reader_id = %s AND f.fingerprint = l.fingerprint ORDER BY f.block",
        (model_id, reader_id)).fetchall()
    if not rows or any(r[2] is None for r in rows):
        return None
    return np.concatenate([np.frombuffer(r[2], dtype="<f4").reshape(r[0], r[1]) for r in rows])


def current_content(conn, train_reader, test_reader, fidelity):
    """fingerprints.content_key of the blocks a score at this fidelity is computed on, as the labels hold them now."""
    train = content_fingerprints(conn, train_reader, fidelity)
    test = content_fingerprints(conn, test_reader, None)
    return fingerprints.content_key(train, test)


def content_fingerprints(conn, reader_id, fidelity):
    """The current fingerprints of the blocks a proxy at `fidelity` reads of a reader (versions.content_blocks)."""
    reader = conn.cursor(row_factory=psycopg.rows.dict_row).execute(
        "SELECT * FROM shift.readers WHERE reader_id = %s", (reader_id,)).fetchone()
    sizes = dict(conn.execute("SELECT reader_id, block_size FROM shift.readers WHERE reader_id = ANY(%s)",
                              (versions.source_ids(reader),)).fetchall())
    pairs = versions.content_blocks(reader, fidelity, sizes)
    got = {(r[0], r[1]): bytes(r[2]) for r in conn.execute(
        "SELECT l.reader_id, l.block, l.fingerprint FROM shift.labels l "
        "JOIN unnest(%s::text[], %s::integer[]) AS u(reader_id, block) USING (reader_id, block)",
        ([r for r, _ in pairs], [b for _, b in pairs])).fetchall()}
    return [got[p] for p in pairs if p in got]


def read_features(conn, model_id, reader_id, limit=None):
    """Features and labels of one model over one reader, in the reader's order, from the cache, in memory.

    Only features of the blocks' current content count (stale ones are missing)."""
    return feature_blocks(conn, model_id, reader_id, limit).arrays()


def feature_blocks(conn, model_id, reader_id, limit=None, relabel=None, outputs="features"):
    """proxies.Blocks of one model's cached features (outputs="logits": its source-task logits) over one reader
    (or its first `limit` samples, or a version's halving prefix), one block read per query when a pass reads
    it; `relabel` maps class ids."""
    reader = conn.cursor(row_factory=psycopg.rows.dict_row).execute(
        "SELECT * FROM shift.readers WHERE reader_id = %s", (reader_id,)).fetchone()
    if reader is None:
        raise LookupError("reader %s is no longer registered" % reader_id)
    sources = versions.source_ids(reader)
    width, _ = assemble.OUTPUTS[outputs]
    dim = conn.execute("SELECT %s FROM shift.features WHERE model_id = %%s AND reader_id = ANY(%%s) LIMIT 1" % width,
                       (model_id, sources)).fetchone()
    if dim is None:
        raise LookupError("features of %s on %s are not in the cache" % (model_id, reader_id))
    if dim[0] is None:
        raise assemble.NoHead(model_id)
    if reader["kind"] == "version":
        blocks = assemble.version_blocks(conn, model_id, reader, dim[0], limit, outputs)
    else:
        blocks = _plain_blocks(conn, model_id, reader, dim[0], limit, outputs)
    if relabel is not None:
        read, read_labels, read_all = blocks.read, blocks.read_labels, blocks.read_all
        blocks.read = lambda numbers: ((x, relabel(y)) for x, y in read(numbers))
        blocks.read_labels = read_labels and (lambda: relabel(read_labels()))
        blocks.read_all = read_all and (lambda: (lambda x, y: (x, relabel(y)))(*read_all()))
    return blocks


def _plain_blocks(conn, model_id, reader, dim, limit, outputs="features"):
    n, size = reader["num_samples"], reader["block_size"]
    n = n if limit is None else min(limit, n)
    width, data = assemble.OUTPUTS[outputs]

    def read(numbers):
        for b in numbers:
            row = conn.execute(
                "SELECT f.num_rows, f.%s, f.%s, l.y FROM shift.features f JOIN shift.labels l USING (reader_id, block) "
                "WHERE f.model_id = %%s AND f.reader_id = %%s AND f.block = %%s AND f.fingerprint = l.fingerprint"
                % (width, data), (model_id, reader["reader_id"], b), binary=True).fetchone()  # bytea, not hex text
            if row is not None and row[2] is None:
                raise assemble.NoHead(model_id)
            want = min(size, n - b * size)
            if row is None or row[0] < want or row[1] != dim:
                raise LookupError("features of %s on %s lack block %d of the current data in the cache"
                                  % (model_id, reader["reader_id"], b))
            yield np.frombuffer(row[2], dtype="<f4").reshape(row[0], row[1])[:want], np.asarray(row[3], np.int64)[:want]

    def read_labels():
        rows = conn.execute("SELECT y FROM shift.labels WHERE reader_id = %s AND block < %s ORDER BY block",
                            (reader["reader_id"], fingerprints.blocks_upto(n, size))).fetchall()
        return np.concatenate([np.asarray(r[0], np.int64) for r in rows])[:n]

    return proxies.Blocks(read, n, dim, fingerprints.blocks_upto(n, size), size, read_labels=read_labels)


class _ReadClock:
    """Seconds spent reading blocks, and rows read, over every pass: t_O of the cost model."""

    def __init__(self):
        self.seconds, self.rows = 0.0, 0

    def timed(self, blocks):
        read = blocks.read

        def timed_read(numbers):
            reading = read(numbers)
            while True:
                started = time.perf_counter()
                try:
                    x, y = next(reading)
                except StopIteration:
                    return
                finally:
                    self.seconds += time.perf_counter() - started
                self.rows += len(y)
                yield x, y

        blocks.read = timed_read
        if blocks.read_all is not None:
            read_all = blocks.read_all

            def timed_read_all():
                started = time.perf_counter()
                try:
                    x, y = read_all()
                finally:
                    self.seconds += time.perf_counter() - started
                self.rows += len(y)
                return x, y

            blocks.read_all = timed_read_all
        return blocks
