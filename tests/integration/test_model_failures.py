"""A model that cannot be loaded is left out of queries with a warning; progress notices; what a cancel keeps.

The pool holds the test zoo and TorchScript files registered by the superuser whose
contents are garbage: loading them fails in the worker, which records why.
"""

import os
import re
import signal
import time
import warnings
from dataclasses import dataclass

import psycopg
import pytest

from shift_cli.testbed import Database, WorkerProcess, register_digits, register_model

FULL = "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY {scorer} ASC TESTED ON Test TRAINED ON Train"
TOP1 = FULL + " LIMIT 1"
PROGRESS = re.compile(r"^waiting on workers: (\d+) of (\d+) tasks done(, about \S+ (s|min|h) left)?$")


@pytest.fixture(scope="module")
def fdb(cluster, zoo):
    with Database(cluster, "shift_failures") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            register_digits(conn, cluster, "Train", "Test", "digits")
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-failures.log", "failures-worker")
        worker.wait_ready()
        try:
            yield database, [m["model_id"] for m in zoo], worker
        finally:
            worker.stop()


@dataclass
class Notice:
    severity_nonlocalized: str
    message_primary: str
    message_detail: str
    message_hint: str


def garbage_torchscript(cluster, name):
    path = cluster.server_readable_dir("broken-models") / ("%s.pt" % name)
    path.write_bytes(b"this is not a TorchScript archive\n" * 64)
    path.chmod(0o644)
    return path


def register_garbage(conn, cluster, model_id):
    path = garbage_torchscript(cluster, model_id)
    conn.execute("SELECT shift.register_model(%s, 'torchscript', %s, input_size => 16)", (model_id, str(path)))
    return path


def run(conn, text):
    """Rows (model_id, score) of a SHiFT-QL query and the notices it sent, by severity."""
    notices = []

    def handler(d):  # a notice's fields are readable only inside the handler
        try:
            notices.append(Notice(d.severity_nonlocalized, d.message_primary, d.message_detail, d.message_hint))
        except Exception as e:
            notices.append(Notice("ERR", repr(e), None, None))

    conn.add_notice_handler(handler)
    try:
        rows = conn.execute("SELECT model_id, score FROM shift.query(%s)", (text,)).fetchall()
    finally:
        conn.remove_notice_handler(handler)
    said = {}
    for n in notices:
        said.setdefault(n.severity_nonlocalized, []).append(n)
    return rows, said


def status(conn, model_id):
    return conn.execute("SELECT status, error FROM shift.model_status WHERE model_id = %s", (model_id,)).fetchone()


def test_progress_notices_count_the_tasks_of_a_slow_query(fdb):
    database, zoo, _ = fdb
    with database.connect() as conn:
        conn.execute("SET shift.progress_interval = '0.2'")
        started = time.monotonic()
        rows, said = run(conn, FULL.format(scorer="CosineNN"))
        seconds = time.monotonic() - started
        kinds = dict(conn.execute("SELECT kind, count(*) FROM shift.tasks WHERE %s = ANY(waiters) GROUP BY kind",
                                  (conn.info.backend_pid,)).fetchall())
        blocks = conn.execute("SELECT sum(ceil(num_samples::numeric / block_size))::integer FROM shift.readers "
                              "WHERE reader_id IN ('Train', 'Test')").fetchone()[0]
    waited = sum(kinds.values())
    assert sorted(m for m, _ in rows) == sorted(zoo)
    progress = [PROGRESS.match(n.message_primary) for n in said.get("NOTICE", [])]
    assert progress and all(progress), (seconds, said)
    done = [int(m.group(1)) for m in progress]
    # the readers' first query validates their sources; then per model one inference task per block
    # of both readers, and the proxy
    assert kinds == {"validate": 2, "inference": blocks * len(zoo), "proxy": len(zoo)}, kinds
    # a later wait of the statement counts on from the earlier ones: the totals grow to every task it waited on
    totals = [int(m.group(2)) for m in progress]
    assert totals == sorted(totals) and totals[-1] == waited, (totals, waited)
    assert done == sorted(done) and done[-1] < waited
    assert any(m.group(3) for m in progress if int(m.group(1)) > 0)
    # one notice per interval at most, none in the first one
    assert len(progress) <= seconds / 0.2 + 1, (len(progress), seconds)
    assert not said.get("WARNING")


def test_a_model_found_unloadable_while_the_query_waits_is_left_out(fdb, cluster):
    database, zoo, _ = fdb
    with database.connect() as conn:
        register_garbage(conn, cluster, "broken_a")
        assert status(conn, "broken_a")[0] == "registered"
        rows, said = run(conn, TOP1.format(scorer="EuclideanNN"))  # top-K: the test inference finds it
        assert len(rows) == 1 and rows[0][0] in zoo
        [warning] = said["WARNING"]
        assert warning.message_primary.startswith("model broken_a is left out: it cannot be loaded (")
        assert "describe_models(ARRAY['broken_a'])" in warning.message_hint
        state, error = status(conn, "broken_a")
        assert state == "failed" and error and error.split(":")[0] in warning.message_primary

        register_garbage(conn, cluster, "broken_b")
        rows, said = run(conn, FULL.format(scorer="Linear(lr=0.1)"))  # a full pass finds b, a is known
        assert sorted(m for m, _ in rows) == sorted(zoo)
        assert sorted(w.message_primary.split()[1] for w in said["WARNING"]) == ["broken_a", "broken_b"]
        assert status(conn, "broken_b")[0] == "failed"


def test_a_recorded_load_error_leaves_the_model_out_before_planning(fdb):
    database, zoo, _ = fdb
    with database.connect() as conn:
        before = conn.execute("SELECT count(*) FROM shift.tasks WHERE key LIKE '%%broken%%'").fetchone()[0]
        rows, said = run(conn, TOP1.format(scorer="KNN(k=3)"))
        assert len(rows) == 1 and rows[0][0] in zoo
        assert sorted(w.message_primary.split()[1] for w in said["WARNING"]) == ["broken_a", "broken_b"]
        # no task was made for them
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE key LIKE '%%broken%%'").fetchone()[0] == before
        # shift.score directly, without top-K: the others' scores
        scored = conn.execute("SELECT model_id FROM shift.score('CosineNN', '{}', %s, 'Test', 'Train')",
                              (zoo + ["broken_a"],)).fetchall()
        assert sorted(m for m, in scored) == sorted(zoo)
        # a pool of nothing but unloadable models answers no rows
        assert conn.execute("SELECT * FROM shift.score('CosineNN', '{}', ARRAY['broken_a', 'broken_b'], 'Test', "
                            "'Train')").fetchall() == []


def test_describe_models_brings_a_fixed_model_back(fdb, cluster):
    import torch
    from torch import nn

    database, zoo, _ = fdb
    path = cluster.server_readable_dir("broken-models") / "broken_a.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the TorchScript format
        net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 8))
        torch.jit.script(net.eval()).save(str(path))
    path.chmod(0o644)
    with database.connect() as conn:
        described = conn.execute("SELECT status, error FROM shift.describe_models(ARRAY['broken_a'])").fetchall()
        assert described == [("ready", None)], described
        assert status(conn, "broken_a") == ("ready", None)
        rows, said = run(conn, FULL.format(scorer="CosineNN"))
        assert sorted(m for m, _ in rows) == sorted(zoo + ["broken_a"])
        assert [w.message_primary.split()[1] for w in said["WARNING"]] == ["broken_b"]
        assert status(conn, "broken_b")[0] == "failed"


def test_a_statement_timeout_says_the_work_done_is_kept(fdb):
    database, _, worker = fdb
    with database.connect() as conn:
        # a reader no model has seen, and a worker that takes no task until the query is cancelled
        conn.execute("SELECT shift.register_sql_reader('Train2', 'SELECT x, y FROM public.digits ORDER BY id DESC', "
                     "options => '{\"shape\": [8, 8]}', block_size => 32)")
        loadable = conn.execute("SELECT count(*) FROM shift.models WHERE input = 'Vision' "
                                "AND load_error IS NULL").fetchone()[0]
        conn.execute("SET statement_timeout = '2s'")
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(psycopg.errors.QueryCanceled) as info:
                conn.execute("SELECT * FROM shift.query(%s)",
                             ("SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY CosineNN "
                              "TESTED ON Test TRAINED ON Train2",))
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        conn.execute("RESET statement_timeout")
        diag = info.value.diag
        assert diag.sqlstate == "57014" and diag.message_primary == "canceling statement due to statement timeout"
        # a reader no query has read: its first task, validating its source, waits for the stopped worker
        n = 1
        assert diag.message_detail == ("work already done is kept: 0 of %d tasks are done and cached, the other %d "
                                       "stay queued and workers keep running them; the next query reuses their "
                                       "results" % (n, n))
        # the tasks go on without the query, and the next query reuses them
        deadline = time.monotonic() + 120
        while conn.execute("SELECT count(*) FROM shift.tasks WHERE key LIKE '%%/Train2/%%' "
                           "AND status <> 'done'").fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert conn.execute("SELECT count(*) FILTER (WHERE status = 'done'), count(*) FROM shift.tasks "
                            "WHERE key LIKE '%%/Train2/%%'").fetchone() == (n, n)
        rows, said = run(conn, "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY CosineNN "
                               "TESTED ON Test TRAINED ON Train2")
        # the validation done while no query waited is not done again
        assert len(rows) == loadable
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'validate' "
                            "AND key LIKE 'validate/Train2/%%'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE key LIKE '%%/Train2/%%' "
                            "AND status <> 'done'").fetchone()[0] == 0


def test_a_model_that_cannot_be_loaded_is_left_out_of_fine_tuning(fdb, cluster):
    database, zoo, _ = fdb
    params = '{"steps": 2, "batch_size": 16}'
    finetune = ("SELECT model_id, test_accuracy FROM shift.finetune(%s, 'Train', 'Test', 'Test', %s)")
    with database.connect() as conn:
        register_garbage(conn, cluster, "broken_ft")
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary)))
        rows = conn.execute(finetune, ([zoo[0], "broken_ft"], params)).fetchall()
        assert [m for m, _ in rows] == [zoo[0]] and 0 <= rows[0][1] <= 1
        warned = [m for s, m in notices if s == "WARNING"]
        assert len(warned) == 1 and warned[0].startswith("model broken_ft is left out: it cannot be loaded ("), notices
        assert status(conn, "broken_ft")[0] == "failed"
        # known now: left out before planning, with no task made for it; the FineTune scorer reads
        # the recorded result of the other and leaves it out too
        before = conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune'").fetchone()[0]
        notices.clear()
        scored = conn.execute("SELECT model_id FROM shift.score('FineTune', %s, %s, 'Test', 'Train')",
                              (params, [zoo[0], "broken_ft"])).fetchall()
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune'").fetchone()[0] == before
        assert scored == [(zoo[0],)]
        assert [m.split()[1] for s, m in notices if s == "WARNING"] == ["broken_ft"]
