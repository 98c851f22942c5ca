"""Fixtures for tests against a real PostgreSQL with the real extension and a real worker.

The cluster is a throwaway one (its own home under /tmp and a free port); the
extension files and the server-side Python come from `make install`, which
`make test` runs first. Databases are created and dropped by pytest-postgresql's
DatabaseJanitor.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from shift_cli.testbed import Database, ROOT, WorkerProcess, copy_samples, digits, free_port, register_model


@pytest.fixture(scope="session")
def cluster():
    from shift_cli.cluster import Cluster

    home = Path(tempfile.mkdtemp(prefix="shift-test-", dir="/tmp"))
    home.chmod(0o755)
    c = Cluster(home=home, port=free_port(), fast=True)
    c.start()
    yield c
    c.remove()


@pytest.fixture(scope="session")
def db(cluster):
    with Database(cluster, "shift_test") as database:
        yield database


@pytest.fixture(scope="session")
def worker(db, cluster):
    w = WorkerProcess(db.dsn, cluster.home / "worker-test.log", "test-worker").wait_ready()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def zoo():
    from shift_cli.zoo import build_zoo

    return build_zoo(ROOT / ".shift" / "test-zoo", profile="test")


@pytest.fixture(scope="session")
def registered(db, zoo, cluster):
    """The test zoo and two digits readers: TrainDigits (SQL over a table), TestDigits (.npz)."""
    (train_x, train_y), (test_x, test_y) = digits()
    data_dir = cluster.home / "data"
    data_dir.mkdir(exist_ok=True)
    data_dir.chmod(0o755)
    npz = data_dir / "digits_test.npz"
    np.savez(npz, x=test_x, y=test_y)
    npz.chmod(0o644)
    with db.connect() as conn:
        for m in zoo:
            register_model(conn, m)
        conn.execute("CREATE TABLE public.digits_train (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)")
        copy_samples(conn, "digits_train", train_x, train_y)
        conn.execute("SELECT shift.register_sql_reader('TrainDigits', "
                     "'SELECT x, y FROM public.digits_train ORDER BY id', options => '{\"shape\": [8, 8]}', "
                     "block_size => 128)")
        conn.execute("SELECT shift.register_npz_reader('TestDigits', %s, block_size => 64)", (str(npz),))
    return {"models": [m["model_id"] for m in zoo], "train": (train_x, train_y), "test": (test_x, test_y)}
