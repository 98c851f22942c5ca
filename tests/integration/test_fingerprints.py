"""Data that changes behind a reader: detected by block fingerprints, only changed blocks recomputed.

A plain user (not a superuser) owns the readers and runs the queries; the workers log in as
shift_worker. Every feature row the workers write is logged by a trigger, so the tests count
inference work per (model, reader, block).
"""

import threading
import time
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from shift_cli.testbed import Database, WorkerProcess, digits, register_model

PASSWORD = "pw-" + uuid.uuid4().hex
BLOCK = 16


def score(conn, train, test, k=None, notices=None):
    if notices is not None:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    return conn.execute("SELECT model_id, score FROM shift.score('CosineNN', '{}', "
                        "ARRAY(SELECT model_id FROM shift.models ORDER BY 1), %s, %s, top_k => %s)",
                        (test, train, k)).fetchall()


@pytest.fixture(scope="module")
def fdb(cluster, zoo):
    user = "dana_%s" % uuid.uuid4().hex[:6]
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(PASSWORD)))
    with Database(cluster, "shift_fingerprints") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            conn.execute("SELECT shift.grant_usage(%s::regrole)", (user,))
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(*[sql.Identifier(user)] * 2))
            conn.execute(sql.SQL("GRANT pg_read_server_files TO {}").format(sql.Identifier(user)))
            # every feature row written, by whom it was computed: the inference work done
            conn.execute("CREATE TABLE public.inferred (model_id text, reader_id text, block integer, "
                         "at timestamptz DEFAULT clock_timestamp())")
            conn.execute("GRANT INSERT ON public.inferred TO shift_worker")
            conn.execute("""CREATE FUNCTION public.log_inferred() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO public.inferred (model_id, reader_id, block)
                      VALUES (NEW.model_id, NEW.reader_id, NEW.block); RETURN NEW; END $$""")
            conn.execute("CREATE TRIGGER log_inferred AFTER INSERT OR UPDATE ON shift.features "
                         "FOR EACH ROW EXECUTE FUNCTION public.log_inferred()")
        database.user = user
        database.cluster_home = cluster.home
        database.data_dir = cluster.server_readable_dir("fingerprints")
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-fingerprints.log", "fp-1").wait_ready()
        database.workers = [worker]
        try:
            yield database
        finally:
            for w in database.workers:
                w.stop()
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def connect_user(db, **kwargs):
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(make_conninfo(db.dsn, user=db.user, password=PASSWORD), **kwargs)


def load_table(conn, table, xs, ys):
    conn.execute("CREATE TABLE %s (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)" % table)
    with conn.cursor().copy("COPY %s (id, x, y) FROM STDIN" % table) as copy:
        for i, (x, y) in enumerate(zip(xs, ys)):
            copy.write_row((i, np.asarray(x).ravel().tolist(), int(y)))


def sql_readers(db, conn, prefix, n_train=96, n_test=48, seed=0):
    (train_x, train_y), (test_x, test_y) = digits(n_train=n_train, n_test=n_test, seed=seed)
    names = []
    for role, xs, ys in (("train", train_x, train_y), ("test", test_x, test_y)):
        table, reader = "%s.%s_%s" % (db.user, prefix, role), "%s_%s" % (prefix, role)
        load_table(conn, table, xs, ys)
        conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM %s ORDER BY id', "
                     "options => '{\"shape\": [8, 8]}', block_size => %d)" % (table, BLOCK), (reader,))
        names.append(reader)
    return names


def inferred(db, reader):
    """{(model, block): times inferred} for one reader."""
    with db.connect() as conn:
        return {(m, b): n for m, b, n in conn.execute(
            "SELECT model_id, block, count(*) FROM public.inferred WHERE reader_id = %s GROUP BY 1, 2", (reader,))}


def queued(db):
    with db.connect() as conn:
        return conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]


def test_a_changed_user_table_recomputes_only_its_changed_blocks(fdb):
    with connect_user(fdb) as conn:
        train, test = sql_readers(fdb, conn, "chg")
        first = dict(score(conn, train, test))
        models = len(first)
        before = inferred(fdb, train)
        assert set(before.values()) == {1} and len(before) == models * (96 // BLOCK)
        again = dict(score(conn, train, test))
        assert again == first and inferred(fdb, train) == before  # nothing changed: nothing recomputed

        # change samples of block 2 only (ids 32..47): relabel all of it, alter the pixels of two
        conn.execute("UPDATE %s.chg_train SET y = (y + 1) %% 10 WHERE id BETWEEN 32 AND 47" % fdb.user)
        conn.execute("UPDATE %s.chg_train SET x = array_fill(0.5::real, ARRAY[64]) WHERE id IN (40, 41)" % fdb.user)
        notices = []
        changed = dict(score(conn, train, test, notices=notices))
        after = inferred(fdb, train)
        recomputed = {k for k in after if after[k] > before.get(k, 0)}
        assert recomputed == {(m, 2) for m in first}, recomputed  # one block per model, the changed one
        assert any("recomputed %d block inferences" % models in n for n in notices), notices
        assert inferred(fdb, test) == {k: 1 for k in inferred(fdb, test)}  # the test reader is as it was
        # a score of the old content is kept but not served: the new one is computed beside it
        assert conn.execute("SELECT count(DISTINCT content) FROM shift.scores WHERE train_reader = %s "
                            "AND fidelity = 96", (train,)).fetchone()[0] == 2
        source = conn.execute("SELECT blocks_checked, blocks_changed FROM shift.reader_sources "
                              "WHERE reader_id = %s", (train,)).fetchone()
        assert source == (96 // BLOCK, 1)

        # the same data from scratch: a new reader over a copy of the changed table gives the same scores
        conn.execute("CREATE TABLE %s.chg_copy AS SELECT * FROM %s.chg_train" % (fdb.user, fdb.user))
        conn.execute("ALTER TABLE %s.chg_copy ADD PRIMARY KEY (id)" % fdb.user)
        conn.execute("SELECT shift.register_sql_reader('chg_copy', 'SELECT x, y FROM %s.chg_copy ORDER BY id', "
                     "options => '{\"shape\": [8, 8]}', block_size => %d)" % (fdb.user, BLOCK))
        fresh = dict(score(conn, "chg_copy", test))
        assert fresh == pytest.approx(changed)


def test_a_rewritten_npz_file_is_detected(fdb):
    (train_x, train_y), (test_x, test_y) = digits(n_train=64, n_test=32, seed=4)
    path = fdb.data_dir / "rewritten_train.npz"
    np.savez(path, x=train_x, y=train_y)
    path.chmod(0o644)
    with connect_user(fdb) as conn:
        _, test = sql_readers(fdb, conn, "npz", n_train=16, n_test=32, seed=4)
        conn.execute("SELECT shift.register_npz_reader('npz_file', %s, block_size => %s)", (str(path), BLOCK))
        first = dict(score(conn, "npz_file", test))
        before = inferred(fdb, "npz_file")
        changed_x = train_x.copy()
        changed_x[50] = 1.0 - changed_x[50]  # block 3
        np.savez(path, x=changed_x, y=train_y)
        second = dict(score(conn, "npz_file", test))
        after = inferred(fdb, "npz_file")
        assert {k for k in after if after[k] > before[k]} == {(m, 3) for m in first}
        assert conn.execute("SELECT count(DISTINCT content) FROM shift.scores WHERE train_reader = 'npz_file'"
                            ).fetchone()[0] == 2
        # the same bytes again: the signature changes (mtime), validation finds nothing to recompute
        np.savez(path, x=changed_x, y=train_y)
        assert dict(score(conn, "npz_file", test)) == second and inferred(fdb, "npz_file") == after


def test_an_order_that_is_not_unique_is_refused(fdb):
    with connect_user(fdb) as conn:
        conn.execute("CREATE TABLE %s.dup (id integer, x real[], y integer)" % fdb.user)
        conn.execute("INSERT INTO %s.dup SELECT g / 2, ARRAY[g::real, 1], g %% 2 FROM generate_series(0, 9) g"
                     % fdb.user)
        for order in ("y", "id", "2", "id DESC NULLS LAST"):
            with pytest.raises(errors.InvalidParameterValue, match="ORDER BY that is not unique"):
                conn.execute("SELECT shift.register_sql_reader('dup', 'SELECT x, y FROM %s.dup ORDER BY %s', "
                             "input => 'Tabular')" % (fdb.user, order))
        # unique together, or through an output alias: accepted
        conn.execute("SELECT shift.register_sql_reader('dup_ok', 'SELECT x, y, id * 2 + y AS k FROM %s.dup "
                     "ORDER BY k', input => 'Tabular')" % fdb.user)
        conn.execute("SELECT shift.register_sql_reader('dup_ok2', 'SELECT x, y FROM %s.dup ORDER BY id, y', "
                     "input => 'Tabular')" % fdb.user)
        assert conn.execute("SELECT count(*) FROM shift.readers WHERE reader_id LIKE 'dup%'").fetchone()[0] == 2


def test_successive_halving_is_answered_again_without_a_worker(fdb):
    with connect_user(fdb) as conn:
        train, test = sql_readers(fdb, conn, "sh", n_train=128, n_test=32, seed=5)
        conn.execute("SET shift.successive_halving = 'on'")
        first = score(conn, train, test, k=1)
        plan = conn.execute("SELECT choice FROM shift.plans ORDER BY plan_id DESC LIMIT 1").fetchone()[0]
        assert plan == "successive halving"
        explained = conn.execute("SELECT string_agg(e.content, E'\\n') FROM shift.explain(%s) e", (
            "SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON %s TRAINED ON %s" % (test, train),
        )).fetchone()[0]
        assert '"choice": "cached"' in str(explained) and '"stale": 0' in str(explained)
        tasks = queued(fdb)
        for w in fdb.workers:
            w.stop()
        fdb.workers = []
        with fdb.connect() as su:
            su.execute("DELETE FROM shift.workers")
        again = score(conn, train, test, k=1)
        assert again == first and queued(fdb) == tasks
    fdb.workers = [WorkerProcess(fdb.worker_dsn, fdb.cluster_home / "worker-fingerprints-2.log", "fp-2").wait_ready()]


def test_concurrent_partitionings_infer_each_block_once(fdb):
    """A full pass and a successive halving over the same readers at once, on two workers."""
    with connect_user(fdb) as conn:
        train, test = sql_readers(fdb, conn, "conc", n_train=128, n_test=32, seed=6)
    fdb.workers.append(WorkerProcess(fdb.worker_dsn, fdb.cluster_home / "worker-fingerprints-3.log",
                                     "fp-3").wait_ready())
    results, failures = {}, []

    def run(name, mode):
        try:
            with connect_user(fdb) as c:
                c.execute("SET shift.successive_halving = %s" % mode)
                c.execute("SET shift.sh_chunk_size = %d" % BLOCK)
                results[name] = score(c, train, test, k=1)
        except Exception as e:  # noqa: BLE001 -- reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=("full", "off")), threading.Thread(target=run, args=("sh", "on"))]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures
    for reader in (train, test):
        counts = inferred(fdb, reader)
        assert counts and set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
    # successive halving may keep another model than the full pass: each answered its own plan
    assert len(results["full"]) == len(results["sh"]) == 1
