"""SHiFT-QL Q1-Q3 (seed 000 §3.2) end to end: a real cluster, the installed extension, a real worker."""

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.neighbors import KNeighborsClassifier

from gpu_daemon.models import load_model
from gpu_daemon.worker import read_features, read_logits

Q1 = "SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY UpstreamAccuracy DESC LIMIT 1"
Q2 = ("SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY CosineNN ASC LIMIT 1 "
      "TESTED ON TestDigits TRAINED ON TrainDigits")
Q3 = ("SELECT ModelId FROM Models WHERE Input == 'Vision' ORDER BY Linear(lr=0.1) ASC LIMIT 1 "
      "TESTED ON TestDigits TRAINED ON TrainDigits")


def query(conn, text):
    return conn.execute("SELECT rank, model_id, score, selected FROM shift.query(%s)", (text,)).fetchall()


def scores(conn, scorer, params, models):
    rows = conn.execute("SELECT model_id, score FROM shift.score(%s, %s, %s, 'TestDigits', 'TrainDigits')",
                        (scorer, json.dumps(params), models)).fetchall()
    return dict(rows)


def task_count(conn, kind=None):
    if kind is None:
        return conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
    return conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = %s", (kind,)).fetchone()[0]


def test_q1_ranks_by_upstream_accuracy_without_tasks(db, registered):
    with db.connect() as conn:
        before = task_count(conn)
        rows = query(conn, Q1)
        best = conn.execute("SELECT model_id, upstream_accuracy FROM shift.models "
                            "ORDER BY upstream_accuracy DESC, model_id LIMIT 1").fetchone()
        assert [(r[0], r[1], r[2]) for r in rows] == [(1, best[0], pytest.approx(best[1]))]
        assert task_count(conn) == before


def test_q2_q3_return_the_best_proxy_model(db, worker, registered):
    with db.connect() as conn:
        for text, scorer, params in ((Q2, "CosineNN", {}), (Q3, "Linear", {"lr": 0.1})):
            rows = query(conn, text)
            assert len(rows) == 1
            rank, model_id, value, _ = rows[0]
            every = scores(conn, scorer, params, registered["models"])
            assert set(every) == set(registered["models"])
            best = min(every.values())
            assert value == pytest.approx(best)
            assert model_id == min(m for m, v in every.items() if v == best)
            assert 0.0 <= value < 0.9  # an error rate, and better than chance on ten classes


def test_proxies_equal_scikit_learn_on_cached_features(db, worker, registered):
    """NN and linear proxy values equal an independent scikit-learn computation on the cached features."""
    models = registered["models"]
    with db.connect() as conn:
        cos = scores(conn, "CosineNNAccuracy", {}, models)
        euc = scores(conn, "EuclideanNN", {}, models)
        lin = scores(conn, "LinearAccuracy", {"lr": 0.05, "epochs": 3, "batch_size": 32}, models)
        for m in models:
            train_x, train_y = read_features(conn, m, "TrainDigits")
            test_x, test_y = read_features(conn, m, "TestDigits")
            assert train_x.shape[0] == 300 and test_x.shape[0] == 120
            np.testing.assert_array_equal(train_y, registered["train"][1])
            np.testing.assert_array_equal(test_y, registered["test"][1])
            for metric, got, as_error in (("cosine", cos[m], False), ("euclidean", euc[m], True)):
                knn = KNeighborsClassifier(n_neighbors=1, metric=metric, algorithm="brute").fit(train_x, train_y)
                acc = knn.score(test_x, test_y)
                assert got == pytest.approx(1 - acc if as_error else acc), (m, metric)
            clf = MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate="constant",
                                learning_rate_init=0.05, alpha=1e-4, batch_size=32, max_iter=3, momentum=0.0,
                                nesterovs_momentum=False, shuffle=True, random_state=0, tol=0.0,
                                n_iter_no_change=4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(train_x.astype(np.float64), train_y)
            assert lin[m] == pytest.approx(clf.score(test_x.astype(np.float64), test_y)), m


def test_second_run_creates_no_task(db, worker, registered):
    with db.connect() as conn:
        first = query(conn, Q2)
        tasks_before = conn.execute("SELECT max(task_id), count(*) FROM shift.tasks").fetchone()
        finished_before = conn.execute("SELECT max(finished_at) FROM shift.tasks").fetchone()[0]
        second = query(conn, Q2)
        assert [r[:3] for r in second] == [r[:3] for r in first]
        assert conn.execute("SELECT max(task_id), count(*) FROM shift.tasks").fetchone() == tasks_before
        assert conn.execute("SELECT max(finished_at) FROM shift.tasks").fetchone()[0] == finished_before


def test_another_proxy_reuses_features(db, worker, registered):
    with db.connect() as conn:
        query(conn, Q2)  # features of every model on both readers are cached now
        inference_before = task_count(conn, "inference")
        features_before = conn.execute("SELECT count(*), max(computed_at) FROM shift.features").fetchone()
        scores(conn, "EuclideanNNAccuracy", {}, registered["models"])
        scores(conn, "Linear", {"lr": 0.2, "epochs": 2}, registered["models"])
        assert task_count(conn, "inference") == inference_before
        assert conn.execute("SELECT count(*), max(computed_at) FROM shift.features").fetchone() == features_before


def test_translate_runs_directly_with_the_same_rows(db, worker, registered):
    with db.connect() as conn:
        for text in (Q1, Q2, Q3):
            sql = conn.execute("SELECT shift.translate(%s)", (text,)).fetchone()[0]
            direct = conn.execute(sql).fetchall()
            via_query = query(conn, text)
            assert [(r[0], pytest.approx(r[1])) for r in direct] == [(r[1], pytest.approx(r[2])) for r in via_query]


def test_results_carry_what_the_query_selected(db, worker, registered):
    with db.connect() as conn:
        rows = query(conn, "SELECT ModelId, NumParams FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 2")
        assert len(rows) == 2 and [r[0] for r in rows] == [1, 2]
        for _, model_id, _, selected in rows:
            n = conn.execute("SELECT num_params FROM shift.models WHERE model_id = %s", (model_id,)).fetchone()[0]
            assert selected["num_params"] == n


def test_source_logits_are_cached_beside_the_features(db, worker, registered):
    """Each feature block carries the model's logits of the same samples, equal to a direct forward pass."""
    with db.connect() as conn:
        query(conn, Q2)
        for m in registered["models"]:
            row = conn.execute("SELECT * FROM shift.models WHERE model_id = %s", (m,)).fetchone()
            names = [c.name for c in conn.execute("SELECT * FROM shift.models LIMIT 0").description]
            model = load_model(dict(zip(names, row)))
            logits = read_logits(conn, m, "TestDigits")
            assert logits.shape == (120, model.num_classes) and model.num_classes == dict(zip(names, row))["num_classes"]
            _, want = model.extract(model.preprocess(registered["test"][0]))
            np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
            features, _ = read_features(conn, m, "TestDigits")
            assert features.shape[0] == logits.shape[0]
