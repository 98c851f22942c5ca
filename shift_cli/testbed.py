"""What the tests, the benchmarks and the demo share on a local cluster: databases, worker processes, data.

`Database` uses pytest-postgresql's janitor (the `test` extra) to create and drop
a database; everything else needs only the package's own dependencies.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg

from psycopg import sql
from psycopg.conninfo import make_conninfo

from .cluster import Cluster, allow_worker_login, project_root

ROOT = project_root()
# the keyword arguments of shift.register_model, which every zoo manifest entry holds
REGISTER_MODEL_ARGS = ("model_id", "source", "locator", "checkpoint", "input", "upstream_dataset",
                       "upstream_accuracy", "num_params", "feature_dim", "input_size", "architecture", "options")


def start_scratch_cluster(prefix):
    """A throwaway cluster, started: its own home under /tmp (that the server's OS user can enter), a free
    port, fsync off. The caller removes it (`cluster.remove()`)."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o755)
    cluster = Cluster(home=home, port=free_port(), fast=True)
    cluster.start()
    return cluster


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Database:
    """One test database with the extension installed."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.dsn = cluster.dsn(name)
        self.worker_dsn = cluster.worker_dsn(name)
        from pytest_postgresql.janitor import DatabaseJanitor

        self.janitor = DatabaseJanitor(user="postgres", host=str(cluster.socket_dir.resolve()),
                                       port=cluster.port, dbname=name)

    def __enter__(self):
        self.janitor.init()
        with self.connect() as conn:
            conn.execute("CREATE EXTENSION shift CASCADE")
            allow_worker_login(conn)
        return self

    def __exit__(self, *exc):
        self.janitor.drop()

    def connect(self, **kwargs):
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)


class WorkerProcess:
    """A real `python -m gpu_daemon` process on one database."""

    def __init__(self, dsn, log_path, worker_id, *extra_args):
        self.dsn = dsn
        self.worker_id = worker_id
        self.log = open(log_path, "w")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_daemon", "--dsn", dsn, "--device", "cpu", "--worker-id", worker_id, *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("worker exited with %s; see %s" % (self.proc.returncode, self.log.name))
                if conn.execute("SELECT 1 FROM shift.live_workers WHERE worker_id = %s", (self.worker_id,)).fetchone():
                    return self
                time.sleep(0.2)
        raise RuntimeError("worker %s did not register within %ss" % (self.worker_id, timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def digits(n_train=300, n_test=120, seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))[: n_train + n_test]
    x = (d.images[order] / 16.0).astype(np.float32)
    y = d.target[order].astype(np.int64)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def copy_samples(conn, table, xs, ys):
    """Rows (id, x, y) of a table `public.<table>(id integer, x real[], y integer)` from arrays, by COPY;
    a qualified name (`schema.table`) is taken as it is."""
    with conn.cursor().copy("COPY %s (id, x, y) FROM STDIN" % (table if "." in table else "public." + table)) as copy:
        for i, (x, y) in enumerate(zip(xs, ys)):
            copy.write_row((i, np.asarray(x).ravel().tolist(), int(y)))


def register_digits(conn, cluster, train_reader, test_reader, table):
    """digits() as two readers: `train_reader` by SQL over table public.<table>, `test_reader` an .npz file.

    Returns ((train_x, train_y), (test_x, test_y)).
    """
    (train_x, train_y), (test_x, test_y) = digits()
    npz = cluster.server_readable_dir("data") / ("%s_%s.npz" % (conn.info.dbname, test_reader.lower()))
    np.savez(npz, x=test_x, y=test_y)
    npz.chmod(0o644)
    conn.execute("CREATE TABLE public.%s (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)" % table)
    copy_samples(conn, table, train_x, train_y)
    conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM public.%s ORDER BY id', "
                 "options => '{\"shape\": [8, 8]}', block_size => 128)" % table, (train_reader,))
    conn.execute("SELECT shift.register_npz_reader(%s, %s, block_size => 64)", (test_reader, str(npz)))
    return (train_x, train_y), (test_x, test_y)


def register_model(conn, m):
    """shift.register_model with the keyword arguments of a zoo manifest entry (missing ones NULL)."""
    m = {k: m.get(k) for k in REGISTER_MODEL_ARGS}
    conn.execute(
        "SELECT shift.register_model(%(model_id)s, %(source)s, %(locator)s, checkpoint => %(checkpoint)s, "
        "input => %(input)s, upstream_dataset => %(upstream_dataset)s, upstream_accuracy => %(upstream_accuracy)s, "
        "num_params => %(num_params)s, feature_dim => %(feature_dim)s, input_size => %(input_size)s, "
        "architecture => %(architecture)s, options => %(options)s)",
        dict(m, input=m["input"] or "Vision", options=psycopg.types.json.Jsonb(m["options"] or {})))


# -- several users on one database (see tests/integration/test_privileges.py) ----------------------------

USER_PASSWORD = "pw-" + uuid.uuid4().hex  # of the login roles user_roles() makes, for this process
USER_PROXY_QUERY = ("SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY CosineNN LIMIT 3 "
                    "TESTED ON {test} TRAINED ON {train}")


@contextmanager
def user_roles(cluster, kinds=("alice", "bob", "carol")):
    """Login roles of the cluster with SCRAM passwords, named `<kind>_<suffix>`: {kind: name}; dropped after."""
    suffix = uuid.uuid4().hex[:6]
    names = {k: "%s_%s" % (k, suffix) for k in kinds}
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                           sql.Literal(USER_PASSWORD)))
    try:
        yield names
    finally:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def make_users(conn, names):
    """Each role a user of shift (shift.grant_usage) with a schema of its own, named after it."""
    for name in names:
        conn.execute("SELECT shift.grant_usage(%s::regrole)", (name,))
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(*[sql.Identifier(name)] * 2))


def connect_as(database, role, **kwargs):
    """A connection to `database` logged in as one of user_roles()."""
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(make_conninfo(database.dsn, user=role, password=USER_PASSWORD), **kwargs)


def load_table(conn, table, xs, ys):
    """A new table (id, x real[], y) holding samples, by COPY."""
    conn.execute("CREATE TABLE %s (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)" % table)
    copy_samples(conn, table if "." in table else "public." + table, xs, ys)


def register_digits_as(conn, schema, train, test):
    """Two SQL readers over tables of the role's own schema."""
    (train_x, train_y), (test_x, test_y) = digits(n_train=160, n_test=60)
    for reader, table, xs, ys in ((train, "train", train_x, train_y), (test, "test", test_x, test_y)):
        load_table(conn, "%s.%s" % (schema, table), xs, ys)
        conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM %s.%s ORDER BY id', "
                     "options => '{\"shape\": [8, 8]}', block_size => 64)" % (schema, table), (reader,))


def sqlstate(conn, statement, params=None):
    """The SQLSTATE a statement fails with; an AssertionError when it does not fail."""
    try:
        conn.execute(statement, params)
    except psycopg.Error as e:
        return e.diag.sqlstate
    raise AssertionError("%s did not fail" % statement)


def store_task_embedding(conn, reader_id, fisher, probe, scale=None, **settings):
    """A Task2Vec embedding written as a worker writes it (the connection needs shift_worker's or an
    admin's rights), with the default Task2Vec settings but `probe` and `settings`: what a query with
    those settings then reads instead of queuing a datasim task. For fixtures whose readers are no
    images a probe can read."""
    from pyfuncs import embeddings, scorers

    chosen = {k: v for k, v in scorers.get("Task2Vec").resolve(settings).items() if k in scorers.TASK2VEC_SETTINGS}
    chosen["probe"] = probe
    fisher = np.asarray(fisher, dtype=np.float64)
    scale = np.ones_like(fisher) if scale is None else np.asarray(scale, dtype=np.float64)
    embeddings.check(fisher, scale)
    index = embeddings.index_vector(fisher, scale)
    conn.execute(
        "INSERT INTO shift.task_embeddings (reader_id, reader_version, kind, settings, source_signature, dim, "
        "embedding, scale, index_vector, num_samples, seconds, device) VALUES (%s, shift._reader_version(%s), "
        "'task2vec', %s, %s, %s, %s, %s, %s::vector, 1, 0, 'fixture')",
        (reader_id, reader_id, psycopg.types.json.Jsonb(chosen), reader_signature(conn, reader_id), len(fisher),
         fisher.tolist(), scale.tolist(), "[%s]" % ",".join(repr(float(v)) for v in index)))


def reader_signature(conn, reader_id):
    """pyfuncs.fingerprints.content_signature of a reader's data as it is now, as a query computes it."""
    from pyfuncs import fingerprints, versions

    rows = conn.cursor(row_factory=psycopg.rows.dict_row)
    reader = rows.execute("SELECT * FROM shift.readers WHERE reader_id = %s", (reader_id,)).fetchone()
    sources = rows.execute("SELECT * FROM shift.readers WHERE reader_id = ANY(%s)",
                           (versions.source_ids(reader),)).fetchall()
    digest = lambda r: conn.execute("SELECT shift._reader_digest(current_user, %s)", (r,)).fetchone()[0]  # noqa: E731
    return fingerprints.content_signature({s["reader_id"]: fingerprints.source_signature(s, digest) for s in sources})
