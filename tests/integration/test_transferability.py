"""The transferability metrics as scorers on the real cluster: a user ranks models by them in SHiFT-QL, and
each value equals the metric's pure function on the features (or logits) the worker cached.

A non-superuser user owns the readers (SQL readers over its own tables); the worker logs in as shift_worker.
"""

import json

import numpy as np
import psycopg
import pytest

from gpu_daemon.worker import read_features, read_logits
from pyfuncs import transferability as T
from pyfuncs.transferability import etran, ncti
from shift_cli.testbed import (Database, WorkerProcess, connect_as, load_table, make_users, register_digits_as,
                               register_model)
from tests.integration.test_finetune import set_worker_setting

USER = "tina"  # the role of the module's user (the user fixture)

# scorer -> (parameters, the pure function on (features, labels), on the logits)
METRICS = {
    "LogME": ({}, lambda f, y: T.logme(f, y)),
    "HScore": ({}, lambda f, y: T.h_score(f, y)),
    "ShrinkageHScore": ({}, lambda f, y: T.shrinkage_h_score(f, y)),
    "GBC": ({"gaussian_type": "spherical"}, lambda f, y: T.gbc(f, y, "spherical")),
    "TransRate": ({}, lambda f, y: T.transrate(f, y)),
    "SFDA": ({}, lambda f, y: T.sfda(f, y)),
    "NLEEP": ({"component_ratio": 2}, lambda f, y: T.nleep(f, y, component_ratio=2)),
    "KNNLeaveOneOut": ({"k": 3}, lambda f, y: T.knn_accuracy(f, y, k=3)),
}
ON_LOGITS = {
    "LEEP": lambda z, y: T.leep(softmax(z), y),
    "NCE": lambda z, y: T.nce(np.argmax(z, axis=1), y),
}


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tdb(cluster, zoo, user):
    with Database(cluster, "shift_transferability") as database:
        with database.connect() as conn:
            for m in zoo[:3]:
                register_model(conn, m)
            make_users(conn, [user])
        with connect_as(database, user) as conn:
            register_digits_as(conn, user, "Digits", "DigitsTest")
            load_table(conn, "%s.single" % user, np.random.default_rng(0).random((40, 8, 8), dtype=np.float32),
                       np.full(40, 3))
            conn.execute("SELECT shift.register_sql_reader('OneClass', 'SELECT x, y FROM %s.single ORDER BY id', "
                         "options => '{\"shape\": [8, 8]}', block_size => 16)" % user)
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-transferability.log",
                               "tr-worker").wait_ready()
        try:
            database.models = [m["model_id"] for m in zoo[:3]]
            yield database
        finally:
            worker.stop()


def scores(conn, scorer, params, models, reader="Digits"):
    return dict(conn.execute("SELECT model_id, score FROM shift.score(%s, %s, %s, %s, %s)",
                             (scorer, json.dumps(params), models, reader, reader)).fetchall())


def test_a_user_ranks_models_by_logme_in_shiftql(tdb, user):
    with connect_as(tdb, user) as conn:
        rows = conn.execute("SELECT model_id, score FROM shift.query(%s)", (
            "SELECT ModelId FROM Models ORDER BY LogME DESC LIMIT 2 TESTED ON Digits TRAINED ON Digits",)).fetchall()
        every = scores(conn, "LogME", {}, tdb.models)
    best = sorted(every, key=lambda m: (-every[m], m))[:2]
    assert [r[0] for r in rows] == best and [r[1] for r in rows] == pytest.approx([every[m] for m in best])


def test_every_metric_equals_its_function_on_the_cached_features(tdb, user):
    with connect_as(tdb, user) as conn:
        got = {name: scores(conn, name, params, tdb.models) for name, (params, _) in METRICS.items()}
        got.update({name: scores(conn, name, {}, tdb.models) for name in ON_LOGITS})
    with tdb.connect() as conn:
        for model in tdb.models:
            f, y = read_features(conn, model, "Digits")
            logits = read_logits(conn, model, "Digits")
            assert f.shape == (160, f.shape[1]) and logits is not None
            for name, (_, metric) in METRICS.items():
                assert got[name][model] == pytest.approx(metric(f, y), rel=1e-9, abs=1e-12), (name, model)
            for name, metric in ON_LOGITS.items():
                assert got[name][model] == pytest.approx(metric(logits, y), rel=1e-9, abs=1e-12), (name, model)
    assert len({round(v, 12) for v in got["LogME"].values()}) == len(tdb.models)  # the models are told apart


def test_pool_relative_metrics_combine_cached_terms_over_the_pool_ranked(tdb, user):
    """NCTI and ETran normalise their terms over the models ranked: the same model scores differently in
    another pool, from the same cached terms (no task runs for the smaller pool)."""
    with connect_as(tdb, user) as conn:
        whole = {name: scores(conn, name, {}, tdb.models) for name in ("NCTI", "ETran")}
        tasks = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
        pair = {name: scores(conn, name, {}, tdb.models[:2]) for name in ("NCTI", "ETran")}
        assert conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0] == tasks
        best = conn.execute("SELECT model_id FROM shift.query(%s)", (
            "SELECT ModelId FROM Models ORDER BY ETran DESC LIMIT 1 TESTED ON Digits TRAINED ON Digits",)).fetchall()
    with tdb.connect() as conn:
        arrays = {m: read_features(conn, m, "Digits") for m in tdb.models}
    for name, terms, combine in (("NCTI", T.ncti_terms, ncti.combine), ("ETran", T.etran_terms, etran.combine)):
        raw = [terms(*arrays[m]) for m in tdb.models]
        assert list(whole[name].values()) == pytest.approx(combine(raw), abs=1e-9), name
        assert list(pair[name].values()) == pytest.approx(combine(raw[:2]), abs=1e-9), name
    assert best == [(max(whole["ETran"], key=whole["ETran"].get),)]


def test_relative_values_share_the_cached_metric(tdb, user):
    with connect_as(tdb, user) as conn:
        raw = scores(conn, "TransRate", {}, tdb.models)
        tasks = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
        rows = conn.execute("SELECT model_id, score FROM shift.query(%s)", (
            "SELECT ModelId FROM Models ORDER BY TransRate(relative=true) DESC LIMIT 3 "
            "TESTED ON Digits TRAINED ON Digits",)).fetchall()
        assert conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0] == tasks
    low, high = min(raw.values()), max(raw.values())
    assert rows == [(m, pytest.approx((raw[m] - low) / (high - low))) for m in sorted(raw, key=lambda m: -raw[m])]
    assert rows[0][1] == 1.0 and rows[-1][1] == 0.0


def test_a_metric_over_the_memory_bound_says_which_setting_to_raise(tdb, user):
    with tdb.connect() as conn:
        set_worker_setting(conn, "shift.worker_memory_mb", "0.1")
    try:
        with connect_as(tdb, user) as conn:
            with pytest.raises(psycopg.Error) as info:
                scores(conn, "NLEEP", {"seed": 7}, tdb.models[:1])
            assert info.value.diag.sqlstate == "38000" and "over shift.worker_memory_mb" in str(info.value)
            # one attempt: a setting to change is not retried as a transient failure
            assert conn.execute("SELECT attempts FROM shift.tasks WHERE kind = 'proxy' AND payload->>'proxy' = 'nleep' "
                                "AND payload->'params'->>'seed' = '7'").fetchone() == (1,)
    finally:
        with tdb.connect() as conn:
            set_worker_setting(conn, "shift.worker_memory_mb", None)


def test_a_metric_that_cannot_score_the_reader_says_why(tdb, user):
    with connect_as(tdb, user) as conn:
        with pytest.raises(psycopg.Error) as info:
            scores(conn, "SFDA", {}, tdb.models[:1], reader="OneClass")
        assert info.value.diag.sqlstate == "38000"
        assert "1 class among the samples; the metric needs at least 2" in info.value.diag.message_primary
        assert conn.execute("SELECT count(*) FROM shift.scores WHERE train_reader = 'OneClass'").fetchone() == (0,)
