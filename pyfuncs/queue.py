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

from .errors import INVALID_TRANSACTION_STATE, NOT_READY, TASK_FAILED, ShiftError

POLL_SECONDS = 0.05
WORKER_GRACE_SECONDS = 5.0  # after shift.live_workers' own 15 s: time for a restarted worker

ENQUEUE_TRIES = 5  # an enqueue that meets a serialization failure or a deadlock is tried again

# A done task is queued again (its results may have been dropped since), and so is a failed one,
# unless it is quarantined: it killed the workers that ran it, and only shift.retry_task resets it.
_RESET = "(t.status = 'done' OR (t.status = 'failed' AND NOT t.quarantined))"
# waiters: this query's backend, and those of the others still connected
_UPSERT = """
INSERT INTO shift.tasks AS t (kind, key, payload, waiters)
VALUES (%(kind)s, %(key)s, %(payload)s, ARRAY[%(pid)s]::integer[])
ON CONFLICT (key) DO UPDATE SET
    waiters = ARRAY(SELECT DISTINCT w FROM unnest(t.waiters || %(pid)s::integer) w
                    WHERE w IN (SELECT pid FROM pg_catalog.pg_stat_activity)),
    status = CASE WHEN {reset} THEN 'queued' ELSE t.status END,
    attempts = CASE WHEN {reset} THEN 0 ELSE t.attempts END,
    deaths = CASE WHEN {reset} THEN 0 ELSE t.deaths END,
    retry_at = CASE WHEN {reset} THEN NULL ELSE t.retry_at END,
    error = CASE WHEN {reset} THEN NULL ELSE t.error END,
    progress = CASE WHEN {reset} THEN 0 ELSE t.progress END
RETURNING task_id
""".format(reset=_RESET)
_DEPENDS = ("UPDATE shift.tasks SET depends_on = %s::bigint[] WHERE task_id = %s "
            "AND depends_on IS DISTINCT FROM %s::bigint[]")


def loopback_dsn(db):
    """Where to open the enqueue connection: shift.loopback_dsn, else this server over its socket."""
    configured = db.setting("shift.loopback_dsn")
    if configured:
        return configured
    row = db.one("SELECT current_setting('unix_socket_directories') AS dirs, current_setting('port') AS port, "
                 "current_database() AS db, current_user AS usr")
    host = row["dirs"].split(",")[0].strip() or "localhost"
    return "host='%s' port=%s dbname='%s' user='%s' application_name=shift-enqueue" % (
        _quote(host), row["port"], _quote(row["db"]), _quote(row["usr"]))


def _quote(value):
    return value.replace("\\", "\\\\").replace("'", "\\'")


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

    pid = db.one("SELECT pg_backend_pid() AS pid")["pid"]
    try:
        conn = psycopg.connect(loopback_dsn(db), autocommit=False, connect_timeout=10)
    except psycopg.Error as e:
        raise ShiftError("could not open the enqueue connection to this database", NOT_READY,
                         detail=str(e).strip(),
                         hint="allow local connections for this role, or set shift.loopback_dsn to a "
                              "connection string that can write shift.tasks") from None
    try:
        return _write_tasks(conn, planned, models, readers, pid)
    finally:
        conn.close()


def _write_tasks(conn, planned, models, readers, pid):
    """The enqueue transaction, tried again after a serialization failure or a deadlock."""
    import psycopg

    for attempt in range(ENQUEUE_TRIES):
        try:
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = '5s'")
                _require_committed(cur, "model", "shift.models", "model_id", models)
                _require_committed(cur, "reader", "shift.readers", "reader_id", readers)
                ids = _upsert_sorted(cur, planned, pid)
                cur.execute("NOTIFY shift_tasks")
            conn.commit()
            return ids
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
            conn.rollback()
            if attempt + 1 == ENQUEUE_TRIES:
                raise ShiftError("could not enqueue the tasks of this query after %d tries" % ENQUEUE_TRIES,
                                 NOT_READY, detail=str(e).strip(), hint="run the query again") from None
            time.sleep(0.05 * 2 ** attempt * (1 + random.random()))


def _upsert_sorted(cur, planned, pid):
    """Upsert the tasks in the order of their keys, then set what each depends on; their ids in `planned`'s order.

    Every enqueue locks rows in the same order, so concurrent queries wait for each
    other instead of deadlocking.
    """
    ids = [None] * len(planned)
    for i in sorted(range(len(planned)), key=lambda i: planned[i][1]):
        kind, key, payload, _deps = planned[i]
        cur.execute(_UPSERT, {"kind": kind, "key": key, "payload": json.dumps(payload), "pid": pid})
        ids[i] = cur.fetchone()[0]
    for i, (_kind, _key, _payload, deps) in enumerate(planned):
        dep_ids = [ids[d] for d in deps]
        cur.execute(_DEPENDS, (dep_ids, ids[i], dep_ids))
    return ids


def _require_committed(cur, kind, table, column, names):
    cur.execute("SELECT %s FROM %s WHERE %s = ANY(%%s)" % (column, table, column), (list(names),))
    seen = {r[0] for r in cur.fetchall()}
    missing = sorted(set(names) - seen)
    if missing:
        raise ShiftError("%s %s is not committed yet" % (kind, missing[0]), NOT_READY,
                         detail="workers only see committed registrations",
                         hint="commit the transaction that registered it, then run the query")


def wait(db, task_ids):
    """Block until every task is done; raise on a failed task or when no worker is left."""
    pending = set(task_ids)
    last_live = time.monotonic()
    while pending:
        rows = db.execute(
            "SELECT task_id, status, error, kind, key, depends_on, quarantined FROM shift.tasks "
            "WHERE task_id = ANY($1)", ["bigint[]"], [list(pending)])
        failed = {r["task_id"]: r for r in rows if r["status"] == "failed"}
        if failed:
            raise _task_failed(failed)
        if rows.nrows() < len(pending):
            gone = sorted(pending - {r["task_id"] for r in rows})
            raise ShiftError("task %d this query waits on was deleted" % gone[0], TASK_FAILED,
                             hint="run the query again")
        pending -= {r["task_id"] for r in rows if r["status"] == "done"}
        if not pending:
            break
        if db.one("SELECT count(*) AS n FROM shift.live_workers")["n"]:
            last_live = time.monotonic()
        elif time.monotonic() - last_live > WORKER_GRACE_SECONDS:
            raise ShiftError("no shift worker is alive while %d tasks wait" % len(pending), NOT_READY,
                             hint="start a worker with `shift worker start`; queued tasks are kept")
        db.execute("SELECT pg_sleep(%s)" % POLL_SECONDS)


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
