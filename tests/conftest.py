"""Fixtures for tests against a real PostgreSQL with the real extension and a real worker.

The cluster is a throwaway one (its own home under /tmp and a free port); the
extension files and the server-side Python come from `make install`, which
`make test` runs first. Databases are created and dropped by pytest-postgresql's
DatabaseJanitor.
"""

import pytest

from shift_cli.testbed import (ROOT, Database, WorkerProcess, register_digits, register_model,
                               start_scratch_cluster)


@pytest.fixture(scope="session")
def cluster():
    c = start_scratch_cluster("shift-test-")
    yield c
    c.remove()


@pytest.fixture(scope="session")
def db(cluster):
    with Database(cluster, "shift_test") as database:
        yield database


@pytest.fixture(scope="session")
def worker(db, cluster):
    w = WorkerProcess(db.worker_dsn, cluster.home / "worker-test.log", "test-worker").wait_ready()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def zoo():
    from shift_cli.zoo import build_zoo

    return build_zoo(ROOT / ".shift" / "test-zoo", profile="test")


@pytest.fixture(scope="session")
def registered(db, zoo, cluster):
    """The test zoo and two digits readers: TrainDigits (SQL over a table), TestDigits (.npz)."""
    with db.connect() as conn:
        for m in zoo:
            register_model(conn, m)
        (train_x, train_y), (test_x, test_y) = register_digits(conn, cluster, "TrainDigits", "TestDigits",
                                                               "digits_train")
    return {"models": [m["model_id"] for m in zoo], "train": (train_x, train_y), "test": (test_x, test_y)}
