"""The job runner: a thread of the worker that runs the SHiFT-QL texts submitted with shift.submit.

A job's query waits for inference and proxy tasks that workers run, so it never runs on the
thread that serves the task queue: a worker with one thread would wait on itself. The runner
claims a queued job with FOR UPDATE SKIP LOCKED under a lease that the worker's heartbeat renews;
a job whose runner died (lease out, or its worker no longer live) is taken again, up to its
max_attempts. Each job runs on a connection opened for it: its backend pid names the job's tasks
(shift.job_status), and no session state passes from one user's job to the next.

The query runs inside the submitter's SECURITY DEFINER function in schema shift_jobs, so with the
submitter's privileges, never the worker's; the runner calls it and stores the rows in the same
transaction that ends the job (sql/privileges.sql).
"""

import logging
import threading

import psycopg
from psycopg import sql

log = logging.getLogger("shift.jobs")

# A running job is abandoned when its lease ran out or its worker's heartbeat stopped.
_ABANDONED = """(c.status = 'running' AND (c.lease_until < now()
    OR NOT EXISTS (SELECT 1 FROM shift.live_workers w WHERE w.worker_id = c.worker_id)))"""

# Abandoned jobs out of attempts fail, cancelled ones end cancelled; shift._finish_job drops their function.
_EXPIRE = """
SELECT shift._finish_job(c.job_id, c.backend_pid, CASE WHEN c.cancel_requested THEN 'cancelled' ELSE 'failed' END,
           CASE WHEN c.cancel_requested THEN NULL
                ELSE format('the workers running it stopped %s times; submit it again', c.attempts) END,
           CASE WHEN c.cancel_requested THEN NULL ELSE '55000' END)
  FROM shift.jobs c WHERE """ + _ABANDONED + """ AND (c.attempts >= c.max_attempts OR c.cancel_requested)
"""

# The function must still be its owner's SECURITY DEFINER function, else it would run as the worker.
_CLAIM = """
UPDATE shift.jobs j
SET status = 'running', worker_id = %(worker)s, backend_pid = %(pid)s, attempts = j.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease)s), started_at = now()
WHERE j.job_id = (
    SELECT c.job_id FROM shift.jobs c
    WHERE (c.status = 'queued' OR """ + _ABANDONED + """) AND c.attempts < c.max_attempts AND NOT c.cancel_requested
    ORDER BY c.job_id
    FOR UPDATE SKIP LOCKED
    LIMIT 1)
RETURNING j.job_id, j.run_function::text,
    EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
             WHERE p.oid = j.run_function AND p.prosecdef AND p.pronargs = 0 AND r.rolname = j.owner
               AND p.pronamespace = 'shift_jobs'::regnamespace)
"""

_RENEW = """
UPDATE shift.jobs SET lease_until = now() + make_interval(secs => %s)
WHERE job_id = %s AND backend_pid = %s AND status = 'running'
RETURNING cancel_requested
"""

# The worker stops: the job is queued again for another runner, this attempt not counted.
_GIVE_BACK = """
UPDATE shift.jobs SET status = 'queued', worker_id = NULL, backend_pid = NULL, lease_until = NULL,
       attempts = greatest(attempts - %(undo)s, 0)
WHERE job_id = %(job)s AND backend_pid = %(pid)s AND status = 'running'
"""

_FINISH = "SELECT shift._finish_job(%s, %s, %s, %s, %s, %s, %s)"


class JobRunner:
    """One thread that runs jobs, one at a time, beside the worker's task loop."""

    def __init__(self, worker, name="jobs"):
        self.worker = worker
        self.name = name
        self._current = None  # (job_id, backend pid, connection) of the running job
        self._lock = threading.Lock()
        self._spare = None  # a connection opened for the next job
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout=20.0):
        """Cancel the running statement (the job is given back) and wait for the thread."""
        self._cancel()
        self._thread.join(timeout)

    def beat(self, conn):
        """Renew the running job's lease (from the worker's heartbeat); cancel its statement when the job
        was cancelled, was taken by another runner, or the worker stops."""
        with self._lock:
            current = self._current
        if current is None:
            return
        job_id, pid, _ = current
        row = conn.execute(_RENEW, (self.worker.lease_seconds, job_id, pid)).fetchone()
        if row is None or row[0] or self.worker._stop.is_set():
            self._cancel()

    def _cancel(self):
        with self._lock:
            current = self._current
        if current is not None:
            try:
                current[2].cancel()
            except psycopg.Error as e:
                log.warning("could not cancel job %s: %s", current[0], str(e).strip())

    def _serve(self):
        conn = None
        stop = self.worker._stop
        while not stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._connect("shift-jobs")
                    conn.execute("LISTEN shift_jobs")
                if not self.run_one(conn):
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        pass
            except psycopg.Error as e:
                log.warning("the job runner of worker %s: %s; trying again", self.worker.worker_id, _first_line(e))
                if conn is not None:
                    conn.close()
                conn = None
                stop.wait(1.0)
        for c in (conn, self._spare):
            if c is not None:
                c.close()

    def _connect(self, application_name):
        # a backend whose runner vanished stops within seconds instead of running the job to its end
        return psycopg.connect(self.worker.dsn, autocommit=True, application_name=application_name,
                               connect_timeout=10, options="-c client_connection_check_interval=5000")

    def run_one(self, conn):
        """Claim and run one job; False when none is queued."""
        conn.execute(_EXPIRE)
        if self._spare is None or self._spare.closed or self._spare.broken:
            self._spare = self._connect("shift-job")
        jconn = self._spare
        pid = jconn.info.backend_pid
        row = conn.execute(_CLAIM, {"worker": self.worker.worker_id, "pid": pid,
                                    "lease": self.worker.lease_seconds}).fetchone()
        if row is None:
            return False
        self._spare = None
        job_id, function, runnable = row
        with self._lock:
            self._current = (job_id, pid, jconn)
        try:
            log.info("job %s started", job_id)
            self._run(conn, jconn, job_id, pid, function, runnable)
        finally:
            with self._lock:
                self._current = None
            jconn.close()
        return True

    def _run(self, conn, jconn, job_id, pid, function, runnable):
        if not runnable:
            conn.execute(_FINISH, (job_id, pid, "failed", "the function of job %s is no longer a SECURITY DEFINER "
                                   "function of its owner in schema shift_jobs" % job_id, "42501", None, None))
            return
        try:
            with jconn.transaction():
                jconn.execute(sql.SQL("INSERT INTO shift.job_results (job_id, rank, model_id, score, selected) "
                                      "SELECT %s, r.rank, r.model_id, r.score, r.selected FROM {}() AS r")
                              .format(sql.SQL(function[:-2])), (job_id,))
                ended = jconn.execute(_FINISH, (job_id, pid, "done", None, None, None, None)).fetchone()[0]
                if not ended:
                    raise _Lost()
            log.info("job %s done", job_id)
        except _Lost:
            log.warning("job %s was taken from this runner while it ran; its rows are not kept", job_id)
        except psycopg.Error as e:
            self._failed(conn, jconn, job_id, pid, e)
        except Exception as e:  # noqa: BLE001 -- recorded on the job for its owner
            log.exception("job %s failed", job_id)
            conn.execute(_FINISH, (job_id, pid, "failed", "%s: %s" % (type(e).__name__, e), "XX000", None, None))

    def _failed(self, conn, jconn, job_id, pid, e):
        """The statement ended with an error: the worker stops, the job was cancelled, or its query failed."""
        cancelled = conn.execute("SELECT cancel_requested FROM shift.jobs WHERE job_id = %s", (job_id,)).fetchone()
        outcome = outcome_of(e.sqlstate, stopping=self.worker._stop.is_set(),
                             cancel_requested=bool(cancelled and cancelled[0]), connection_lost=jconn.broken)
        if outcome == "give back":
            conn.execute(_GIVE_BACK, {"job": job_id, "pid": pid, "undo": 0 if jconn.broken else 1})
            conn.execute("NOTIFY shift_jobs")
            log.info("job %s given back", job_id)
            return
        diag = e.diag
        message = None if outcome == "cancelled" else (diag.message_primary or _first_line(e))
        conn.execute(_FINISH, (job_id, pid, outcome, message, None if outcome == "cancelled" else e.sqlstate,
                               diag.message_detail, diag.message_hint))
        log.info("job %s %s%s", job_id, outcome, "" if message is None else ": %s" % message)


class _Lost(Exception):
    """The job is no longer this runner's: its rows are rolled back."""


def outcome_of(sqlstate, stopping, cancel_requested, connection_lost):
    """What a job whose statement raised becomes: given back (to run again elsewhere), cancelled or failed."""
    if stopping or connection_lost:
        return "give back"
    # whatever the cancel interrupted reports it in its own words
    return "cancelled" if cancel_requested else "failed"


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
