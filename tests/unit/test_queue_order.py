"""The queue without a database: which failures are retried, the enqueue's lock order and its retries."""

import psycopg
import pytest

from gpu_daemon.worker import is_transient
from pyfuncs import queue


@pytest.mark.parametrize("error", [
    psycopg.errors.SerializationFailure(), psycopg.errors.DeadlockDetected(), psycopg.errors.AdminShutdown(),
    psycopg.errors.LockNotAvailable(), psycopg.errors.OutOfMemory(), psycopg.OperationalError("connection lost"),
    MemoryError(), ConnectionResetError(), RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
])
def test_transient_failures_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    ValueError("model m: bad input"), LookupError("reader r is no longer registered"), FileNotFoundError("x.pt"),
    psycopg.errors.UndefinedFile(), psycopg.errors.UndefinedTable(), psycopg.errors.InvalidTextRepresentation(),
    RuntimeError("mat1 and mat2 shapes cannot be multiplied"), KeyError("blocks"),
])
def test_deterministic_failures_fail_at_once(error):
    assert not is_transient(error)


class FakeCursor:
    """Records the statements of an enqueue; the upserts return ids in the order they run."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.conn.log.append((sql, params))
        if sql is queue._UPSERT:
            if self.conn.fail_upserts:
                self.conn.fail_upserts -= 1
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            self.conn.ids.setdefault(params["key"], 100 + len(self.conn.ids))
            self.last = self.conn.ids[params["key"]]

    def fetchall(self):
        return [(name,) for name in self.conn.known]

    def fetchone(self):
        return (self.last,)


class FakeConnection:
    def __init__(self, known=(), fail_upserts=0):
        self.log, self.ids, self.known, self.fail_upserts = [], {}, list(known), fail_upserts
        self.commits = self.rollbacks = 0

    def cursor(self):
        return FakeCursor(self)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1


PLANNED = [("inference", "inference/m2/r/0", {}, []), ("inference", "inference/m1/r/0", {}, []),
           ("proxy", "proxy/p/m2", {}, [0]), ("proxy", "proxy/p/m1", {}, [1]),
           ("describe", "describe/model/m1", {}, [])]


def test_tasks_are_upserted_in_key_order_and_linked_after():
    conn = FakeConnection()
    ids = queue._write_tasks(conn, PLANNED, [], [], pid=7)
    upserted = [p["key"] for sql, p in conn.log if sql is queue._UPSERT]
    assert upserted == sorted(t[1] for t in PLANNED)
    # ids come back in the planned order, and each proxy depends on its own model's inference
    assert ids == [conn.ids[t[1]] for t in PLANNED]
    depends = {p[1]: p[0] for sql, p in conn.log if sql is queue._DEPENDS}
    assert depends[ids[2]] == [ids[0]] and depends[ids[3]] == [ids[1]] and depends[ids[4]] == []
    # every dependency is written after every upsert
    last_upsert = max(i for i, (sql, _) in enumerate(conn.log) if sql is queue._UPSERT)
    assert min(i for i, (sql, _) in enumerate(conn.log) if sql is queue._DEPENDS) > last_upsert
    assert conn.commits == 1


def test_a_deadlocked_enqueue_is_tried_again():
    conn = FakeConnection(fail_upserts=2)
    ids = queue._write_tasks(conn, PLANNED, [], [], pid=7)
    assert (conn.rollbacks, conn.commits) == (2, 1) and len(ids) == len(PLANNED)


def test_an_enqueue_that_keeps_deadlocking_says_so():
    conn = FakeConnection(fail_upserts=queue.ENQUEUE_TRIES)
    with pytest.raises(queue.ShiftError, match="after %d tries" % queue.ENQUEUE_TRIES):
        queue._write_tasks(conn, PLANNED, [], [], pid=7)
    assert conn.commits == 0


def test_a_quarantined_task_names_the_way_to_run_it_again():
    rows = {5: {"task_id": 5, "kind": "inference", "key": "inference/m/r/0", "error": "the workers running it died",
                "depends_on": [], "quarantined": True},
            6: {"task_id": 6, "kind": "proxy", "key": "proxy/p/m", "error": "task 5 it depends on failed",
                "depends_on": [5], "quarantined": False}}
    error = queue._task_failed(rows)
    assert "died" in error.message and "shift.retry_task(5)" in error.hint
    rows[5]["quarantined"] = False
    assert "next query retries" in queue._task_failed(rows).hint
