"""Asynchronous jobs: submitted by a user, run by a real worker logged in as shift_worker (not a superuser,
not a member of the users), seen, fetched and cancelled by their owner alone.

Alice's readers are SQL readers over tables of her own schema that the worker may not read; her jobs
read them, and a private table of hers, through the function shift.submit made in her name.
"""

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from shift_cli.testbed import USER_PROXY_QUERY as PROXY_QUERY
from shift_cli.testbed import ROOT, Database, WorkerProcess, connect_as, make_users, register_digits_as, register_model, sqlstate

PICKED = ("shapes10.resnet10t", "shapes10.regnetx-002")


@pytest.fixture(scope="module")
def jdb(cluster, zoo, roles):
    alice = roles["alice"]
    with Database(cluster, "shift_jobs") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            make_users(conn, roles.values())
        with connect_as(database, alice) as conn:
            register_digits_as(conn, alice, "AliceTrain", "AliceTest")
            conn.execute("CREATE TABLE %s.picks (model_id text PRIMARY KEY)" % alice)
            conn.cursor().executemany("INSERT INTO %s.picks VALUES (%%s)" % alice, [(m,) for m in PICKED])
            # read slowly by the worker only (registration counts it at full speed): a job that runs long
            conn.execute("CREATE FUNCTION %s.slow(v real[]) RETURNS real[] LANGUAGE sql VOLATILE AS $$ "
                         "SELECT CASE WHEN session_user = 'shift_worker' THEN (SELECT v FROM pg_sleep(0.5)) "
                         "ELSE v END $$" % alice)
            conn.execute("SELECT shift.register_sql_reader('AliceSlow', 'SELECT %s.slow(x) AS x, y FROM %s.train "
                         "WHERE id < 24 ORDER BY id', options => '{\"shape\": [8, 8]}')" % (alice, alice))
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-jobs.log", "jobs-worker").wait_ready()
        try:
            yield database
        finally:
            worker.stop()


def picked_query(alice):
    return ("SELECT ModelId FROM Models JOIN %s.picks p ON p.model_id = Models.ModelId WHERE Input = 'Vision' "
            "ORDER BY CosineNN LIMIT 2 TESTED ON AliceTest TRAINED ON AliceTrain" % alice)


def wait_for(conn, job, states, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT * FROM shift.job_status(%s)", (job,)).fetchone()
        if row[1] in states:
            return row
        time.sleep(0.2)
    raise AssertionError("job %s still %s after %ss: %s" % (job, row[1], timeout, row))


def job_functions(database):
    with database.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'shift_jobs'::regnamespace").fetchone()[0]


def test_a_job_outlives_its_connection_and_returns_what_a_query_returns(jdb, roles):
    alice = roles["alice"]
    text = picked_query(alice)
    with connect_as(jdb, alice) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (text,)).fetchone()[0]
    with connect_as(jdb, alice) as conn:
        status = wait_for(conn, job, ("done", "failed", "cancelled"))
        assert status[1] == "done", status
        job_id, _, progress, done, total, elapsed, remaining, error = status
        assert (job_id, progress, error) == (job, 1.0, None) and 0 < done == total and elapsed.total_seconds() > 0
        rows = conn.execute("SELECT * FROM shift.job_result(%s)", (job,)).fetchall()
        assert [r[1] for r in rows] and {r[1] for r in rows} <= set(PICKED)
        assert rows == conn.execute("SELECT * FROM shift.query(%s)", (text,)).fetchall()
        assert conn.execute("SELECT owner, query FROM shift.jobs WHERE job_id = %s", (job,)).fetchone() == (alice, text)
    assert job_functions(jdb) == 0  # dropped when the job ended
    with jdb.connect() as conn:  # the tasks were asked for in Alice's name, not the worker's
        askers = conn.execute("SELECT DISTINCT requested_by FROM shift.tasks WHERE 'AliceTrain' = ANY(readers)").fetchall()
        assert askers == [(alice,)]


def test_the_job_runs_with_the_submitters_privileges(jdb, roles):
    alice = roles["alice"]
    with jdb.connect() as conn:  # the worker cannot read Alice's tables itself
        conn.execute("SET ROLE shift_worker")
        assert sqlstate(conn, "SELECT * FROM %s.picks" % alice) == "42501"


def test_a_running_job_is_cancelled(jdb, roles):
    text = ("SELECT ModelId FROM Models WHERE ModelId = 'shapes10.resnet10t' ORDER BY CosineNN LIMIT 1 "
            "TESTED ON AliceTest TRAINED ON AliceSlow")
    with connect_as(jdb, roles["alice"]) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (text,)).fetchone()[0]
        deadline = time.monotonic() + 60
        while conn.execute("SELECT status FROM shift.jobs WHERE job_id = %s", (job,)).fetchone()[0] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # its query is waiting on the slow reader's task by now
        assert conn.execute("SELECT shift.cancel_job(%s)", (job,)).fetchone()[0] is True
        started = time.monotonic()
        status = wait_for(conn, job, ("done", "failed", "cancelled"), timeout=30)
        assert status[1] == "cancelled" and time.monotonic() - started < 10, status
        assert sqlstate(conn, "SELECT * FROM shift.job_result(%s)", (job,)) == "57014"
        assert conn.execute("SELECT shift.cancel_job(%s)", (job,)).fetchone()[0] is False
    assert job_functions(jdb) == 0


def test_a_queued_job_is_cancelled_before_it_runs(jdb, roles):
    with connect_as(jdb, roles["alice"], autocommit=False) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (picked_query(roles["alice"]),)).fetchone()[0]
        assert conn.execute("SELECT shift.cancel_job(%s)", (job,)).fetchone()[0] is True
        conn.commit()
        assert conn.execute("SELECT status, started_at FROM shift.jobs WHERE job_id = %s", (job,)).fetchone() == (
            "cancelled", None)
    assert job_functions(jdb) == 0


def test_another_user_cannot_see_fetch_or_cancel_a_job(jdb, roles):
    alice, bob = roles["alice"], roles["bob"]
    with connect_as(jdb, alice) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (picked_query(alice),)).fetchone()[0]
        wait_for(conn, job, ("done",))
    with connect_as(jdb, bob) as conn:
        assert conn.execute("SELECT count(*) FROM shift.jobs").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM shift.job_results").fetchone()[0] == 0
        for statement in ("SELECT * FROM shift.job_status(%s)", "SELECT * FROM shift.job_result(%s)",
                          "SELECT shift.cancel_job(%s)"):
            assert sqlstate(conn, statement, (job,)) == "42704", statement
    with connect_as(jdb, alice) as conn:
        assert conn.execute("SELECT count(*) FROM shift.job_result(%s)", (job,)).fetchone()[0] > 0


ESCALATIONS = [
    "UPDATE shift.jobs SET status = 'queued'",
    "INSERT INTO shift.job_results (job_id, rank) VALUES (1, 1)",
    "SELECT shift._finish_job(1, 1, 'done')",
    "SELECT shift._cancel_job('postgres', 1)",
    "SELECT shift._store_job('postgres', 'x', 'shift.version()'::regprocedure)",
    # a function of the caller's own that is not SECURITY DEFINER would run as the worker
    "SELECT shift._store_job(current_user, 'x', 'shift.version()'::regprocedure)",
    "CREATE FUNCTION shift_jobs.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
]


@pytest.mark.parametrize("statement", ESCALATIONS, ids=[e[:60] for e in ESCALATIONS])
def test_job_escalations_are_refused(jdb, roles, statement):
    with connect_as(jdb, roles["bob"]) as conn:
        assert sqlstate(conn, statement) == "42501"


def test_a_job_function_stays_security_definer(jdb, roles):
    """The function shift.submit made cannot become SECURITY INVOKER (it would run as the worker)."""
    bob = roles["bob"]
    with connect_as(jdb, bob, autocommit=False) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (
            "SELECT ModelId FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 1",)).fetchone()[0]
        fn = conn.execute("SELECT run_function::text FROM shift.jobs WHERE job_id = %s", (job,)).fetchone()[0]
        with conn.transaction(force_rollback=True):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER FUNCTION %s SECURITY INVOKER" % fn)
        with conn.transaction(force_rollback=True):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE OR REPLACE FUNCTION %s RETURNS TABLE (rank integer, model_id text, "
                             "score double precision, selected jsonb) LANGUAGE sql AS 'SELECT 1, NULL::text, "
                             "NULL::float8, NULL::jsonb'" % fn)
        conn.rollback()


def test_a_job_over_a_private_reader_of_someone_else_fails_like_a_query(jdb, roles):
    alice, bob = roles["alice"], roles["bob"]
    text = PROXY_QUERY.format(test="AliceTest", train="AliceTrain")
    with connect_as(jdb, bob) as conn:
        refused = sqlstate(conn, "SELECT * FROM shift.query(%s)", (text,))
        assert refused == "42501"
        assert sqlstate(conn, "SELECT shift.submit(%s)", (text,)) == refused
    # shared when Bob submits, no longer when the job runs: the job fails as his query then does
    with connect_as(jdb, alice) as conn:
        for reader in ("AliceTest", "AliceTrain"):
            conn.execute("SELECT shift.grant_reader(%s, %s)", (reader, bob))
    with connect_as(jdb, bob, autocommit=False) as conn:
        job = conn.execute("SELECT shift.submit(%s)", (text,)).fetchone()[0]
        with connect_as(jdb, alice) as owner:
            for reader in ("AliceTest", "AliceTrain"):
                owner.execute("SELECT shift.revoke_reader(%s, %s)", (reader, bob))
        conn.commit()
    with connect_as(jdb, bob) as conn:
        status = wait_for(conn, job, ("done", "failed", "cancelled"))
        assert status[1] == "failed", status
        with pytest.raises(psycopg.Error) as failed:
            conn.execute("SELECT * FROM shift.job_result(%s)", (job,))
        with pytest.raises(psycopg.Error) as queried:
            conn.execute("SELECT * FROM shift.query(%s)", (text,))
        assert failed.value.diag.sqlstate == queried.value.diag.sqlstate == "42501"
        assert failed.value.diag.message_primary == queried.value.diag.message_primary
        assert status[-1] == queried.value.diag.message_primary


def shift_command(cluster, dbname, *args):
    env = dict(os.environ, SHIFT_HOME=str(cluster.home), SHIFT_PORT=str(cluster.port), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "shift_cli.main", "--dbname", dbname, *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_the_command_submits_follows_and_fetches_a_job(jdb, cluster, tmp_path):
    q = tmp_path / "q1.sql"
    q.write_text("SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY UpstreamAccuracy DESC LIMIT 2")
    submitted = shift_command(cluster, jdb.name, "query", "--async", str(q))
    assert submitted.returncode == 0, submitted.stderr
    job = int(submitted.stdout.strip())
    deadline = time.monotonic() + 60
    while True:
        status = json.loads(shift_command(cluster, jdb.name, "job", "status", str(job), "--json").stdout)
        if status["state"] != "queued" and status["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["state"] == "done", status
    rows = [json.loads(line) for line in shift_command(cluster, jdb.name, "job", "result", str(job), "--json")
            .stdout.splitlines()]
    direct = [json.loads(line) for line in shift_command(cluster, jdb.name, "query", str(q), "--json")
              .stdout.splitlines()]
    assert rows == direct and len(rows) == 2
    assert "already ended" in shift_command(cluster, jdb.name, "job", "cancel", str(job)).stdout
    unknown = shift_command(cluster, jdb.name, "job", "result", "999999")
    assert unknown.returncode == 1 and "unknown job 999999" in unknown.stderr
