"""Workers and queries that survive: a PostgreSQL restart, a model that kills its worker, a stop mid-task."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import psycopg
import pytest

from pyfuncs import finetune as finetuning
from pyfuncs import tasks
from shift_cli.testbed import ROOT, Database, WorkerProcess, copy_samples, digits, start_scratch_cluster
from shift_cli.workers import running_workers, start_workers, stop_workers

# a configuration class whose constructor crashes the process, as a broken native extension would
CRASHING_CONFIG = '''
import ctypes

from transformers import PretrainedConfig


class CrashConfig(PretrainedConfig):
    model_type = "crashnet"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        ctypes.string_at(0)
'''


def scripted_encoder(path):
    """A small TorchScript encoder (features are its output)."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    with warnings.catch_warnings():  # deprecated upstream, but TorchScript files are what users have
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(Encoder().eval()).save(str(path))
    path.chmod(0o644)
    return path


def setup_database(database, cluster):
    """Model `enc` (TorchScript) and readers RTrain (SQL, 64 digits) and RTest (.npz, 32), blocks of 32."""
    (train_x, train_y), (test_x, test_y) = digits(n_train=64, n_test=32, seed=2)
    data = cluster.server_readable_dir("data")
    npz = data / ("%s_test.npz" % database.name)
    np.savez(npz, x=test_x, y=test_y)
    npz.chmod(0o644)
    model = scripted_encoder(data / ("%s_enc.pt" % database.name))
    with database.connect() as conn:
        conn.execute("SELECT shift.register_model('enc', 'torchscript', %s, input_size => 16)", (str(model),))
        conn.execute("CREATE TABLE public.r_train (id integer PRIMARY KEY, x real[], y integer)")
        copy_samples(conn, "r_train", train_x, train_y)
        conn.execute("SELECT shift.register_sql_reader('RTrain', 'SELECT x, y FROM public.r_train ORDER BY id', "
                     "options => '{\"shape\": [8, 8]}', block_size => 32)")
        conn.execute("SELECT shift.register_npz_reader('RTest', %s, block_size => 32)", (str(npz),))


def score(conn, scorer):
    return conn.execute("SELECT score FROM shift.score(%s, '{}', ARRAY['enc'], 'RTest', 'RTrain')",
                        (scorer,)).fetchone()[0]


def wait_for(conn, sql, params=(), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(sql, params).fetchone()
        if row and row[0]:
            return row
        time.sleep(0.1)
    raise AssertionError("timed out waiting for: %s" % sql)


@pytest.fixture(scope="module")
def rdb(cluster):
    with Database(cluster, "shift_resilience") as database:
        setup_database(database, cluster)
        yield database


def test_a_worker_survives_postgresql_restarts_and_serves_the_next_query(tmp_path):
    cluster = start_scratch_cluster("shift-restart-")
    try:
        with Database(cluster, "shift_restart") as database:
            setup_database(database, cluster)
            # a worker started before the database is up waits for it, as a reconnect does
            assert cluster.stop("fast")
            worker = WorkerProcess(database.worker_dsn, tmp_path / "worker.log", "restarted")
            deadline = time.monotonic() + 60
            while "cannot connect" not in (tmp_path / "worker.log").read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert worker.proc.poll() is None and cluster.start()
            worker.wait_ready()
            try:
                with database.connect() as conn:
                    assert 0 <= score(conn, "CosineNN") <= 1
                for mode, scorer in (("fast", "EuclideanNN"), ("immediate", "Linear")):
                    assert cluster.stop(mode) and cluster.start()
                    started = time.monotonic()
                    with database.connect() as conn:
                        # the same process registers again, with its heartbeat, and runs the new tasks
                        wait_for(conn, "SELECT 1 FROM shift.live_workers WHERE worker_id = 'restarted'", timeout=30)
                        assert 0 <= score(conn, scorer) <= 1
                        # nothing is left behind (a task given back at the restart may still be finishing)
                        wait_for(conn, "SELECT count(*) = 0 FROM shift.tasks WHERE status <> 'done'", timeout=30)
                    print("after a %s restart the query took %.1fs" % (mode, time.monotonic() - started))
                    assert worker.proc.poll() is None
                assert "reconnected" in (tmp_path / "worker.log").read_text()
            finally:
                worker.stop()
            assert worker.proc.returncode == 0
    finally:
        cluster.remove()


def _shift(cluster, dbname, *args):
    env = dict(os.environ, SHIFT_HOME=str(cluster.home), SHIFT_PORT=str(cluster.port), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "shift_cli.main", "--dbname", dbname, *args],
                          capture_output=True, text=True, env=env, timeout=120)


def _describe_fails(conn, task_key):
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT * FROM shift.describe_models(ARRAY['crash'])")
    assert info.value.diag.sqlstate == "38000"
    return info.value.diag, conn.execute("SELECT task_id, status, attempts, deaths, quarantined FROM shift.tasks "
                                         "WHERE key = %s", (task_key,)).fetchone()


def test_a_task_that_kills_its_workers_is_quarantined_until_retried(rdb, cluster, tmp_path):
    """Each run of the task crashes the worker (SIGSEGV); the supervisor restarts it; after two deaths it stops."""
    pytest.importorskip("transformers")
    model_dir = cluster.server_readable_dir("data") / "crashnet"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(
        {"model_type": "crashnet", "auto_map": {"AutoConfig": "configuration_crashnet.CrashConfig"}}))
    (model_dir / "configuration_crashnet.py").write_text(CRASHING_CONFIG)
    key = "describe/model/crash"
    with rdb.connect() as conn:
        conn.execute("ALTER DATABASE shift_resilience SET shift.max_task_deaths = 2")
        conn.execute("SELECT shift.register_model('crash', 'hf', %s, options => '{\"trust_remote_code\": true}')",
                     (str(model_dir),))
    start_workers(rdb.worker_dsn, count=1, device="cpu", home=cluster.home, extra_args=["--lease-seconds", "3"])
    try:
        with rdb.connect() as conn:
            wait_for(conn, "SELECT count(*) FROM shift.live_workers", timeout=60)
            started = time.monotonic()
            diag, (task_id, status, attempts, deaths, quarantined) = _describe_fails(conn, key)
            print("quarantined after %.1fs" % (time.monotonic() - started))
            assert (status, attempts, deaths, quarantined) == ("failed", 2, 2, True)
            assert "died 2 times" in diag.message_primary and "shift.retry_task(%d)" % task_id in diag.message_hint
            (w,) = running_workers(cluster.home)
            assert w.restarts == 2
            res = _shift(cluster, "shift_resilience", "status")
            assert res.returncode == 0 and "restarts 2" in res.stdout, res.stdout + res.stderr

            # the next query fails at once with the same reason, and no worker dies for it
            started = time.monotonic()
            diag, again = _describe_fails(conn, key)
            assert time.monotonic() - started < 3
            assert again == (task_id, "failed", 2, 2, True) and "died 2 times" in diag.message_primary
            wait_for(conn, "SELECT count(*) FROM shift.live_workers", timeout=30)
            assert running_workers(cluster.home)[0].restarts == 2

            # asked for, it runs again (and kills two more workers)
            assert conn.execute("SELECT shift.retry_task(%s)", (task_id,)).fetchone() == (True,)
            # queued again, and a worker may have claimed it already
            status, attempts, deaths, quarantined, error = conn.execute(
                "SELECT status, attempts, deaths, quarantined, error FROM shift.tasks WHERE task_id = %s",
                (task_id,)).fetchone()
            assert (status, attempts) in (("queued", 0), ("running", 1))
            assert (deaths, quarantined, error) == (0, False, None)
            if status == "queued":
                assert conn.execute("SELECT shift.retry_task(%s)", (task_id,)).fetchone() == (False,)  # not failed
            wait_for(conn, "SELECT quarantined FROM shift.tasks WHERE task_id = %s", (task_id,), timeout=90)
            assert running_workers(cluster.home)[0].restarts == 4
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute("SELECT shift.retry_task(-1)")
    finally:
        stop_workers(cluster.home)
        with rdb.connect() as conn:
            conn.execute("DELETE FROM shift.tasks WHERE key = %s", (key,))
            conn.execute("SELECT shift.drop_model('crash')")
            conn.execute("ALTER DATABASE shift_resilience RESET shift.max_task_deaths")
    assert "was killed by signal 11; restarting it" in (cluster.home / "worker-1.log").read_text()


def test_a_stopped_worker_gives_its_fine_tuning_task_back(rdb, cluster):
    params = finetuning.resolve(json.dumps({"steps": 1_000_000, "batch_size": 16}))
    key = tasks.finetune_key("enc", "RTrain", "RTest", "RTest", params, "signature")
    payload = tasks.finetune_payload("enc", "RTrain", "RTest", "RTest", params, "signature")
    worker = WorkerProcess(rdb.worker_dsn, cluster.home / "worker-stopped.log", "stopped").wait_ready()
    try:
        with rdb.connect() as conn:
            task_id = conn.execute("INSERT INTO shift.tasks (kind, key, payload) VALUES ('finetune', %s, %s) "
                                   "RETURNING task_id", (key, json.dumps(payload))).fetchone()[0]
            conn.execute("NOTIFY shift_tasks")
            wait_for(conn, "SELECT status = 'running' FROM shift.tasks WHERE task_id = %s", (task_id,))
            time.sleep(3)  # into the SGD steps
            worker.proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            wait_for(conn, "SELECT status = 'queued' FROM shift.tasks WHERE task_id = %s", (task_id,), timeout=10)
            given_back = time.monotonic() - stopped
            assert conn.execute("SELECT worker_id, lease_until, attempts FROM shift.tasks WHERE task_id = %s",
                                (task_id,)).fetchone() == (None, None, 0)
            assert worker.proc.wait(timeout=10) == 0
            print("task given back %.2fs after SIGTERM" % given_back)
            assert given_back < 5
            assert conn.execute("SELECT count(*) FROM shift.finetune_results").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM shift.workers WHERE worker_id = 'stopped'").fetchone() == (0,)
            conn.execute("DELETE FROM shift.tasks WHERE task_id = %s", (task_id,))
    finally:
        worker.stop()


def test_a_task_that_breaks_its_workers_connection_is_quarantined(rdb, cluster):
    """A SQL reader whose query ends the worker's own connection: every run of its task breaks it."""
    with rdb.connect() as conn:
        conn.execute("ALTER DATABASE shift_resilience SET shift.max_task_deaths = 2")
        # no worker runs yet, so registration (which runs the query to count it) ends nothing
        conn.execute(
            "SELECT shift.register_sql_reader('RBreak', 'SELECT x, y, (SELECT count(pg_terminate_backend(pid)) "
            "FROM pg_stat_activity WHERE application_name = ''shift-worker'' AND datname = current_database()) "
            "AS k FROM public.r_train ORDER BY id', options => '{\"shape\": [8, 8]}', block_size => 32)")
    worker = WorkerProcess(rdb.worker_dsn, cluster.home / "worker-broken.log", "broken").wait_ready()
    try:
        with rdb.connect() as conn:
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT * FROM shift.score('CosineNN', '{}', ARRAY['enc'], 'RTest', 'RBreak')")
            diag = info.value.diag
            assert diag.sqlstate == "38000"
            assert "lost their database connection or died 2 times" in diag.message_primary, diag.message_primary
            assert "shift.retry_task(" in diag.message_hint
            # the first task that reads the reader (validating its source, which reads it in the worker's
            # snapshot) is the one that breaks the connection
            assert conn.execute("SELECT status, attempts, deaths, quarantined FROM shift.tasks "
                                "WHERE payload->>'reader_id' = 'RBreak'").fetchall() == [("failed", 2, 2, True)]
            # the worker lived through it and serves the next query
            assert worker.proc.poll() is None
            assert 0 <= score(conn, "CosineNN") <= 1
            worker.stop()
            # an admin queues every failed task again, quarantined ones included, as if new
            assert conn.execute("SELECT shift.retry_failed_tasks()").fetchone()[0] >= 1
            assert conn.execute("SELECT status, attempts, deaths, quarantined, error FROM shift.tasks "
                                "WHERE payload->>'reader_id' = 'RBreak'").fetchall() == [("queued", 0, 0, False, None)]
    finally:
        worker.stop()
        with rdb.connect() as conn:
            conn.execute("DELETE FROM shift.tasks WHERE payload->>'reader_id' = 'RBreak' "
                         "OR payload->>'train_reader' = 'RBreak'")
            conn.execute("SELECT shift.drop_reader('RBreak')")
            conn.execute("ALTER DATABASE shift_resilience RESET shift.max_task_deaths")
    assert "lost its database connection" in (cluster.home / "worker-broken.log").read_text()


def test_a_sql_reader_let_go_of_after_its_connection_broke_closes_quietly(db, registered):
    """A worker's SQL reader whose connection a restart broke: dropping the blocks raises nothing (it used to
    print 'Exception ignored' with a traceback); reading on from it still fails loudly."""
    from gpu_daemon import readers

    with db.connect() as admin:
        reader = admin.cursor(row_factory=psycopg.rows.dict_row).execute(
            "SELECT * FROM shift.readers WHERE reader_id = 'TrainDigits'").fetchone()
    for read_on in (False, True):
        conn = psycopg.connect(db.dsn)
        blocks = readers.iter_sql_blocks(reader, [0, 1, 2], conn)
        assert next(blocks)[0] == 0
        with db.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        try:
            if read_on:
                with pytest.raises(psycopg.OperationalError):
                    next(blocks)
            else:
                blocks.close()
                assert conn.broken
        finally:
            conn.close()
