"""Several users on one database: what a user of shift may do, what it may not, and whose rows it sees.

The users are roles made with CREATE ROLE ... LOGIN PASSWORD and shift.grant_usage, logging
in with SCRAM; the worker logs in as shift_worker, which is not a superuser. Alice and Bob
are plain users; Carol may also read server files and register models that run code.
"""

import json
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shift_cli.testbed import USER_PROXY_QUERY as PROXY_QUERY
from shift_cli.testbed import (Database, WorkerProcess, connect_as, digits, load_table, make_users, register_digits_as,
                               register_model, sqlstate)

@pytest.fixture(scope="module")
def udb(cluster, zoo, roles):
    with Database(cluster, "shift_users") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            make_users(conn, roles.values())
            conn.execute(sql.SQL("GRANT pg_read_server_files, shift_trusted_models TO {}").format(
                sql.Identifier(roles["carol"])))
        with connect_as(database, roles["alice"]) as conn:
            register_digits_as(conn, roles["alice"], "AliceTrain", "AliceTest")
        with database.connect() as conn:  # the probe of the Task2Vec embeddings the workers compute
            conn.execute("ALTER DATABASE %s SET shift.task2vec_probe = 'shapes10.resnet10t'" % database.name)
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-users.log", "users-worker").wait_ready()
        try:
            yield database
        finally:
            worker.stop()


def query(conn, text):
    return conn.execute("SELECT model_id, score FROM shift.query(%s)", (text,)).fetchall()


# -- what a user does -----------------------------------------------------------------------------

def test_the_worker_is_not_a_superuser(udb):
    with udb.connect() as conn:
        rows = conn.execute("SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity a "
                            "JOIN pg_roles r ON r.rolname = a.usename WHERE a.application_name = 'shift-worker' "
                            "AND a.datname = current_database()").fetchall()
    assert rows == [("shift_worker", False)]


def test_a_user_runs_every_kind_of_query(udb, roles):
    alice = roles["alice"]
    proxy = PROXY_QUERY.format(test="AliceTest", train="AliceTrain")
    with connect_as(udb, alice) as conn:
        ranked = query(conn, proxy)
        assert len(ranked) == 3 and all(s is not None for _, s in ranked)
        assert query(conn, "SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY UpstreamAccuracy DESC LIMIT 1")
        conn.execute("SELECT * FROM shift.query(%s)", (
            "CREATE SCORING VIEW %s.best AS SELECT ModelId FROM Models WHERE Input = 'Vision' "
            "ORDER BY CosineNN LIMIT 2 TESTED ON AliceTest TRAINED ON AliceTrain" % alice,))
        view = conn.execute("SELECT model_id, score FROM %s.best" % alice).fetchall()
        assert [m for m, _ in view] == [m for m, _ in ranked[:2]]
        assert [m for m, _ in query(conn, "SELECT ModelId FROM %s.best" % alice)] == [m for m, _ in view]
        similar = query(conn, "SELECT ModelId FROM Models WHERE Input IN (SELECT Input FROM DataReaders "
                              "ORDER BY Task2Vec LIMIT 1 TESTED AGAINST AliceTest) ORDER BY UpstreamAccuracy DESC")
        assert similar
        sections = dict(conn.execute("SELECT section, content FROM shift.explain(%s)", (proxy,)).fetchall())
        assert "shift.score" in sections["sql"]
        assert "shift.score" in conn.execute("SELECT shift.translate(%s)", (proxy,)).fetchone()[0]
        tuned = query(conn, "SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY FineTune(steps=2, "
                            "batch_size=32) LIMIT 1 TESTED ON AliceTest TRAINED ON AliceTrain")
        assert len(tuned) == 1 and 0 <= tuned[0][1] <= 1
        conn.execute("SELECT shift.drop_view(%s)", ("%s.best" % alice,))
    # the same scores as an admin who sees everything: nothing was hidden from the user's own query
    with udb.connect() as conn:
        admin = query(conn, proxy)
    assert [m for m, _ in admin] == [m for m, _ in ranked]
    assert [s for _, s in admin] == pytest.approx([s for _, s in ranked])


def test_a_cached_query_writes_nothing(udb, roles):
    proxy = PROXY_QUERY.format(test="AliceTest", train="AliceTrain")
    with connect_as(udb, roles["alice"]) as conn:
        query(conn, proxy)
    with connect_as(udb, roles["alice"], autocommit=False) as conn:
        last_task = conn.execute("SELECT max(task_id) FROM shift.tasks").fetchone()[0]
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        assert query(conn, proxy)
        assert conn.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None
        conn.commit()
        assert conn.execute("SELECT max(task_id) FROM shift.tasks").fetchone()[0] == last_task


# -- what a user may not do -----------------------------------------------------------------------

ESCALATIONS = [
    ("DELETE FROM shift.models", None, "42501"),
    ("UPDATE shift.features SET device = 'x'", None, "42501"),
    ("INSERT INTO shift.tasks (kind, key, payload) VALUES ('describe', 'k', '{}')", None, "42501"),
    ("UPDATE shift.readers SET source = 'SELECT 1', owner = 'postgres'", None, "42501"),
    ("INSERT INTO shift.reader_grants (reader_id, grantee, granted_by) VALUES ('AliceTest', 'public', 'x')",
     None, "42501"),
    ("SELECT shift.register_model('evil', 'torchscript', '/etc/passwd')", None, "42501"),
    ("SELECT shift.register_model('evil', 'hf', 'some/model', options => '{\"trust_remote_code\": true}')",
     None, "42501"),
    ("SELECT shift.register_model('evil', 'tfhub', 'https://example.invalid/model/1')", None, "42501"),
    ("SELECT shift.register_model('evil', 'onnx', '/models/x.onnx')", None, "42501"),
    ("SELECT shift.register_model('evil', 'timm', 'resnet18', checkpoint => '/etc/passwd')", None, "42501"),
    ("SELECT shift.register_npz_reader('Evil', '/etc/passwd')", None, "42501"),
    ("SELECT shift.drop_model('shapes10.resnet10t')", None, "42501"),  # shared, but not the user's
    # the SECURITY DEFINER functions refuse a caller the session may not act for
    ("SELECT shift._store_model('postgres', '{\"model_id\": \"evil\", \"source\": \"torchscript\", "
     "\"locator\": \"/etc/passwd\", \"framework\": \"pytorch\", \"input\": \"Vision\"}')", None, "42501"),
    ("SELECT shift._enqueue('postgres', 0, '[]')", None, "42501"),
    ("SELECT shift._drop_object('postgres', 'model', 'x')", None, "42501"),
]


@pytest.mark.parametrize("statement, params, state", ESCALATIONS, ids=[e[0][:60] for e in ESCALATIONS])
def test_escalations_are_refused(udb, roles, statement, params, state):
    with connect_as(udb, roles["bob"]) as conn:
        assert sqlstate(conn, statement, params) == state
    with udb.connect() as conn:
        assert not conn.execute("SELECT 1 FROM shift.models WHERE model_id = 'evil'").fetchone()


def test_grant_admin_by_a_user_grants_nothing(udb, roles):
    with connect_as(udb, roles["bob"]) as conn:
        try:
            conn.execute("SELECT shift.grant_admin(%s::regrole)", (roles["bob"],))
        except psycopg.Error:
            pass
        assert sqlstate(conn, "DELETE FROM shift.models") == "42501"


def test_a_private_reader_is_private_until_shared(udb, roles):
    alice, bob = roles["alice"], roles["bob"]
    proxy = PROXY_QUERY.format(test="AliceTest", train="AliceTrain")
    with connect_as(udb, alice) as conn:
        query(conn, proxy)
    with connect_as(udb, bob) as conn:
        assert conn.execute("SELECT count(*) FROM shift.readers WHERE reader_id LIKE 'Alice%'").fetchone()[0] == 0
        for table in ("features", "labels", "scores"):
            assert conn.execute("SELECT count(*) FROM shift.%s" % table).fetchone()[0] == 0, table
        assert sqlstate(conn, "SELECT * FROM shift.query(%s)", (proxy,)) == "42501"
        assert sqlstate(conn, "SELECT shift.drop_reader('AliceTest')") == "42501"
        assert sqlstate(conn, "SELECT shift.grant_reader('AliceTest', %s)", (bob,)) in ("42501", "42704")
        assert sqlstate(conn, "SELECT * FROM shift.score('CosineNN', '{}', ARRAY['x'], 'AliceTest', "
                              "'AliceTrain')") == "42501"
    with connect_as(udb, alice) as conn:
        conn.execute("SELECT shift.grant_reader('AliceTest', %s)", (bob,))
        conn.execute("SELECT shift.grant_reader('AliceTrain', %s)", (bob,))
    try:
        with connect_as(udb, bob) as conn:
            assert conn.execute("SELECT count(*) FROM shift.readers WHERE reader_id LIKE 'Alice%'").fetchone()[0] == 2
            assert query(conn, proxy)  # answered from Alice's cache
            assert sqlstate(conn, "SELECT shift.drop_reader('AliceTest')") == "42501"
            assert sqlstate(conn, "SELECT shift.grant_reader('AliceTest', 'public')") == "42501"
    finally:
        with connect_as(udb, alice) as conn:
            conn.execute("SELECT shift.revoke_reader('AliceTest', %s)", (bob,))
            conn.execute("SELECT shift.revoke_reader('AliceTrain', %s)", (bob,))
    with connect_as(udb, bob) as conn:
        assert sqlstate(conn, "SELECT * FROM shift.query(%s)", (proxy,)) == "42501"


def test_a_reader_query_cannot_change_role(udb, roles):
    """The reader's query tries SET ROLE, RESET ROLE and set_config('role', ...) while a worker reads
    it, and labels each sample with the role it then runs as: registration saw only its owner's name,
    so any other label would fail the read."""
    bob = roles["bob"]
    with connect_as(udb, bob) as conn:
        conn.execute("""
            CREATE FUNCTION %(s)s.whoami() RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
                BEGIN SET ROLE postgres; EXCEPTION WHEN OTHERS THEN NULL; END;
                BEGIN RESET ROLE; EXCEPTION WHEN OTHERS THEN NULL; END;
                BEGIN PERFORM set_config('role', 'shift_worker', false); EXCEPTION WHEN OTHERS THEN NULL; END;
                BEGIN PERFORM set_config('role', 'none', false); EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN current_user::text;
            END $$""" % {"s": bob})
        (xs, ys), (txs, tys) = digits(n_train=80, n_test=40)
        load_table(conn, "%s.train" % bob, xs, ys)
        load_table(conn, "%s.test" % bob, txs, tys)
        for reader, table in (("BobTrain", "train"), ("BobTest", "test")):
            conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, %s.whoami() AS y FROM %s.%s ORDER BY id', "
                         "options => '{\"shape\": [8, 8]}')" % (bob, bob, table), (reader,))
        assert conn.execute("SELECT classes FROM shift.readers WHERE reader_id = 'BobTrain'").fetchone()[0] == [bob]
        ranked = query(conn, PROXY_QUERY.format(test="BobTest", train="BobTrain"))
        assert len(ranked) == 3
        # every label the worker read is the owner's name, class 0
        labels = conn.execute("SELECT y FROM shift.labels WHERE reader_id = 'BobTrain'").fetchall()
        assert labels and {v for (y,) in labels for v in y} == {0}


def test_session_settings_that_load_code_or_connect_change_nothing(udb, roles, tmp_path):
    evil = Path("/tmp") / ("shift-evil-%s" % uuid.uuid4().hex[:8])
    (evil / "0.1.0" / "pyfuncs").mkdir(parents=True)
    marker = evil / "imported"
    (evil / "0.1.0" / "pyfuncs" / "__init__.py").write_text(
        "open(%r, 'w').write('imported')\n__version__ = '0.1.0'\n" % str(marker))
    evil.chmod(0o755)
    notices = []
    with connect_as(udb, roles["alice"]) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("SET shift.python_dir = %s" % sql.Literal(str(evil)).as_string(conn))
        conn.execute("SET shift.loopback_dsn = 'host=/nonexistent port=1 user=postgres'")
        assert conn.execute("SELECT shift.version()").fetchone()[0] == "0.1.0"
        # a query that must enqueue: a scorer whose values are not cached yet
        ranked = query(conn, "SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY EuclideanNN LIMIT 1 "
                             "TESTED ON AliceTest TRAINED ON AliceTrain")
        assert len(ranked) == 1
    assert not marker.exists()
    assert any("shift.python_dir" in n and "ignored" in n for n in notices)
    assert any("shift.loopback_dsn" in n and "ignored" in n for n in notices)


def test_server_files_and_code_need_their_roles(udb, roles, cluster):
    alice, carol = roles["alice"], roles["carol"]
    path = cluster.server_readable_dir("users") / "carol.npz"
    (xs, ys), _ = digits(n_train=64, n_test=1)
    np.savez(path, x=xs, y=ys)
    path.chmod(0o644)
    with connect_as(udb, carol) as conn:
        conn.execute("SELECT shift.register_npz_reader('CarolDigits', %s, options => '{\"shape\": [8, 8]}')",
                     (str(path),))
        conn.execute("SELECT shift.register_model('carol.script', 'torchscript', '/nonexistent/model.pt')")
        assert conn.execute("SELECT owner FROM shift.models WHERE model_id = 'carol.script'").fetchone()[0] == carol
        conn.execute("SELECT shift.drop_model('carol.script')")
    with connect_as(udb, alice) as conn:
        state = sqlstate(conn, "SELECT shift.register_model('a.script', 'torchscript', '/nonexistent/model.pt')")
        assert state == "42501"
    # rights are checked again when a worker reads: Carol loses hers, her reader is no longer read
    with udb.connect() as conn:
        conn.execute(sql.SQL("REVOKE pg_read_server_files FROM {}").format(sql.Identifier(carol)))
    with connect_as(udb, carol) as conn:
        with pytest.raises(psycopg.Error) as info:
            query(conn, "SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY CosineNN LIMIT 1 "
                        "TESTED ON CarolDigits TRAINED ON CarolDigits")
        assert "pg_read_server_files" in str(info.value)


def test_every_documented_example_runs_as_a_user(cluster, zoo, roles):
    """docs/shiftql.md, in order, as a user whose readers an admin shared with everyone."""
    from tests.integration.conftest import SMALL_READERS, TASK2VEC, setup_shiftql
    from tests.integration.test_shiftql_docs import run_examples

    user = roles["bob"]
    with Database(cluster, "shift_ql_user") as database:
        setup_shiftql(database, cluster, zoo, "shift_ql_user")
        with database.connect() as conn:
            conn.execute("SELECT shift.grant_usage(%s::regrole)", (user,))
            for reader in sorted(set(TASK2VEC) | set(SMALL_READERS)):
                conn.execute("SELECT shift.grant_reader(%s, 'public')", (reader,))
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public, analytics TO {0}; "
                                 "GRANT SELECT ON public.licences, public.latencies TO {0}").format(
                sql.Identifier(user)))
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-ql-user.log", "ql-user").wait_ready()
        try:
            with connect_as(database, user) as conn:
                run_examples(conn)
        finally:
            worker.stop()


def test_the_cluster_trusts_no_one_by_default(udb, roles, cluster):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(make_conninfo(udb.dsn, user=roles["alice"], password="wrong")).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(udb.dsn, user=roles["alice"], host="127.0.0.1", password="")).close()
    # only the server's and the project's OS users enter the socket directory
    assert cluster.socket_dir.resolve().stat().st_mode & 0o007 == 0
    with psycopg.connect(cluster.dsn(udb.name)) as conn:  # what `shift dsn` prints
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"


def test_enqueue_writes_tasks_in_key_order_and_keeps_dependencies(udb):
    """shift._enqueue upserts in the order of the keys (so concurrent enqueues lock rows in one
    order), returns ids in the order asked, and maps depends_on indices to those ids."""
    planned = [{"kind": "describe", "key": "describe/order/%s" % k, "payload": {"model_id": "shapes10.resnet10t"},
                "depends_on": deps} for k, deps in (("c", []), ("a", []), ("b", [0, 1]))]
    with udb.connect() as conn:
        ids = conn.execute("SELECT shift._enqueue(current_user, pg_backend_pid(), %s)",
                           (json.dumps(planned),)).fetchone()[0]
        try:
            rows = dict(conn.execute("SELECT key, task_id FROM shift.tasks WHERE task_id = ANY(%s)", (ids,)).fetchall())
            assert [rows["describe/order/%s" % k] for k in "cab"] == ids
            assert rows["describe/order/a"] < rows["describe/order/b"] < rows["describe/order/c"]
            deps = conn.execute("SELECT depends_on FROM shift.tasks WHERE task_id = %s", (ids[2],)).fetchone()[0]
            assert deps == [ids[0], ids[1]]
        finally:
            conn.execute("DELETE FROM shift.tasks WHERE task_id = ANY(%s)", (ids,))


def test_a_user_retries_only_the_failed_tasks_it_can_see(udb, roles):
    with udb.connect() as conn:
        task = conn.execute(
            "INSERT INTO shift.tasks (kind, key, payload, readers, status, quarantined, error) "
            "VALUES ('inference', 'inference/x/AliceTest/99', '{\"model_id\": \"x\", \"reader_id\": \"AliceTest\"}', "
            "'{AliceTest}', 'failed', true, 'died') RETURNING task_id").fetchone()[0]
    try:
        with connect_as(udb, roles["bob"]) as conn:
            assert sqlstate(conn, "SELECT shift.retry_task(%s)", (task,)) == "42704"
            assert sqlstate(conn, "SELECT shift.retry_failed_tasks()") == "42501"
        with connect_as(udb, roles["alice"]) as conn:
            assert conn.execute("SELECT shift.retry_task(%s)", (task,)).fetchone()[0] is True
            assert conn.execute("SELECT status, quarantined FROM shift.tasks WHERE task_id = %s",
                                (task,)).fetchone() in (("queued", False), ("running", False), ("failed", False))
    finally:
        with udb.connect() as conn:
            conn.execute("DELETE FROM shift.tasks WHERE task_id = %s", (task,))
