"""Fine-tuning as a task of the system (seed 002 §4.3): shift.finetune, the FineTune scorer, Q5's history."""

import json
import time

import psycopg
import pytest

PARAMS = {"steps": 12, "batch_size": 32}


def finetune(conn, models, params=PARAMS, validation="TestDigits"):
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT model_id, test_accuracy, validation_accuracy, settings, seconds "
        "FROM shift.finetune(%s, 'TrainDigits', %s, 'TestDigits', %s)",
        (models, validation, json.dumps(params))).fetchall()}


def set_worker_setting(conn, name, value):
    """A setting of the database, read by the worker once its connection is new: it is ended, and it reconnects."""
    dbname = conn.info.dbname
    if value is None:
        conn.execute("ALTER DATABASE %s RESET %s" % (dbname, name))
    else:
        conn.execute("ALTER DATABASE %s SET %s = '%s'" % (dbname, name, value))
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'shift-worker' "
                 "AND datname = current_database()")
    deadline = time.monotonic() + 30
    while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shift-worker' "
                           "AND datname = current_database()").fetchone()[0]:
        assert time.monotonic() < deadline, "the worker did not reconnect"
        time.sleep(0.2)


def tasks(conn):
    return conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune'").fetchone()[0]


def test_finetune_records_the_protocol_and_reuses_it(db, worker, registered):
    models = registered["models"][:2]
    with db.connect() as conn:
        first = finetune(conn, models)
        assert list(first) == models
        for model, (test_acc, val_acc, settings, seconds) in first.items():
            assert test_acc > 0.3, model  # ten digit classes: chance is 0.1
            assert seconds > 0
            assert settings["learning_rates"] == [0.01, 0.001]
            (run,) = settings["runs"]
            tried = run["tried"]
            assert [t["lr"] for t in tried] == [0.01, 0.001]
            # the protocol keeps the learning rate with the best validation accuracy and reports its test accuracy
            best = max(tried, key=lambda t: t["validation_accuracy"])
            assert run["chosen_lr"] == best["lr"]
            assert (test_acc, val_acc) == (best["test_accuracy"], best["validation_accuracy"])
            assert settings["samples"] == {"train": 300, "validation": 120, "test": 120}
        stored = conn.execute(
            "SELECT model_id, test_accuracy, params FROM shift.finetune_results WHERE model_id = ANY(%s) "
            "AND train_reader = 'TrainDigits' AND params @> %s", (models, json.dumps(PARAMS))).fetchall()
        assert {r[0]: r[1] for r in stored} == {m: v[0] for m, v in first.items()}
        assert stored[0][2] == {"lr": 0.01, "lr_grid": 2, "steps": 12, "batch_size": 32, "repeats": 1, "seed": 0}

        before = tasks(conn)
        again = finetune(conn, list(reversed(models)))
        assert tasks(conn) == before  # recorded results are read back, nothing runs again
        assert list(again) == list(reversed(models))
        assert {m: v[0] for m, v in again.items()} == {m: v[0] for m, v in first.items()}
        one = conn.execute("SELECT model_id, test_accuracy FROM shift.finetune(ARRAY[%s], 'TrainDigits', "
                           "'TestDigits', 'TestDigits', %s)", (models[0], json.dumps(PARAMS))).fetchall()
        assert one == [(models[0], first[models[0]][0])]


def test_a_different_protocol_is_a_different_result(db, worker, registered):
    model = registered["models"][0]
    with db.connect() as conn:
        base = finetune(conn, [model])[model]
        repeated = finetune(conn, [model], dict(PARAMS, repeats=3, lr_grid=1))[model]
        runs = repeated[2]["runs"]
        assert [r["seed"] for r in runs] == [0, 1, 2]
        assert all(len(r["tried"]) == 1 for r in runs)
        # seed 002 §4.3: the median over runs
        assert repeated[0] == sorted(r["test_accuracy"] for r in runs)[1]
        assert runs[0]["tried"][0]["test_accuracy"] == base[2]["runs"][0]["tried"][0]["test_accuracy"]


def test_finetune_scorer_and_meta_learned_history(db, worker, registered):
    models = registered["models"]
    params = json.dumps(PARAMS)
    with db.connect() as conn:
        accuracy = {m: v[0] for m, v in finetune(conn, models).items()}
        best = max(accuracy.values())
        rows = conn.execute(
            "SELECT model_id, score FROM shift.query(%s)",
            ("SELECT ModelId FROM Models WHERE Input = 'Vision' ORDER BY FineTuneAccuracy(steps=12, batch_size=32) "
             "DESC LIMIT 1 TESTED ON TestDigits TRAINED ON TrainDigits",)).fetchall()
        assert rows == [(min(m for m, v in accuracy.items() if v == best), pytest.approx(best))]
        errors = dict(conn.execute("SELECT model_id, score FROM shift.score('FineTune', %s, %s, 'TestDigits', "
                                   "'TrainDigits')", (params, models)).fetchall())
        assert errors == {m: pytest.approx(1 - v) for m, v in accuracy.items()}
        # Q5's meta-learned form reads the same history, for any of the task's readers
        history = conn.execute(
            "SELECT model_id, reader_id, score FROM shift.benchmark_scores('FineTuneAccuracy', %s, %s, "
            "ARRAY['TrainDigits', 'TestDigits'])", (params, models)).fetchall()
        assert sorted(history) == sorted((m, r, pytest.approx(v)) for m, v in accuracy.items()
                                         for r in ("TestDigits", "TrainDigits"))
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no fine-tuning results"):
            conn.execute("SELECT * FROM shift.benchmark_scores('FineTune', '{\"steps\": 3}', %s, "
                         "ARRAY['TrainDigits'])", (models,))


def test_finetune_errors_leave_nothing_behind(db, worker, registered):
    model = registered["models"][0]
    with db.connect() as conn:
        before = tasks(conn)
        with pytest.raises(psycopg.errors.UndefinedObject, match="unknown model"):
            finetune(conn, ["no-such-model"])
        with pytest.raises(psycopg.errors.UndefinedObject, match="unknown reader"):
            conn.execute("SELECT * FROM shift.finetune(ARRAY[%s], 'TrainDigits', 'Nope', 'TestDigits')", (model,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="parameter steps"):
            finetune(conn, [model], {"steps": 0})
        with pytest.raises(psycopg.errors.UndefinedObject, match="unknown parameter"):
            finetune(conn, [model], {"epochs": 2})
        conn.execute("CREATE TABLE public.letters_ft (id int, x real[], y int)")
        conn.execute("INSERT INTO public.letters_ft SELECT i, array_fill(0.5::real, ARRAY[64]), 10 + i % 2 "
                     "FROM generate_series(0, 9) i")
        conn.execute("SELECT shift.register_sql_reader('LettersFT', 'SELECT x, y FROM public.letters_ft ORDER BY id', "
                     "options => '{\"shape\": [8, 8]}')")
        try:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="classes that train reader TrainDigits lacks"):
                conn.execute("SELECT * FROM shift.finetune(ARRAY[%s], 'TrainDigits', 'LettersFT', 'TestDigits')",
                             (model,))
        finally:
            conn.execute("SELECT shift.drop_reader('LettersFT')")
            conn.execute("DROP TABLE public.letters_ft")
        assert tasks(conn) == before


def test_fine_tuning_streams_its_reader_under_shift_worker_memory_mb(db, worker, registered):
    """TrainDigits is 300 samples of 64 floats in blocks of 128: under 0.1 MB the worker holds one block."""
    model = registered["models"][0]
    params = dict(PARAMS, seed=7)  # a result of its own
    with db.connect() as conn:
        set_worker_setting(conn, "shift.worker_memory_mb", "0.1")
        try:
            test_acc, _, settings, _ = finetune(conn, [model], params)[model]
        finally:
            set_worker_setting(conn, "shift.worker_memory_mb", None)
    assert settings["memory"] == {"streamed": True, "limit_mb": pytest.approx(0.05, rel=1e-3), "buffer_samples": 128,
                                  "head_samples": settings["memory"]["head_samples"]}
    assert settings["memory"]["head_samples"] < 300 and settings["samples"]["train"] == 300
    assert test_acc > 0.2  # ten digit classes: chance is 0.1
