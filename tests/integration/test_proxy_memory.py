"""A worker's proxy task over features far larger than shift.worker_memory_mb holds less than it.

A plain user registers a 5,000-sample SQL reader and scores a model by CosineNN and Linear; the
worker process infers and scores with the default bound. Then the same proxy tasks run again in
this process, as shift_worker, under a bound of 1 MB (a tenth of the training features), with
Python's allocations traced: the nearest-neighbour value is the same to the last bit, the linear
probe's (mini-batches from buffers of blocks) that of its streamed protocol over the same features.
"""

import tracemalloc

import numpy as np
import psycopg
import pytest

from gpu_daemon.worker import Worker, feature_blocks, read_features
from pyfuncs import proxies
from shift_cli.testbed import (Database, WorkerProcess, connect_as, digits, load_table, make_users,
                               register_model)
from tests.unit.test_proxy_memory import streamed

USER = "erin"  # the role of the module's user (the user fixture)

MB = 2 ** 20
TRAIN = 5000
BLOCK = 32


@pytest.fixture(scope="module")
def scored(cluster, zoo, user):
    """The user's readers (training: the digits five times over, with a little noise), each proxy's
    value as the worker process computed it, and the payloads of its proxy tasks."""
    model = "shapes10.resnet10t"
    with Database(cluster, "shift_proxy_memory") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            make_users(conn, [user])
        (x, y), (test_x, test_y) = digits(n_train=TRAIN // 5, n_test=200, seed=3)
        rng = np.random.default_rng(0)
        big_x = np.concatenate([x + rng.normal(scale=0.05, size=x.shape).astype(np.float32) for _ in range(5)])
        train, test = "%s_big" % user, "%s_small" % user
        with connect_as(database, user) as conn:
            for reader, xs, ys in ((train, big_x, np.tile(y, 5)), (test, test_x, test_y)):
                load_table(conn, "%s.%s" % (user, reader), xs, ys)
                conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM %s.%s ORDER BY id', "
                             "options => '{\"shape\": [8, 8]}', block_size => %d)" % (user, reader, BLOCK),
                             (reader,))
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-proxy-memory.log", "pm-worker").wait_ready()
        try:
            with connect_as(database, user) as conn:
                for scorer, params in (("CosineNN", "{}"), ("Linear", '{"lr": 0.1}')):
                    conn.execute("SELECT * FROM shift.score(%s, %s, ARRAY[%s], %s, %s)",
                                 (scorer, params, model, test, train))
        finally:
            worker.stop()
        with database.connect() as conn:
            payloads = {r[0]["proxy"]: r[0] for r in conn.execute(
                "SELECT payload FROM shift.tasks WHERE kind = 'proxy' AND payload->>'train_reader' = %s",
                (train,)).fetchall()}
            values = dict(conn.execute("SELECT proxy, value FROM shift.scores WHERE train_reader = %s",
                                       (train,)).fetchall())
        assert sorted(values) == sorted(payloads) == ["linear", "nn"]
        database.values, database.payloads = values, payloads
        yield database


def rerun_under(db, payload, memory_mb):
    """The worker's proxy task run again in this process under `memory_mb`: (value, peak traced bytes)."""
    worker = Worker(db.worker_dsn, device="cpu", worker_id="proxy-memory-test", job_runners=0)
    with psycopg.connect(db.worker_dsn, autocommit=True) as conn:
        worker.conn = conn
        conn.execute("SELECT set_config('shift.worker_memory_mb', %s, false)", (str(memory_mb),))
        key = (payload["proxy"], payload["model_id"], payload["train_reader"], payload["test_reader"])
        delete = ("DELETE FROM shift.scores WHERE proxy = %s AND model_id = %s AND train_reader = %s "
                  "AND test_reader = %s")
        with db.connect() as admin:
            admin.execute(delete, key)
        worker.run_proxy(None, payload)  # untraced: imports and first-use allocations are not held features
        with db.connect() as admin:
            admin.execute(delete, key)
        tracemalloc.start()
        try:
            worker.run_proxy(None, payload)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        value = conn.execute("SELECT value FROM shift.scores WHERE proxy = %s AND model_id = %s AND train_reader = %s "
                             "AND test_reader = %s", key).fetchone()[0]
        features = feature_blocks(conn, payload["model_id"], payload["train_reader"])
    return value, peak, features


@pytest.mark.parametrize("proxy", ["nn", "linear"])
def test_a_proxy_task_over_features_ten_times_the_bound_stays_under_it(scored, proxy):
    value, peak, features = rerun_under(scored, scored.payloads[proxy], 1)
    size = features.n * features.dim * 4
    print("%s: peak %.2f MB under a bound of 1 MB, training features %.2f MB" % (proxy, peak / MB, size / MB))
    assert features.n == TRAIN and size >= 9.5 * MB
    assert peak < MB
    if proxy == "nn":
        assert value == scored.values[proxy]  # the in-memory answer, to the last bit
        assert value > 0.3  # ten digit classes: chance is 0.1
    else:
        # the streamed protocol over the same features, blocks and seed, computed here from arrays
        payload = scored.payloads[proxy]
        with psycopg.connect(scored.worker_dsn) as conn:
            train_x, train_y = read_features(conn, payload["model_id"], payload["train_reader"])
            test_x, test_y = read_features(conn, payload["model_id"], payload["test_reader"])
        want = proxies.linear_accuracy_blocks(streamed(train_x, train_y, BLOCK), streamed(test_x, test_y, BLOCK),
                                              memory_bytes=MB, **payload["params"])
        assert value == want
