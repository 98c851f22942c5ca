"""The task queue seen from inside a query: enqueue in a committed transaction, then wait.

shift.query() runs inside the caller's transaction, which workers cannot see.
So the tasks are written over a loopback connection that commits at once
(an autonomous transaction), and the query then polls shift.tasks: in READ
COMMITTED each poll takes a new snapshot and sees the workers' results. The
poll sleeps with pg_sleep, so statement_timeout and cancel interrupt it.
"""

import json
import random
import time

from .errors import INVALID_PARAMETER, INVALID_TRANSACTION_STATE, NOT_READY, QUERY_CANCELED, TASK_FAILED, ShiftError

POLL_SECONDS = 0.05
WORKER_GRACE_SECONDS = 5.0  # after shift.live_workers' own 15 s: time for a restarted worker

ENQUEUE_TRIES = 5  # an enqueue that meets a serialization failure or a deadlock is tried again
ENQUEUE = "SELECT shift._enqueue(%s, %s, %s)"

def loopback_dsn(db):
    """Where to open the enqueue connection: shift.loopback_dsn as postgresql.conf (or ALTER SYSTEM) sets
    it, else this server's socket as the current user. A session's SET of it is ignored: it would
    choose where the backend connects with the server's credentials. What the setting leaves out
    (host, port, database) is this server's, so one setting serves every database of a cluster."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    row = db.one("SELECT shift._server_setting('shift.loopback_dsn') AS configured, "
                 "current_setting('shift.loopback_dsn', true) AS session, "
                 "shift._server_socket() AS dirs, current_setting('port') AS port, "
                 "current_database() AS db, current_user AS usr")
    configured = row["configured"] or ""
    if row["session"] and row["session"] != configured:
        db.plpy.warning("shift.loopback_dsn set in this session is ignored: only a superuser sets it, "
                        "in postgresql.conf or with ALTER SYSTEM")
    here = {"host": row["dirs"].strip() or "localhost", "port": row["port"], "dbname": row["db"],
            "user": row["usr"]}
    given = conninfo_to_dict(configured)
    return make_conninfo(**dict(here, **given, application_name="shift-enqueue"))


def require_read_committed(db):
    level = db.setting("transaction_isolation")
    if level != "read committed":
        raise ShiftError("shift queries must run at isolation level read committed, not %s" % level, INVALID_TRANSACTION_STATE,
                         hint="run the query in its own transaction, or SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


def require_live_worker(db):
    """The number of live workers (devices, P of the cost model); an error when there is none."""
    row = db.one("SELECT count(*) AS n FROM shift.live_workers")
    if not row["n"]:
        raise ShiftError("no shift worker is running", NOT_READY,
                         detail="this query needs inference or proxy work that no worker can do",
                         hint="start one with `shift worker start` (or `python -m gpu_daemon --dsn ...`)")
    return row["n"]


def enqueue(db, planned, models, readers):
    """Write planned tasks in their own committed transaction; return their ids.

    `planned` is a list of (kind, key, payload, depends_on_indices) in dependency
    order; indices refer to earlier entries of the list.
    """
    import psycopg

    row = db.one("SELECT pg_backend_pid() AS pid, current_user AS caller")
    pid, caller = row["pid"], row["caller"]
    try:
        conn = psycopg.connect(loopback_dsn(db), autocommit=False, connect_timeout=10)
    except psycopg.Error as e:
        raise ShiftError("could not open the enqueue connection to this database", NOT_READY,
                         detail=str(e).strip(),
                         hint="allow local connections for this role, or set shift.loopback_dsn in "
                              "postgresql.conf to a connection string for a shift_worker login") from None
    try:
        return _write_tasks(conn, planned, models, readers, pid, caller)
    finally:
        conn.close()


def _write_tasks(conn, planned, models, readers, pid, caller):
    """The enqueue transaction, tried again after a serialization failure or a deadlock.

    Users may not write shift.tasks: shift._enqueue (sql/privileges.sql) checks each task against
    the caller's rights and upserts them in the order of their keys, so concurrent enqueues lock
    rows in one order."""
    import psycopg

    tasks = [{"kind": kind, "key": key, "payload": payload, "depends_on": list(deps)}
             for kind, key, payload, deps in planned]
    for attempt in range(ENQUEUE_TRIES):
        try:
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = '5s'")
                _require_committed(cur, "model", "shift.models", "model_id", models)
                _require_committed(cur, "reader", "shift.readers", "reader_id", readers)
                cur.execute(ENQUEUE, (caller, pid, json.dumps(tasks)))
                ids = cur.fetchone()[0]
            conn.commit()
            return ids
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
            conn.rollback()
            if attempt + 1 == ENQUEUE_TRIES:
                raise ShiftError("could not enqueue the tasks of this query after %d tries" % ENQUEUE_TRIES,
                                 NOT_READY, detail=str(e).strip(), hint="run the query again") from None
            time.sleep(0.05 * 2 ** attempt * (1 + random.random()))


def _require_committed(cur, kind, table, column, names):
    cur.execute("SELECT %s FROM %s WHERE %s = ANY(%%s)" % (column, table, column), (list(names),))
    seen = {r[0] for r in cur.fetchall()}
    missing = sorted(set(names) - seen)
    if missing:
        raise ShiftError("%s %s is not committed yet" % (kind, missing[0]), NOT_READY,
                         detail="workers only see committed registrations",
                         hint="commit the transaction that registered it, then run the query")


# A task's model comes from its payload; its load error is what the worker recorded when loading failed.
POLL = ("SELECT t.task_id, t.status, t.error, t.kind, t.key, t.depends_on, t.quarantined, t.progress, "
        "t.payload->>'model_id' AS model_id, m.load_error FROM shift.tasks t "
        "LEFT JOIN shift.models m ON m.model_id = t.payload->>'model_id' WHERE t.task_id = ANY($1)")


def wait(db, task_ids, leave_out_unloadable=False, estimate=None):
    """Block until every task is done; raise on a failed task or when no worker is left.

    With leave_out_unloadable, a task that failed because its model cannot be loaded (the worker
    recorded shift.models.load_error) fails nothing: that model's tasks are no longer waited on.
    Returns {model_id: load error} of the models so left out. `estimate` is the plan's estimate
    of the wait in seconds, for the progress notices until the tasks' own progress tells more.
    A cancel or statement_timeout keeps its SQLSTATE and message, and says what is kept.
    """
    pending = set(task_ids)
    total, unloadable = len(pending), {}
    progress = Progress(db, estimate)
    last_live = time.monotonic()
    try:
        while pending:
            rows = [dict(r) for r in db.execute(POLL, ["bigint[]"], [list(pending)])]
            if len(rows) < len(pending):
                gone = sorted(pending - {r["task_id"] for r in rows})
                raise ShiftError("task %d this query waits on was deleted" % gone[0], TASK_FAILED,
                                 hint="run the query again")
            if leave_out_unloadable:
                lost = {r["model_id"]: r["load_error"] for r in rows
                        if r["status"] == "failed" and r["model_id"] and r["load_error"]}
                if lost:
                    unloadable.update(lost)
                    dropped = {r["task_id"] for r in rows if r["model_id"] in lost}
                    pending -= dropped
                    total -= len(dropped)
                    rows = [r for r in rows if r["task_id"] not in dropped]
            failed = {r["task_id"]: r for r in rows if r["status"] == "failed"}
            if failed:
                raise _task_failed(failed)
            pending -= {r["task_id"] for r in rows if r["status"] == "done"}
            if not pending:
                break
            progress.report(total - len(pending), total, sum(r["progress"] for r in rows if r["status"] != "done"))
            if db.one("SELECT count(*) AS n FROM shift.live_workers")["n"]:
                last_live = time.monotonic()
            elif time.monotonic() - last_live > WORKER_GRACE_SECONDS:
                raise ShiftError("no shift worker is alive while %d tasks wait" % len(pending), NOT_READY,
                                 hint="start a worker with `shift worker start`; queued tasks are kept")
            db.execute("SELECT pg_sleep(%s)" % POLL_SECONDS)
    except db.plpy.spiexceptions.QueryCanceled as e:
        raise canceled(e, total - len(pending), total) from None
    progress.finished(total)
    return unloadable


def canceled(e, done, total):
    """A cancel or statement_timeout as PostgreSQL words it, saying that the work done is kept."""
    message = (e.args[0] if e.args else "") or "canceling statement due to user request"
    return ShiftError(message, QUERY_CANCELED,
                      detail="work already done is kept: %d of %d tasks are done and cached, the other %d "
                             "stay queued and workers keep running them; the next query reuses their results"
                             % (done, total, total - done))


class Progress:
    """NOTICEs while a statement waits on workers: none in its first shift.progress_interval seconds
    (quick queries stay silent), then at most one per interval: tasks done and the time left.

    A statement may wait several times (the test inference, then each halving round): the counts
    are of all its tasks so far, those of its earlier waits done, so they never start over; the
    time left is at the rate of the current wait."""

    DEFAULT_INTERVAL = 3.0

    def __init__(self, db, estimate=None):
        self.db, self.estimate = db, estimate
        self.interval = progress_interval(db)
        self.started = time.monotonic()
        self.earlier = 0
        if self.interval:
            # the statement may have waited before this wait began (an earlier round, the test inference)
            row = db.one("SELECT extract(epoch FROM clock_timestamp() - statement_timestamp())::float8 AS s, "
                         "statement_timestamp()::text AS at")
            if _STATEMENT["at"] != row["at"]:
                _STATEMENT.update(at=row["at"], tasks=0)
            self.earlier = _STATEMENT["tasks"]
            self.statement_started = self.started - row["s"]
            self.next = max(self.statement_started + self.interval, _LAST_NOTICE[0] + self.interval)

    def report(self, done, total, running_fraction=0.0):
        now = time.monotonic()
        if not self.interval or now < self.next:
            return
        self.next = now + self.interval
        _LAST_NOTICE[0] = now
        left = remaining(now - self.started, done + running_fraction, total, self.estimate)
        self.db.plpy.notice("waiting on workers: %d of %d tasks done%s"
                            % (self.earlier + done, self.earlier + total,
                               ", about %s left" % seconds_text(left) if left is not None else ""))

    def finished(self, total):
        """The wait's tasks are done: the statement's next wait counts them among its done ones."""
        if self.interval:
            _STATEMENT["tasks"] = self.earlier + total


_LAST_NOTICE = [float("-inf")]  # the session's last progress notice: nested waits share the rate
_STATEMENT = {"at": None, "tasks": 0}  # the statement (its start) whose earlier waits' tasks are done


def progress_interval(db):
    raw = db.setting("shift.progress_interval")
    if raw in (None, ""):
        return Progress.DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ShiftError("setting shift.progress_interval is %r" % raw, INVALID_PARAMETER,
                         hint="seconds between progress notices, 0 for none") from None
    if value < 0:
        raise ShiftError("setting shift.progress_interval is %r" % raw, INVALID_PARAMETER,
                         hint="seconds between progress notices, 0 for none")
    return value


def remaining(elapsed, done, total, estimate=None):
    """Seconds left at the rate so far (tasks done, running ones by their progress), else the estimate's rest."""
    if done > 0:
        return elapsed * (total - done) / done
    if estimate is not None and estimate > elapsed:
        return estimate - elapsed
    return None


def seconds_text(s):
    if s < 90:
        return "%d s" % max(1, round(s))
    if s < 5400:
        return "%d min" % round(s / 60)
    return "%.1f h" % (s / 3600)


def _task_failed(failed):
    """The error of a failed task: its root cause, not the tasks that failed because it did."""
    root = next((r for r in failed.values() if not set(r["depends_on"] or []) & set(failed)),
                next(iter(failed.values())))
    if root["quarantined"]:
        hint = ("queries do not run it again: find out why its workers died (their logs), then "
                "SELECT shift.retry_task(%d)" % root["task_id"])
    else:
        hint = "see the worker log; the next query retries the task"
    return ShiftError("%s task failed: %s" % (root["kind"], root["error"] or "no reason given"), TASK_FAILED,
                      detail="task %d (%s)" % (root["task_id"], root["key"]), hint=hint)
