"""The shared task queue: claiming, leases, failures, several workers; and the `shift` command on it."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psycopg
import pytest

from gpu_daemon.worker import _CLAIM
from shift_cli.testbed import ROOT, Database, WorkerProcess, copy_samples, digits, register_model

QUERY = ("SELECT ModelId FROM Models ORDER BY CosineNN ASC LIMIT 2 "
         "TESTED ON WTest TRAINED ON WTrain")


@pytest.fixture(scope="module")
def wdb(cluster, zoo):
    """A database of its own: two zoo models, readers of several blocks each."""
    (train_x, train_y), (test_x, test_y) = digits(n_train=160, n_test=64, seed=1)
    data = cluster.server_readable_dir("data")
    np.savez(data / "w_test.npz", x=test_x, y=test_y)
    (data / "w_test.npz").chmod(0o644)
    with Database(cluster, "shift_workers") as database:
        with database.connect() as conn:
            for m in zoo[:2]:
                register_model(conn, m)
            conn.execute("CREATE TABLE public.w_train (id integer PRIMARY KEY, x real[], y integer)")
            copy_samples(conn, "w_train", train_x, train_y)
            conn.execute("SELECT shift.register_sql_reader('WTrain', 'SELECT x, y FROM public.w_train ORDER BY id', "
                         "options => '{\"shape\": [8, 8]}', block_size => 32)")
            conn.execute("SELECT shift.register_npz_reader('WTest', %s, block_size => 32)",
                         (str(data / "w_test.npz"),))
        database.models = [m["model_id"] for m in zoo[:2]]
        yield database


@pytest.fixture(scope="module")
def two_workers(wdb, cluster):
    workers = [WorkerProcess(wdb.worker_dsn, cluster.home / ("w%d.log" % i), "w%d" % i, "--lease-seconds", "3")
               for i in (1, 2)]
    for w in workers:
        w.wait_ready()
    yield workers
    for w in workers:
        w.stop()


def test_claims_skip_rows_another_worker_holds(wdb):
    """Two claims in flight at once take different tasks and neither waits (FOR UPDATE SKIP LOCKED)."""
    with wdb.connect() as setup:
        setup.execute("INSERT INTO shift.tasks (kind, key, payload) VALUES "
                      "('proxy', 'claim-test/1', '{}'), ('proxy', 'claim-test/2', '{}')")
    try:
        with wdb.connect(autocommit=False) as a, wdb.connect(autocommit=False) as b:
            b.execute("SET lock_timeout = '2s'")
            first = a.execute(_CLAIM, {"worker": "a", "lease": 30, "loaded": []}).fetchone()
            second = b.execute(_CLAIM, {"worker": "b", "lease": 30, "loaded": []}).fetchone()
            assert first is not None and second is not None
            assert first[0] != second[0]
            a.rollback()
            b.rollback()
    finally:
        with wdb.connect() as setup:
            setup.execute("DELETE FROM shift.tasks WHERE key LIKE 'claim-test/%'")


def test_two_workers_share_the_queue_and_run_each_task_once(wdb, two_workers):
    with wdb.connect() as conn:
        rows = conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (QUERY,)).fetchall()
        assert [r[1] for r in rows] and len(rows) == 2
        tasks = conn.execute("SELECT kind, status, attempts, worker_id FROM shift.tasks").fetchall()
        # per model: an inference task per block of each reader (5 + 2) and a proxy task; a first
        # validation of each reader's source
        assert sorted(t[0] for t in tasks) == ["inference"] * 14 + ["proxy"] * 2 + ["validate"] * 2
        assert all(t[1] == "done" and t[2] == 1 for t in tasks), tasks
        assert {t[3] for t in tasks} <= {"w1", "w2"}
        # every block of both readers, once per model
        assert conn.execute("SELECT count(*) FROM shift.features").fetchone()[0] == 2 * (5 + 2)
        assert conn.execute("SELECT count(*) FROM shift.workers WHERE worker_id IN ('w1', 'w2')").fetchone()[0] == 2


def _wait_for(conn, sql, params, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(sql, params).fetchone()
        if row and row[0]:
            return row
        time.sleep(0.2)
    raise AssertionError("timed out waiting for: %s" % sql)


def _claimed_task(conn, model, block, key, worker, lease, attempts=1, max_attempts=3):
    """A task as a worker that claimed it leaves it: inference of one WTrain block, running, leased for `lease`."""
    payload = json.dumps({"model_id": model, "reader_id": "WTrain", "blocks": [block]})
    return conn.execute(
        "INSERT INTO shift.tasks (kind, key, payload, status, worker_id, lease_until, attempts, max_attempts) "
        "VALUES ('inference', %s, %s, 'running', %s, now() + %s::interval, %s, %s) RETURNING task_id",
        (key, payload, worker, lease, attempts, max_attempts)).fetchone()[0]


def test_a_dead_workers_task_is_claimed_again_after_its_lease(wdb, two_workers):
    """What a worker killed mid-task leaves behind: a running task whose lease ran out."""
    model = wdb.models[0]
    with wdb.connect() as conn:
        conn.execute("DELETE FROM shift.features WHERE model_id = %s AND reader_id = 'WTrain' AND block = 4",
                     (model,))
        task_id = _claimed_task(conn, model, 4, "lease-test", "dead", "-1 second")
        conn.execute("NOTIFY shift_tasks")
        _wait_for(conn, "SELECT status = 'done' FROM shift.tasks WHERE task_id = %s", (task_id,))
        status, attempts, worker = conn.execute(
            "SELECT status, attempts, worker_id FROM shift.tasks WHERE task_id = %s", (task_id,)).fetchone()
        assert (status, attempts) == ("done", 2) and worker in ("w1", "w2")
        assert conn.execute("SELECT num_rows FROM shift.features WHERE model_id = %s AND reader_id = 'WTrain' "
                            "AND block = 4", (model,)).fetchone() == (32,)

        # out of attempts: failed, with the reason, and never run
        task_id = _claimed_task(conn, model, 4, "lease-test-2", "dead", "-1 second", attempts=3, max_attempts=3)
        conn.execute("NOTIFY shift_tasks")
        _wait_for(conn, "SELECT status = 'failed' FROM shift.tasks WHERE task_id = %s", (task_id,))
        error, attempts = conn.execute("SELECT error, attempts FROM shift.tasks WHERE task_id = %s",
                                       (task_id,)).fetchone()
        assert "lease expired" in error and attempts == 3


def test_a_killed_workers_task_is_taken_when_its_heartbeat_stops(wdb, two_workers, cluster):
    """Its lease (60 s) has long to run; the missing heartbeat (15 s) is what hands the task on."""
    model = wdb.models[0]
    victim = WorkerProcess(wdb.worker_dsn, cluster.home / "victim.log", "victim").wait_ready()
    os.kill(victim.proc.pid, signal.SIGSTOP)  # holds the task below, as if it had claimed it
    try:
        with wdb.connect() as conn:
            conn.execute("DELETE FROM shift.features WHERE model_id = %s AND reader_id = 'WTrain' AND block = 3",
                         (model,))
            task_id = _claimed_task(conn, model, 3, "heartbeat-test", "victim", "60 seconds")
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            _wait_for(conn, "SELECT status IN ('done', 'failed') FROM shift.tasks WHERE task_id = %s", (task_id,),
                      timeout=45)
            assert time.monotonic() - killed < 30
            status, attempts, worker, error = conn.execute(
                "SELECT status, attempts, worker_id, error FROM shift.tasks WHERE task_id = %s", (task_id,)).fetchone()
            assert (status, attempts, worker in ("w1", "w2")) == ("done", 2, True), (status, worker, error)
            conn.execute("DELETE FROM shift.workers WHERE worker_id = 'victim'")
    finally:
        victim.proc.wait()
        victim.stop()


def test_a_model_that_fails_to_load_is_left_out_with_its_reason(wdb, two_workers):
    with wdb.connect() as conn:
        conn.execute("SELECT shift.register_model('broken', 'timm', 'resnet10t', "
                     "checkpoint => '/nonexistent/broken.pth', options => '{\"pretrained\": false}')")
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
        try:
            rows = conn.execute("SELECT * FROM shift.score('CosineNN', '{}', ARRAY['broken'], 'WTest', 'WTrain')"
                                ).fetchall()
            assert rows == []
            warnings = [m for sev, m in notices if sev == "WARNING"]
            assert any("broken" in m and "/nonexistent/broken.pth" in m for m in warnings), notices
            status, error = conn.execute("SELECT status, error FROM shift.model_status WHERE model_id = 'broken'"
                                         ).fetchone()
            assert status == "failed" and "/nonexistent/broken.pth" in error
            states = dict(conn.execute("SELECT kind || ':' || (payload->>'reader_id'), status FROM shift.tasks "
                                       "WHERE payload->>'model_id' = 'broken'").fetchall())
            assert "failed" in states.values()
            # the proxy task never ran: it failed because what it depends on failed
            proxy_error = conn.execute("SELECT error FROM shift.tasks WHERE kind = 'proxy' "
                                       "AND payload->>'model_id' = 'broken'").fetchone()[0]
            assert proxy_error is None or "depends on failed" in proxy_error
            # a healthy model beside it is scored
            both = dict(conn.execute("SELECT model_id, score FROM shift.score('CosineNN', '{}', %s, 'WTest', 'WTrain')",
                                     ([wdb.models[0], "broken"],)).fetchall())
            assert list(both) == [wdb.models[0]] and 0.0 <= both[wdb.models[0]] <= 1.0
        finally:
            conn.execute("SELECT shift.drop_model('broken')")


def _shift(cluster, *args, stdin=None):
    env = dict(os.environ, SHIFT_HOME=str(cluster.home), SHIFT_PORT=str(cluster.port), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "shift_cli.main", "--dbname", "shift_workers", *args],
                          input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_the_shift_command_runs_and_translates_queries(wdb, two_workers, cluster, tmp_path):
    q = tmp_path / "q.sql"
    q.write_text(QUERY + "\n")
    res = _shift(cluster, "query", str(q), "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    with wdb.connect() as conn:
        want = conn.execute("SELECT rank, model_id, score FROM shift.query(%s)", (QUERY,)).fetchall()
    assert [(r["rank"], r["model_id"], pytest.approx(r["score"])) for r in lines] == want

    res = _shift(cluster, "translate", "-", stdin=QUERY)
    assert res.returncode == 0 and "shift.score(" in res.stdout

    res = _shift(cluster, "query", "-", stdin="SELECT ModelId FROM Models ORDER BY")
    assert res.returncode == 1
    assert "42601" in res.stderr

    res = _shift(cluster, "dsn")
    assert res.returncode == 0 and "port=%d" % cluster.port in res.stdout


def test_identical_work_from_concurrent_queries_runs_once(wdb, two_workers):
    import threading

    with wdb.connect() as conn:
        conn.execute("DELETE FROM shift.scores; DELETE FROM shift.features; DELETE FROM shift.tasks")
    results, pids = {}, {}

    def ask(name):
        with wdb.connect() as c:
            pids[name] = c.info.backend_pid
            results[name] = c.execute("SELECT model_id, score FROM shift.score('EuclideanNN', '{}', %s, "
                                      "'WTest', 'WTrain') ORDER BY model_id", (wdb.models,)).fetchall()

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results["a"] == results["b"] and len(results["a"]) == 2
    with wdb.connect() as conn:
        tasks = conn.execute("SELECT key, attempts, waiters FROM shift.tasks").fetchall()
        # one row per piece of work: per model 7 blocks and a proxy (the sources are validated already)
        assert len(tasks) == len({k for k, _, _ in tasks}) == 16
        assert all(a == 1 for _, a, _ in tasks)
        # at least one piece of work was asked for by both queries and done once for them
        assert any(set(w) == set(pids.values()) for _, _, w in tasks)
