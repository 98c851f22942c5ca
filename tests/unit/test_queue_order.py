"""The queue without a database: which failures are retried, what the enqueue hands shift._enqueue, its retries."""

import json

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
    """Records the statements of an enqueue; shift._enqueue returns one id per task."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.conn.log.append((sql, params))
        if sql is queue.ENQUEUE:
            if self.conn.fail_enqueues:
                self.conn.fail_enqueues -= 1
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            self.last = [100 + i for i, _ in enumerate(json.loads(params[2]))]

    def fetchall(self):
        return [(name,) for name in self.conn.known]

    def fetchone(self):
        return (self.last,)


class FakeConnection:
    def __init__(self, known=(), fail_enqueues=0):
        self.log, self.known, self.fail_enqueues = [], list(known), fail_enqueues
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


def test_the_tasks_go_to_shift_enqueue_with_their_dependencies_and_caller():
    conn = FakeConnection()
    ids = queue._write_tasks(conn, PLANNED, [], [], pid=7, caller="alice")
    (caller, pid, tasks), = [p for sql, p in conn.log if sql is queue.ENQUEUE]
    assert (caller, pid) == ("alice", 7)
    assert [(t["kind"], t["key"], t["depends_on"]) for t in json.loads(tasks)] == [
        (k, key, deps) for k, key, _, deps in PLANNED]
    assert ids == [100, 101, 102, 103, 104] and conn.commits == 1


def test_a_deadlocked_enqueue_is_tried_again():
    conn = FakeConnection(fail_enqueues=2)
    ids = queue._write_tasks(conn, PLANNED, [], [], pid=7, caller="alice")
    assert (conn.rollbacks, conn.commits) == (2, 1) and len(ids) == len(PLANNED)


def test_an_enqueue_that_keeps_deadlocking_says_so():
    conn = FakeConnection(fail_enqueues=queue.ENQUEUE_TRIES)
    with pytest.raises(queue.ShiftError, match="after %d tries" % queue.ENQUEUE_TRIES):
        queue._write_tasks(conn, PLANNED, [], [], pid=7, caller="alice")
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
