"""Task2Vec on the real cluster (seed 000 §3.2 Q5, §3.3-§3.4): datasim tasks, dataset similarity views, errors.

A non-superuser user owns every reader (SQL readers over tables of its schema); the
worker logs in as shift_worker. The probe is the smallest zoo model, named by the
database's shift.task2vec_probe. Readers are tiny: TestReader and BenchDigits are
two draws of the digits, BenchNoise is noise with random labels; the fine-tune
history is recorded through shift.finetune with a short protocol.
"""

import json
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pyfuncs import embeddings
from shift_cli.testbed import (USER_PASSWORD, Database, WorkerProcess, connect_as, digits, load_table, make_users,
                               register_model)
from tests.shiftql_corpus import Q5 as SEED_Q5

USER = "t2v"  # the role of the module's user (the user fixture)

PROBE = "shapes10.regnetx-002"
SHORT = {"steps": 2, "batch_size": 16}  # the fine-tuning protocol of the recorded history
# Q5 of seed 000 §3.2, with the short protocol the recorded history was made by
Q5 = SEED_Q5.replace("ORDER BY FineTune LIMIT", "ORDER BY FineTune(steps=2, batch_size=16) LIMIT")


def register(conn, schema, reader, xs, ys, input="Vision"):
    load_table(conn, "%s.%s" % (schema, reader.lower()), xs, ys)
    conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM %s.%s ORDER BY id', "
                 "options => '{\"shape\": [8, 8]}', block_size => 32, input => %%s)" % (schema, reader.lower()),
                 (reader, input))


@pytest.fixture(scope="module")
def t2v(cluster, zoo, user):
    with Database(cluster, "shift_task2vec") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            register_model(conn, dict(model_id="tabnet-s", source="onnx", locator="/models/tabnet.onnx",
                                      input="Tabular"))
            make_users(conn, [user])
            conn.execute("ALTER DATABASE %s SET shift.task2vec_probe = '%s'" % (database.name, PROBE))
        (x, y), (x2, y2) = digits(n_train=64, n_test=64)
        rng = np.random.default_rng(0)
        with connect_as(database, user) as conn:
            register(conn, user, "TestReader", x, y)
            register(conn, user, "BenchDigits", x2, y2)
            register(conn, user, "BenchNoise", rng.random((64, 8, 8), dtype=np.float32), rng.integers(0, 10, 64))
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-task2vec.log", "t2v-worker").wait_ready()
        try:
            with connect_as(database, user) as conn:  # the benchmark history: the short protocol, for real
                for bench in ("BenchDigits", "BenchNoise"):
                    conn.execute("SELECT * FROM shift.finetune(%s, %s, %s, %s, %s)",
                                 ([m["model_id"] for m in zoo[:2]], bench, bench, bench, json.dumps(SHORT)))
            yield database
        finally:
            worker.stop()


def datasim_tasks(conn):
    return conn.execute("SELECT task_id, status, finished_at FROM shift.tasks WHERE kind = 'datasim' "
                        "ORDER BY task_id").fetchall()


def test_q5_computes_the_embeddings_then_ranks_by_the_nearest_tasks_history(t2v, user):
    with connect_as(t2v, user) as conn:
        rows = conn.execute("SELECT model_id, score FROM shift.query(%s)", (Q5,)).fetchall()
        made = conn.execute("SELECT reader_id, reader_version = shift._reader_version(reader_id), dim, settings, "
                            "num_samples, device FROM shift.task_embeddings ORDER BY reader_id").fetchall()
        assert [r[0] for r in made] == ["BenchDigits", "BenchNoise", "TestReader"]
        assert all(r[1] for r in made) and len({r[2] for r in made}) == 1 and all(r[4] == 64 for r in made)
        assert made[0][3] == {"probe": PROBE, "method": "montecarlo", "skip_layers": 0, "max_samples": 1000,
                              "batch_size": 64, "epochs": 1, "seed": 0}
        tasks = datasim_tasks(conn)
        assert len(tasks) == 3 and all(t[1] == "done" for t in tasks)
        near = conn.execute("SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', '{}', "
                            "ARRAY['BenchDigits', 'BenchNoise'], 'TestReader') ORDER BY score").fetchall()
        assert near[0][0] == "BenchDigits"  # two draws of the digits are nearer than noise
        history = dict(conn.execute(
            "SELECT model_id, test_accuracy FROM shift.finetune_results WHERE test_reader = %s AND params @> %s",
            (near[0][0], json.dumps(SHORT))).fetchall())
        best = max(history.values())
        assert rows == [(min(m for m, a in history.items() if a == best), pytest.approx(1 - best))]
        # a second run computes no new datasim task
        again = conn.execute("SELECT model_id, score FROM shift.query(%s)", (Q5,)).fetchall()
        assert again == rows and datasim_tasks(conn) == tasks


def test_dataset_similarity_view_from_sql_and_inside_a_model_query(t2v, user):
    with connect_as(t2v, user) as conn:
        conn.execute("SELECT * FROM shift.query(%s)", (
            "CREATE DATASET SIMILARITY VIEW %s.near AS SELECT DataReaderId FROM DataReaders "
            "ORDER BY Task2Vec ASC LIMIT 1 TESTED AGAINST TestReader" % user,))
        view = conn.execute("SELECT * FROM %s.near" % user).fetchall()
        direct = conn.execute("SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', '{}', "
                              "ARRAY['BenchDigits', 'BenchNoise'], 'TestReader') ORDER BY score LIMIT 1").fetchall()
        assert view == [(direct[0][0], pytest.approx(direct[0][1]))]
        rows = conn.execute("SELECT model_id, score FROM shift.query(%s)", (
            "SELECT ModelId FROM Models WHERE Input = 'Vision' AND Readers.ReaderId IN %s.near "
            "ORDER BY FineTune(steps=2, batch_size=16) LIMIT 1" % user,)).fetchall()
        assert rows == conn.execute("SELECT model_id, score FROM shift.query(%s)", (Q5,)).fetchall()
        plan = dict(conn.execute("SELECT section, content FROM shift.explain(%s)", (
            "SELECT ModelId FROM Models WHERE Input IN (SELECT Input FROM DataReaders ORDER BY Task2Vec LIMIT 1 "
            "TESTED AGAINST TestReader)",)).fetchall())
        assert "index: hnsw" in plan["tree"]
        plan = dict(conn.execute("SELECT section, content FROM shift.explain(%s)", (
            "SELECT ModelId FROM Models WHERE Input IN (SELECT Input FROM DataReaders ORDER BY "
            "Task2Vec(distance='symmetric') LIMIT 1 TESTED AGAINST TestReader)",)).fetchall())
        assert "index: none" in plan["tree"]
        conn.execute("SELECT shift.drop_view(%s)", ("%s.near" % user,))


def test_task_distances_and_the_settings_mismatch(t2v, user):
    with connect_as(t2v, user) as conn:
        conn.execute("SELECT * FROM shift.dataset_similarity('Task2Vec', '{\"max_samples\": 32}', "
                     "ARRAY['BenchDigits'], 'TestReader')").fetchall()
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute("SELECT shift.task_distance('TestReader', 'BenchDigits', settings_a => "
                         "'{\"max_samples\": 1000}', settings_b => '{\"max_samples\": 32}')")
        assert "differ in setting max_samples: 1000 and 32" in info.value.diag.message_primary
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT reader_id, embedding, scale FROM shift.task_embeddings WHERE settings @> '{\"max_samples\": 32}'")}
        a, b = ({"embedding": np.asarray(rows[r][0]), "scale": np.asarray(rows[r][1])} for r in ("TestReader",
                                                                                                  "BenchDigits"))
        same = "'{\"max_samples\": 32}'"
        for distance in embeddings.DISTANCES:
            got = conn.execute("SELECT shift.task_distance('TestReader', 'BenchDigits', %%s, 0.3, %s, %s)"
                               % (same, same), (distance,)).fetchone()[0]
            assert got == pytest.approx(embeddings.distance(distance, a, b, 0.3), rel=1e-6)
        ranked = conn.execute("SELECT score FROM shift.dataset_similarity('Task2Vec', "
                              "'{\"max_samples\": 32, \"distance\": \"asymmetric\", \"alpha\": 0.3}', "
                              "ARRAY['BenchDigits'], 'TestReader')").fetchone()[0]
        assert ranked == pytest.approx(embeddings.distance("asymmetric", a, b, 0.3), rel=1e-6)


def test_a_changed_table_behind_a_reader_has_it_embedded_again(t2v, user):
    """The rows of a SQL reader change: its embedding is computed again from them and replaces the old one;
    the other readers' embeddings stay, and the next query computes nothing."""
    params = json.dumps({"max_samples": 48})  # settings of this test's own

    def near(conn):
        return dict(conn.execute("SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', %s, "
                                 "ARRAY['BenchDigits', 'BenchNoise'], 'TestReader')", (params,)).fetchall())

    def stored(conn):
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT reader_id, source_signature, embedding FROM shift.task_embeddings WHERE settings @> %s",
            (params,))}

    def embedded(conn, since):
        return sorted(r[0] for r in conn.execute(
            "SELECT payload->>'reader_id' FROM shift.tasks WHERE kind = 'datasim' AND task_id > %s", (since,)))

    with connect_as(t2v, user) as conn:
        first, before = near(conn), stored(conn)
        last = max(t[0] for t in datasim_tasks(conn))
        assert near(conn) == first and embedded(conn, last) == []
        conn.execute("UPDATE %s.benchnoise SET x = array_fill(0.5::real, ARRAY[64]) WHERE id < 20" % user)
        second, after = near(conn), stored(conn)
        assert embedded(conn, last) == ["BenchNoise"]
        assert after["BenchNoise"][0] != before["BenchNoise"][0] and after["BenchNoise"][1] != before["BenchNoise"][1]
        assert after["BenchDigits"] == before["BenchDigits"] and after["TestReader"] == before["TestReader"]
        assert second["BenchNoise"] != first["BenchNoise"] and second["BenchDigits"] == first["BenchDigits"]
        assert near(conn) == second and embedded(conn, last) == ["BenchNoise"]


def test_a_changed_table_behind_a_reader_has_its_models_fine_tuned_again(t2v, user):
    """A fine-tuning result records the data it was computed on: after an UPDATE of the table behind the
    train reader, shift.finetune fine-tunes again and replaces the row; unchanged, it reads the row back."""
    model = PROBE

    def tune(conn):
        return conn.execute("SELECT test_accuracy FROM shift.finetune(ARRAY[%s], 'Tuned', 'TestReader', "
                            "'TestReader', %s)", (model, json.dumps(SHORT))).fetchall()

    def row(conn):
        return conn.execute("SELECT source_signature, test_accuracy, computed_at FROM shift.finetune_results "
                            "WHERE train_reader = 'Tuned'").fetchall()

    def runs(conn):
        return conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'finetune' "
                            "AND payload->>'train_reader' = 'Tuned'").fetchone()[0]

    (x, y), _ = digits(n_train=64, n_test=8, seed=5)
    with connect_as(t2v, user) as conn:
        register(conn, user, "Tuned", x, y)
        first = tune(conn)
        (before,) = row(conn)
        assert first == [(before[1],)] and runs(conn) == 1
        assert tune(conn) == first and runs(conn) == 1
        conn.execute("UPDATE %s.tuned SET y = (y + 1) %% 10 WHERE id < 32" % user)
        second = tune(conn)
        (after,) = row(conn)  # replaced, not added beside the old one
        assert runs(conn) == 2 and second == [(after[1],)]
        assert after[0] != before[0] and after[2] > before[2]
        assert tune(conn) == second and runs(conn) == 2


@pytest.mark.parametrize("params, readers, sqlstate, message", [
    ({"max_samples": 100}, ["BenchDigits"], "22023", "reader BenchDigits has 64 samples, fewer than max_samples 100"),
    ({"probe": "tabnet-s"}, ["BenchDigits"], "42809", "task2vec probe tabnet-s is a onnx model, not a PyTorch module"),
    ({"probe": "nope"}, ["BenchDigits"], "42704", "unknown task2vec probe 'nope'"),
    ({"seed": 7}, ["OneClass"], "22023", "reader OneClass has one class (3)"),
    ({"seed": 7}, ["Table"], "42809", "reader Table holds Tabular samples, but task2vec probe"),
])
def test_bad_input_fails_clearly_and_leaves_nothing(t2v, user, params, readers, sqlstate, message):
    with connect_as(t2v, user) as conn:
        if not conn.execute("SELECT 1 FROM shift.readers WHERE reader_id = 'OneClass'").fetchone():
            register(conn, user, "OneClass", np.zeros((8, 8, 8), np.float32), np.full(8, 3))
            register(conn, user, "Table", np.zeros((8, 8, 8), np.float32), np.arange(8) % 2, input="Tabular")
        before = (datasim_tasks(conn), conn.execute("SELECT count(*) FROM shift.task_embeddings").fetchone()[0])
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT * FROM shift.dataset_similarity('Task2Vec', %s, %s, 'TestReader')",
                         (json.dumps(params), readers))
        assert info.value.diag.sqlstate == sqlstate and message in info.value.diag.message_primary
        assert (datasim_tasks(conn), conn.execute("SELECT count(*) FROM shift.task_embeddings").fetchone()[0]) == before


def test_embeddings_are_as_private_as_their_readers(t2v, user, cluster):
    other = "t2v_other_%s" % uuid.uuid4().hex[:6]
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(other), sql.Literal(USER_PASSWORD)))
    try:
        with t2v.connect() as conn:
            conn.execute("SELECT shift.grant_usage(%s::regrole)", (other,))
            assert conn.execute("SELECT count(*) FROM shift.task_embeddings").fetchone()[0] >= 3
        with connect_as(t2v, other) as conn:
            assert conn.execute("SELECT count(*) FROM shift.task_embeddings").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO shift.task_embeddings (reader_id, reader_version, kind, settings, "
                             "source_signature, dim, embedding, index_vector, num_samples, seconds, device) VALUES "
                             "('TestReader', 'v', 'task2vec', '{}', 's', 1, '{1}', "
                             "array_fill(0.1, ARRAY[256])::real[]::vector, 1, 0, 'x')")
        with connect_as(t2v, user) as conn:
            conn.execute("SELECT shift.grant_reader('TestReader', %s)", (other,))
        with connect_as(t2v, other) as conn:
            seen = {r[0] for r in conn.execute("SELECT reader_id FROM shift.task_embeddings")}
            assert seen == {"TestReader"}
    finally:
        with t2v.connect() as conn:
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA shift FROM {0}; "
                                 "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shift FROM {0}; "
                                 "REVOKE ALL ON SCHEMA shift, shift_readers, shift_jobs FROM {0}").format(
                sql.Identifier(other)))
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(other)))
