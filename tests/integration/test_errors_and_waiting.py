"""Bad input gets a SQLSTATE error and leaves nothing behind; waiting honours timeouts, cancel and dead workers."""

import gzip
import os
import signal
import struct
import threading
import time
import zipfile

import numpy as np
import psycopg
import pytest
from psycopg import errors

from shift_cli.testbed import Database, WorkerProcess, digits


def fails(conn, sql, params=(), sqlstate=None):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    diag = info.value.diag
    if sqlstate:
        assert diag.sqlstate == sqlstate, diag.message_primary
    assert diag.message_primary and not diag.message_primary.startswith("plpy")
    return diag


def counts(conn):
    return conn.execute("SELECT (SELECT count(*) FROM shift.models), (SELECT count(*) FROM shift.readers), "
                        "(SELECT count(*) FROM shift.tasks)").fetchone()


def test_bad_registrations_leave_nothing(db, registered, cluster):
    with db.connect() as conn:
        before = counts(conn)
        d = fails(conn, "SELECT shift.register_model('x', 'timmm', 'resnet18')", sqlstate="42704")
        assert "timm" in d.message_hint
        fails(conn, "SELECT shift.register_model(%s, 'timm', 'resnet18')", (registered["models"][0],), "42710")
        fails(conn, "SELECT shift.register_model('x', 'timm', 'resnet18', upstream_accuracy => 76.3)", (), "22023")
        d = fails(conn, "SELECT shift.register_sql_reader('r', 'SELECT x, y FROM public.digits_train')",
                  sqlstate="22023")
        assert "ORDER BY" in d.message_primary
        fails(conn, "SELECT shift.register_sql_reader('r', 'SELECT x AS img, y FROM public.digits_train ORDER BY id')",
              sqlstate="22023")
        fails(conn, "SELECT shift.register_sql_reader('r', 'SELEC x')", sqlstate="22023")  # not a SELECT
        d = fails(conn, "SELECT shift.register_sql_reader('r', 'SELECT x, y FROM t ORDER BY id)')", sqlstate="42601")
        assert "column 31" in d.message_detail
        fails(conn, "SELECT shift.register_sql_reader('r', 'SELECT x, y FROM public.nope ORDER BY 1')",
              sqlstate="42P01")
        fails(conn, "SELECT shift.register_npz_reader('r', %s)", (str(cluster.home / "missing.npz"),), "58P01")
        fails(conn, "SELECT shift.register_npz_reader('r', 'relative.npz')", sqlstate="22023")
        assert counts(conn) == before


def _npz_variants(directory):
    """A damaged npz (one byte of x changed after writing: its CRC no longer matches), a truncated one, an
    empty file and random bytes, each readable by the server."""
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    good = directory / "good.npz"
    np.savez(good, x=np.arange(400, dtype=np.float32).reshape(100, 4), y=np.arange(100) % 3)
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        member = z.getinfo("x.npy")
    # the member's data start after its local header (30 bytes, the name, an extra field)
    name_len, extra_len = struct.unpack("<HH", raw[member.header_offset + 26:member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    damaged = bytearray(raw)
    damaged[start + 200] ^= 0xFF  # inside the float data, past the .npy header
    files = {"damaged": bytes(damaged), "truncated": bytes(raw[:len(raw) // 2]), "empty": b"",
             "random": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))}
    paths = {}
    for name, data in files.items():
        paths[name] = directory / ("%s.npz" % name)
        paths[name].write_bytes(data)
        paths[name].chmod(0o644)
    return paths


def test_damaged_npz_files_are_refused(db, registered, cluster):
    paths = _npz_variants(cluster.server_readable_dir("bad-npz"))
    with db.connect() as conn:
        before = counts(conn)
        d = fails(conn, "SELECT shift.register_npz_reader('r', %s)", (str(paths["damaged"]),), "22000")
        assert "damaged" in d.message_primary and "x.npy" in d.message_primary and "CRC" in d.message_detail
        for name in ("truncated", "empty", "random"):
            d = fails(conn, "SELECT shift.register_npz_reader('r', %s)", (str(paths[name]),), "22023")
            assert "not a readable npz" in d.message_primary, name
            assert "pickle" not in (d.message_detail or "") + (d.message_hint or ""), name
        assert counts(conn) == before


def test_bad_queries(db, registered):
    with db.connect() as conn:
        before = counts(conn)
        d = fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Models ORDER BY CosineN ASC LIMIT 1 "
                        "TESTED ON TestDigits TRAINED ON TrainDigits')", sqlstate="42704")
        assert "CosineNN" in d.message_hint
        d = fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 "
                        "TESTED ON TestDigitz TRAINED ON TrainDigits')", sqlstate="42704")
        assert "TestDigits" in d.message_hint
        fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Models ORDER BY LIMIT')", sqlstate="42601")
        fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Modelz')", sqlstate="42704")
        d = fails(conn, "SELECT * FROM shift.score('Linear', '{}', ARRAY['no-such-model'], 'TestDigits', "
                        "'TrainDigits')", sqlstate="42704")
        assert "no-such-model" in d.message_primary
        fails(conn, "SELECT * FROM shift.score('Linear', '{\"lr\": \"fast\"}', %s, 'TestDigits', 'TrainDigits')",
              (registered["models"],), "22023")
        assert counts(conn) == before


@pytest.fixture
def idle_db(cluster):
    """A second database with the extension and no worker of its own."""
    with Database(cluster, "shift_idle") as database:
        (train_x, train_y), _ = digits(n_train=40, n_test=0)
        with database.connect() as conn:
            conn.execute("SELECT shift.register_model('m', 'timm', 'resnet10t', options => "
                         "'{\"pretrained\": false, \"num_classes\": 3}')")
            conn.execute("CREATE TABLE public.t AS SELECT g AS id, ARRAY[g::real, 1] AS x, g % 2 AS y "
                         "FROM generate_series(1, 20) g")
            conn.execute("SELECT shift.register_sql_reader('R', 'SELECT x, y FROM public.t ORDER BY id')")
        yield database


Q_IDLE = "SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON R TRAINED ON R"


def test_no_worker_fails_fast(idle_db):
    with idle_db.connect() as conn:
        started = time.monotonic()
        d = fails(conn, "SELECT * FROM shift.query(%s)", (Q_IDLE,), "55000")
        assert time.monotonic() - started < 5
        assert "worker" in d.message_primary and "shift worker start" in d.message_hint
        assert conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0] == 0


@pytest.fixture
def frozen_worker(idle_db, cluster):
    """A real worker that registered and then stopped (SIGSTOP): alive by heartbeat, doing nothing."""
    w = WorkerProcess(idle_db.worker_dsn, cluster.home / "worker-frozen.log", "frozen").wait_ready()
    os.kill(w.proc.pid, signal.SIGSTOP)
    yield w
    os.kill(w.proc.pid, signal.SIGCONT)
    w.stop()


def test_statement_timeout_cancels_a_waiting_query(idle_db, frozen_worker):
    with idle_db.connect() as conn:
        conn.execute("SET statement_timeout = '1500ms'")
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as info:
            conn.execute("SELECT * FROM shift.query(%s)", (Q_IDLE,))
        assert time.monotonic() - started < 10
        diag = info.value.diag
        assert diag.sqlstate == "57014" and diag.message_primary == "canceling statement due to statement timeout"
        # the first task of a reader's first query: the validation of its source (fingerprints.py)
        assert diag.message_detail == ("work already done is kept: 0 of 1 tasks are done and cached, the other 1 "
                                       "stay queued and workers keep running them; the next query reuses their "
                                       "results")
        conn.execute("RESET statement_timeout")
        # the work stays queued for the next query; the session is usable
        assert conn.execute("SELECT kind FROM shift.tasks WHERE status = 'queued'").fetchall() == [("validate",)]


def _waiting_query(conn, other):
    """Q_IDLE run on `conn` in a thread, returned once its tasks list it as a waiter: (thread, outcome)."""
    outcome = {}

    def run():
        try:
            conn.execute("SELECT * FROM shift.query(%s)", (Q_IDLE,))
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not other.execute(
            "SELECT 1 FROM shift.tasks WHERE %s = ANY(waiters)", (conn.info.backend_pid,)).fetchone():
        time.sleep(0.1)
    return t, outcome


def test_cancel_interrupts_a_waiting_query(idle_db, frozen_worker):
    with idle_db.connect() as conn, idle_db.connect() as other:
        t, outcome = _waiting_query(conn, other)
        assert other.execute("SELECT pg_cancel_backend(%s)", (conn.info.backend_pid,)).fetchone()[0]
        t.join(timeout=10)
        assert not t.is_alive()
        error = outcome.get("error")
        assert isinstance(error, errors.QueryCanceled)
        assert error.diag.message_primary == "canceling statement due to user request"
        assert error.diag.message_detail.startswith("work already done is kept: 0 of 1 tasks are done")


def test_a_query_learns_that_its_only_worker_died(idle_db, cluster):
    """The worker is alive when the query starts and killed while it waits: 55000, not a wait without end."""
    w = WorkerProcess(idle_db.worker_dsn, cluster.home / "worker-doomed.log", "doomed").wait_ready()
    os.kill(w.proc.pid, signal.SIGSTOP)  # alive by its last heartbeat, and it takes no task
    try:
        with idle_db.connect() as conn, idle_db.connect() as other:
            t, outcome = _waiting_query(conn, other)
            os.kill(w.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            t.join(timeout=40)
            assert not t.is_alive(), "the query still waits 40 s after its only worker died"
            assert time.monotonic() - killed < 30
            error = outcome.get("error")
            assert error is not None and error.diag.sqlstate == "55000", error
            assert "no shift worker is alive" in error.diag.message_primary
    finally:
        w.proc.wait()
        w.stop()


def test_query_needs_read_committed(db, registered):
    with db.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # cached results need no waiting and are fine; uncached ones must not wait on a frozen snapshot
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT * FROM shift.score('Linear', '{\"lr\": 0.3, \"epochs\": 1}', %s, "
                         "'TestDigits', 'TrainDigits')", (registered["models"],))
        assert info.value.diag.sqlstate == "25000"


def _bad_reader_files(directory):
    """Files of every file kind that registration must refuse, each readable by the server."""
    rng = np.random.default_rng(0)
    noise = bytes(rng.integers(0, 256, 4096, dtype=np.uint8))
    good_x = directory / "x.npy"
    np.save(good_x, np.ones((10, 4), np.float32))
    gz = gzip.compress(bytes(b"a,label\n" + b"".join(b"%d,x\n" % v for v in rng.integers(0, 10 ** 6, 2000))))
    blobs = {"random.npy": noise, "cut.npy": good_x.read_bytes()[:-20], "empty.npy": b"",
             "cut.csv.gz": gz[:len(gz) // 2], "nan.csv": b"a,label\nnan,x\n",
             "tfds/dataset_info.json": noise, "tfds/features.json": b"{}"}
    (directory / "tfds").mkdir(exist_ok=True)
    (directory / "tfds").chmod(0o755)
    for name, data in blobs.items():
        (directory / name).write_bytes(data)
    np.save(directory / "objects.npy", np.array([{"a": 1}] * 10, dtype=object), allow_pickle=True)
    np.save(directory / "nan_y.npy", np.array([0.0, np.nan] * 5))
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return good_x


def test_bad_files_of_every_kind_are_refused_with_a_sqlstate(db, registered, cluster):
    directory = cluster.server_readable_dir("bad-files")
    good_x = str(_bad_reader_files(directory))
    npy = "SELECT shift.register_npy_reader('r', %s, %s)"
    cases = [(npy, (str(directory / "random.npy"), good_x), "22023", "magic string"),
             (npy, (good_x, str(directory / "cut.npy")), "22023", "cut short"),
             (npy, (str(directory / "empty.npy"), good_x), "22023", "is empty"),
             (npy, (str(directory / "objects.npy"), good_x), "22023", "Python objects"),
             (npy, (good_x, str(directory / "nan_y.npy")), "22000", "label of sample 1 is nan"),
             ("SELECT shift.register_csv_reader('r', %s)", (str(directory / "cut.csv.gz"),), "22023",
              "cannot be read"),
             ("SELECT shift.register_csv_reader('r', %s)", (str(directory / "nan.csv"),), "22000",
              "not a finite number"),
             ("SELECT shift.register_tfds_reader('r', %s)", (str(directory / "tfds"),), "22023", "not valid json")]
    with db.connect() as conn:
        before = counts(conn)
        for sql, args, sqlstate, said in cases:
            d = fails(conn, sql, args, sqlstate)
            everything = " ".join(t for t in (d.message_primary, d.message_detail, d.message_hint) if t)
            assert said in everything, (args, everything)
            assert "allow_pickle" not in everything and "trust" not in everything, args
        assert counts(conn) == before


def _ors(n):
    return "SELECT ModelId FROM Models WHERE " + " OR ".join("NumParams = %d" % i for i in range(n))


def test_a_huge_query_is_refused_before_it_is_parsed(db, registered):
    with db.connect() as conn:
        before = counts(conn)
        d = fails(conn, "SELECT * FROM shift.query(%s)", (_ors(500_000),), "54000")  # 10 MB
        assert "is longer than the limit of 262144" in d.message_primary
        d = fails(conn, "SELECT shift.translate(%s)", (_ors(11_000),), "54001")
        assert "more than the limit of 50000 syntax nodes" in d.message_primary
        fails(conn, "SELECT shift.translate(%s)", ("SELECT ModelId FROM Models WHERE " + "(" * 3000 + "1 = 1"
                                                  + ")" * 3000,), "54001")
        assert counts(conn) == before


def test_statement_timeout_cancels_a_long_translation(db, registered):
    text = _ors(9_000)  # within the limits, and seconds of work
    with db.connect() as conn:
        started = time.monotonic()
        conn.execute("SELECT shift.translate(%s)", (text,))
        whole = time.monotonic() - started
        conn.execute("SET statement_timeout = '300ms'")
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT shift.translate(%s)", (text,))
        cancelled = time.monotonic() - started
        conn.execute("RESET statement_timeout")
    # relative to the uncancelled run, which a loaded machine slows alike
    assert whole > 1.5 and cancelled < whole / 2, (whole, cancelled)


def test_a_non_finite_sample_fails_the_query_naming_it(db, registered, worker, cluster):
    x, y = registered["test"]
    x = np.array(x, dtype=np.float32)
    x[7].flat[3] = np.nan
    path = cluster.server_readable_dir("nan-npz") / "nan.npz"
    np.savez(path, x=x, y=y)
    path.chmod(0o644)
    with db.connect() as conn:
        conn.execute("SELECT shift.register_npz_reader('NanDigits', %s)", (str(path),))
        try:
            d = fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Models WHERE ModelId = ''%s'' "
                            "ORDER BY CosineNN LIMIT 1 TESTED ON NanDigits TRAINED ON TrainDigits')"
                      % registered["models"][0], sqlstate="38000")
            assert "sample 7 of reader NanDigits (file %s) holds a non-finite value (nan)" % path \
                in d.message_primary
        finally:
            conn.execute("SELECT shift.drop_reader('NanDigits')")
