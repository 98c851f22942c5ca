"""Persisted SHiFT-QL views, shift.explain, errors with their SQLSTATE, and injection attempts, in PostgreSQL."""

import psycopg
import pytest

from pyfuncs import embeddings
from tests.integration.conftest import TASK2VEC

PV = ("CREATE SCORING VIEW pv AS SELECT ModelId, NumParams FROM Models WHERE Input = 'Vision' "
      "ORDER BY CosineNN LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader")


def query(conn, text):
    return conn.execute("SELECT rank, model_id, score, selected FROM shift.query(%s)", (text,)).fetchall()


def fails(conn, sql, params=(), sqlstate=None):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    diag = info.value.diag
    assert diag.sqlstate == sqlstate, (diag.sqlstate, diag.message_primary)
    assert diag.message_primary and not diag.message_primary.startswith("plpy")
    return diag


def counts(conn):
    return conn.execute("SELECT (SELECT count(*) FROM shift.models), (SELECT count(*) FROM shift.readers), "
                        "(SELECT count(*) FROM public.licences)").fetchone()


def test_a_scoring_view_persists_and_is_read_by_plain_sql_and_shiftql(shiftql_db):
    best_two = sorted(shiftql_db.scores("CosineNN").items(), key=lambda mv: (mv[1], mv[0]))[:2]
    with shiftql_db.connect() as conn:
        assert query(conn, PV) == []
    try:
        with shiftql_db.connect() as other:  # another session sees it: it is in the database
            rows = other.execute("SELECT model_id, score, num_params FROM pv").fetchall()
            assert [(m, pytest.approx(v)) for m, v, _ in rows] == best_two
            assert [n for _, _, n in rows] == [shiftql_db.models[m]["num_params"] for m, _ in best_two]
            listed = other.execute("SELECT schema_name, view_name, kind, score_order, definition, columns "
                                   "FROM shift.views WHERE view_name = 'pv'").fetchone()
            assert listed == ("public", "pv", "scoring", "ASC", PV,
                              [["model_id", "text"], ["score", "double precision"], ["num_params", "bigint"]])
            # later SHiFT-QL reads it by name: as a relation, after IN, and alone
            rows = query(other, "SELECT ModelId FROM Models WHERE ModelId NOT IN pv AND Input = 'Vision'")
            assert {r[1] for r in rows} == set(m for m, r in shiftql_db.models.items()
                                               if r["input"] == "Vision") - {m for m, _ in best_two}
            assert [r[1] for r in query(other, "pv")] == [m for m, _ in best_two]
            assert [r[1] for r in query(other, "SELECT ModelId FROM pv WHERE NumParams > 1K")] == \
                [m for m, _ in best_two]
            d = fails(other, "SELECT * FROM shift.query(%s)", (PV,), "42P07")
            assert "already exists" in d.message_primary and "OR REPLACE" in d.message_hint
    finally:
        with shiftql_db.connect() as conn:
            conn.execute("SELECT shift.drop_view('pv')")
            assert conn.execute("SELECT count(*) FROM shift.views WHERE view_name = 'pv'").fetchone()[0] == 0
            fails(conn, "SELECT * FROM pv", sqlstate="42P01")
            d = fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM pv')", sqlstate="42704")
            assert "table" in d.message_primary


def test_views_are_dropped_by_shiftql_by_function_and_by_plain_sql(shiftql_db):
    with shiftql_db.connect() as conn:
        query(conn, PV)
        query(conn, "DROP SCORING VIEW pv")
        assert conn.execute("SELECT to_regclass('public.pv')").fetchone()[0] is None
        query(conn, PV)
        conn.execute("DROP VIEW pv")  # plain SQL: the view is its own record, so nothing is left behind
        assert conn.execute("SELECT count(*) FROM shift.views WHERE view_name = 'pv'").fetchone()[0] == 0
        d = fails(conn, "SELECT * FROM shift.query('DROP SCORING VIEW pv')", sqlstate="42704")
        assert "pv" in d.message_primary
        query(conn, "DROP SCORING VIEW IF EXISTS pv")
        d = fails(conn, "SELECT shift.drop_view('pv')", sqlstate="42704")
        # a view another view reads is dropped only with cascade
        query(conn, PV)
        query(conn, "CREATE SCORING VIEW pv_top AS SELECT ModelId FROM pv ORDER BY NumParams DESC LIMIT 1")
        d = fails(conn, "SELECT shift.drop_view('pv')", sqlstate="2BP01")
        d = fails(conn, "SELECT * FROM shift.query('DROP DATASET SIMILARITY VIEW pv')", sqlstate="42809")
        assert "DROP SCORING VIEW" in d.message_hint
        conn.execute("SELECT shift.drop_view('public.pv', cascade => true)")
        assert conn.execute("SELECT count(*) FROM shift.views WHERE view_name LIKE 'pv%'").fetchone()[0] == 0


def test_the_views_schema_setting_and_schema_qualified_names(shiftql_db):
    with shiftql_db.connect() as conn:
        conn.execute("SET shift.views_schema = 'analytics'")
        query(conn, "CREATE DATASET SIMILARITY VIEW near AS SELECT DataReaderId, Input FROM DataReaders "
                    "WHERE Input = 'Vision' ORDER BY Task2Vec LIMIT 2 TESTED AGAINST TestReader")
        try:
            rows = conn.execute("SELECT reader_id, score FROM analytics.near").fetchall()
            assert [r[0] for r in rows] == ["TrainReader", "Shapes"]  # by the embeddings of conftest.py
            one = [1.0, 1.0, 1.0]
            assert rows[0][1] == pytest.approx(embeddings.normalized_cosine(
                TASK2VEC["TestReader"], one, TASK2VEC["TrainReader"], one), rel=1e-4)  # float4
            assert conn.execute("SELECT kind FROM shift.views WHERE schema_name = 'analytics' "
                                "AND view_name = 'near'").fetchone()[0] == "dataset similarity"
            # a dataset similarity view filters models through a condition
            rows = query(conn, "SELECT ModelId FROM Models WHERE Input IN (SELECT Input FROM near) "
                               "ORDER BY UpstreamAccuracy DESC LIMIT 1")
            assert rows[0][1] == max((m for m, r in shiftql_db.models.items() if r["input"] == "Vision"),
                                     key=lambda m: shiftql_db.models[m]["upstream_accuracy"])
            d = fails(conn, "SELECT * FROM shift.query('near')", sqlstate="0A000")
            assert "data readers" in d.message_primary
        finally:
            query(conn, "DROP DATASET SIMILARITY VIEW analytics.near")


def test_a_missing_embedding_a_probe_cannot_make_fails_before_anything_is_queued(shiftql_db):
    with shiftql_db.connect(autocommit=False) as conn:
        conn.execute("DELETE FROM shift.task_embeddings WHERE reader_id = 'Noise'")
        d = fails(conn, "SELECT * FROM shift.query('SELECT ModelId FROM Models WHERE Input IN (SELECT Input FROM "
                        "DataReaders ORDER BY Task2Vec LIMIT 1 TESTED AGAINST TestReader)')", sqlstate="42809")
        assert "reader Noise holds Tabular samples" in d.message_primary and "shapes10.resnet10t" in d.message_primary
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM shift.tasks WHERE kind = 'datasim'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM shift.task_embeddings WHERE reader_id = 'Noise'").fetchone()[0] == 1


def test_explain_shows_tree_sql_and_plan_and_runs_nothing(shiftql_db):
    text = ("CREATE SCORING VIEW ex AS SELECT ModelId FROM Models WHERE Input = 'Vision' "
            "ORDER BY Linear(lr=0.3, epochs=2) LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader; "
            "SELECT ModelId FROM Models WHERE ModelId IN ex ORDER BY UpstreamAccuracy DESC")
    with shiftql_db.connect() as conn:
        tasks = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
        parts = dict(conn.execute("SELECT section, content FROM shift.explain(%s)", (text,)).fetchall())
        assert set(parts) == {"tree", "sql", "plan", "engine"}
        # the cost model's view of the scoring view: its pool is known without scoring anything
        engine = parts["engine"]
        assert engine.startswith('Linear {"batch_size":64,"epochs":2,"l2":0.0001,"lr":0.3,"seed":0} on TestReader, '
                                 'trained on TrainReader, top 1 ASC: {')
        assert '"models": 3' in engine and '"choice": "full"' in engine  # shift.successive_halving is off here
        assert parts["tree"].splitlines()[0] == "metadata view"
        assert "scoring view public.ex" in parts["tree"]
        assert "CREATE VIEW public.ex" in parts["sql"] and "shift.score(" in parts["sql"]
        assert "Function Scan on score" in parts["plan"]
        # nothing ran: no task, and the view exists only inside the rolled-back explain
        assert conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0] == tasks
        assert conn.execute("SELECT to_regclass('public.ex')").fetchone()[0] is None
        parts = dict(conn.execute("SELECT section, content FROM shift.explain('SELECT ModelId FROM Models "
                                  "ORDER BY NumParams LIMIT 2')").fetchall())
        assert "Limit" in parts["plan"] and "Seq Scan on models" in parts["plan"]
        fails(conn, "SELECT * FROM shift.explain('SELECT ModelId FROM Models ORDER BY')", sqlstate="42601")


@pytest.mark.parametrize("text, sqlstate, in_message, in_hint", [
    ("SELECT ModelId FROM Models ORDER BY CosineN LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",
     "42704", "CosineN", "CosineNN"),
    ("SELECT ModelId FROM Models ORDER BY KNN(neighbours=3) LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",
     "42704", "neighbours", "metric"),
    ("SELECT ModelId FROM Models ORDER BY Linear(lr=100) LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",
     "22023", "lr", None),
    ("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON TestReadr TRAINED ON TrainReader",
     "42704", "TestReadr", "TestReader"),
    ("SELECT ModelId FROM Models WHERE ModelId = 'bert-bas'", "42704", "bert-bas", "bert-base"),
    ("SELECT ModelId FROM Models JOIN public.licence l ON l.model_id = Models.ModelId", "42704",
     "public.licence", "public.licences"),
    ("SELECT ModelId FROM Models WHERE Architectur = 'BERT'", "42704", "Architectur", "architecture"),
    ("SELECT DataReaderId FROM DataReaders ORDER BY Task2Vec LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",
     "42601", "TRAINED ON", "TESTED AGAINST"),
    ("SELECT ModelId FROM Models ORDER BY Task2Vec LIMIT 1 TESTED AGAINST TestReader", "42809", "Task2Vec",
     "DataReaders"),
])
def test_errors_name_what_is_wrong(shiftql_db, text, sqlstate, in_message, in_hint):
    with shiftql_db.connect() as conn:
        for fn in ("translate", "query", "explain"):
            d = fails(conn, "SELECT * FROM shift.%s(%%s)" % fn, (text,), sqlstate)
            assert in_message in d.message_primary, d.message_primary
            if in_hint:
                assert in_hint in d.message_hint, d.message_hint


def test_syntax_errors_point_at_the_token(shiftql_db):
    text = "SELECT ModelId FROM Models\nWHERE Input == 'Vision'\nORDER BY CosineNN LIMIT 1 TESTED TestReader"
    with shiftql_db.connect() as conn:
        d = fails(conn, "SELECT * FROM shift.query(%s)", (text,), "42601")
        assert d.message_primary == 'syntax error at or near "TESTED"'
        assert d.message_detail == ("line 3, column 27:\nORDER BY CosineNN LIMIT 1 TESTED TestReader\n"
                                    + " " * 26 + "^")
        assert d.message_hint


def test_injection_attempts_stay_literals_and_identifiers(shiftql_db):
    with shiftql_db.connect() as conn:
        before = counts(conn)
        # through a reader name: an unknown reader, nothing run
        d = fails(conn, "SELECT * FROM shift.query(%s)",
                  ("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 "
                   "TESTED ON 'x''); DROP TABLE public.licences; --' TRAINED ON TrainReader",), "42704")
        assert "DROP TABLE" in d.message_primary
        # through a model name
        fails(conn, "SELECT * FROM shift.query(%s)",
              ("SELECT ModelId FROM Models WHERE ModelId = 'x''; DELETE FROM shift.models; --'",), "42704")
        # through a string literal: a comparison that matches nothing
        assert query(conn, "SELECT ModelId FROM Models WHERE Architecture = 'a''; DELETE FROM shift.models; --' "
                           "OR Architecture = $$b'; DROP TABLE public.licences; --$$") == []
        # through scorer parameters: values are checked, and passed as one JSON literal
        fails(conn, "SELECT * FROM shift.query(%s)",
              ("SELECT ModelId FROM Models ORDER BY KNN(metric='cosine''); DROP TABLE public.licences; --') "
               "LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",), "22023")
        fails(conn, "SELECT * FROM shift.query(%s)",
              ("SELECT ModelId FROM Models ORDER BY Linear(lr='0.1}''); DROP TABLE public.licences; --') "
               "LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",), "22023")
        fails(conn, "SELECT * FROM shift.query(%s)",  # the quote left open: the text is no SHiFT-QL at all
              ("SELECT ModelId FROM Models ORDER BY Linear(lr='0.1}'); DROP TABLE public.licences; --') "
               "LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader",), "42601")
        # through a table name and a view name: identifiers
        fails(conn, "SELECT * FROM shift.query(%s)",
              ('SELECT ModelId FROM Models JOIN public."licences; DROP TABLE public.licences" l '
               'ON l.model_id = Models.ModelId',), "42704")
        evil = 'x"; DROP TABLE public.licences; --'
        query(conn, 'CREATE SCORING VIEW "%s" AS SELECT ModelId FROM Models ORDER BY NumParams LIMIT 1'
              % evil.replace('"', '""'))
        assert conn.execute("SELECT view_name FROM shift.views WHERE view_name = %s", (evil,)).fetchone() == (evil,)
        assert [r[1] for r in query(conn, 'SELECT ModelId FROM "%s"' % evil.replace('"', '""'))] == ["tabnet-s"]
        fails(conn, "SELECT shift.drop_view(%s)", ("pv; DROP TABLE public.licences",), "42601")
        conn.execute("SELECT shift.drop_view(%s)", ('"%s"' % evil.replace('"', '""'),))
        assert counts(conn) == before
