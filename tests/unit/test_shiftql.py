"""SHiFT-QL → PostgreSQL: the queries of seed 000 §3.1–§3.2 and their translations, without a database.

Every golden test asserts the exact SQL and that PostgreSQL's grammar (sqlglot's
postgres dialect) reads it back as one statement. A StaticCatalog stands in for
the database where views, user tables, readers and models must be known. The
rows these translations return are checked in tests/integration/test_shiftql_golden.py.
"""

import re

import build_sql
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from pyfuncs import scorers
from pyfuncs.errors import ShiftError
from pyfuncs.shiftql import ScoringUse, catalog, explain_tree, parse_script, to_shiftql, translate
from pyfuncs.shiftql.dialect import NamedQuery, QueryRef, ScoringClause
from tests import shiftql_corpus as corpus

# seed 000 §3.2, verbatim (Q4 refers to Q1, so it is a script with both)
Q1, Q2, Q3 = corpus.Q1, corpus.Q2, corpus.Q3
Q4_SCRIPT = corpus.Q4
# the paper separates the definitions by layout; a ';' may separate them too
Q4 = Q4_SCRIPT.replace("LIMIT 1\nQ4 :=", "LIMIT 1;\nQ4 :=")

# seed 000 §3.1, the hybrid example, verbatim
HYBRID = corpus.HYBRID

LINEAR_LR_01 = '{"batch_size":64,"epochs":10,"l2":0.0001,"lr":0.1,"seed":0}'

SQL_Q1 = ("SELECT models.model_id AS model_id, models.upstream_accuracy AS score FROM shift.models AS models "
          "WHERE models.input = 'Vision' ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 1")


COSINE_NN = '{"k":1,"metric":"cosine"}'


def scored(pool, scorer, params_json, test="TestReader", train="TrainReader", desc=False, top_k=1):
    top = "" if top_k is None else ", %d, %s" % (top_k, "TRUE" if desc else "FALSE")
    return ("SELECT p.model_id AS model_id, s.score AS score FROM %s AS p JOIN shift.score('%s', CAST('%s' AS JSONB), "
            "ARRAY(SELECT model_id FROM %s), '%s', '%s'%s) AS s ON s.model_id = p.model_id "
            "ORDER BY s.score %s, p.model_id" % (pool, scorer, params_json, pool, test, train, top,
                                                   "DESC NULLS LAST" if desc else "ASC"))


def pool_of(where="", columns=""):
    return "SELECT models.model_id AS model_id%s FROM shift.models AS models%s" % (
        columns, " WHERE " + where if where else "")


SQL_Q2 = ("WITH pool AS (%s) " % pool_of("models.input = 'Vision'")
          + scored("pool", "CosineNN", COSINE_NN) + " LIMIT 1")
SQL_Q3 = ("WITH pool AS (%s) " % pool_of("models.input = 'Vision'")
          + scored("pool", "Linear", LINEAR_LR_01) + " LIMIT 1")
SQL_Q1_CTE = ("q1 AS (SELECT models.model_id AS model_id, models.upstream_accuracy AS score FROM shift.models AS models "
              "WHERE models.input = 'Vision' ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 1)")


def union_of(left, right, left_desc=True, right_desc=False):
    """A UNION by model id, each model keeping its score in the first block that returns it."""
    def score(table, desc):
        return ("(SELECT x.score FROM %s AS x WHERE x.model_id = c.model_id ORDER BY x.score %s LIMIT 1)"
                % (table, "DESC NULLS LAST" if desc else "ASC"))
    return ("SELECT c.model_id AS model_id, COALESCE(%s, %s) AS score FROM (SELECT model_id FROM %s UNION "
            "SELECT model_id FROM %s) AS c ORDER BY model_id, score"
            % (score(left, left_desc), score(right, right_desc), left, right))


SQL_Q4 = ("WITH " + SQL_Q1_CTE + ", q4_pool AS (SELECT models.model_id AS model_id FROM shift.models AS models "
          "WHERE models.input = 'Vision' "
          "AND NOT models.model_id IN (SELECT model_id FROM q1)), q4_part AS ("
          + scored("q4_pool", "Linear", LINEAR_LR_01) + " LIMIT 1) " + union_of("q1", "q4_part"))
SQL_HYBRID = ("WITH " + SQL_Q1_CTE + ", q2_pool AS (SELECT models.model_id AS model_id FROM shift.models AS models "
              "WHERE models.input = 'Vision' AND NOT models.model_id IN (SELECT model_id FROM q1)), q2 AS ("
              + scored("q2_pool", "Linear", LINEAR_LR_01) + " LIMIT 1) " + union_of("q1", "q2"))


def golden(text, expected):
    translation = translate(text)
    assert translation.sql == expected
    assert isinstance(sqlglot.parse_one(translation.sql, read="postgres"), exp.Query)
    assert len(sqlglot.parse(translation.sql, read="postgres")) == 1
    return translation


def fails(text, sqlstate):
    with pytest.raises(ShiftError) as info:
        translate(text)
    assert info.value.sqlstate == sqlstate, (info.value.message, info.value.hint)
    return info.value


# --------------------------------------------------------------------------
# The catalog follows the install script
# --------------------------------------------------------------------------


def _install_script_columns(table):
    text = build_sql.build()
    match = re.search(r"CREATE TABLE shift\.%s \(.*?\n\);" % table, text, re.S)
    assert match, "CREATE TABLE shift.%s is missing from the install script" % table
    create = sqlglot.parse_one(match.group(0), read="postgres")
    return [(c.name, c.args["kind"].sql("postgres")) for c in create.this.expressions
            if isinstance(c, exp.ColumnDef)]


@pytest.mark.parametrize("relation", catalog.RELATIONS, ids=lambda r: r.name)
def test_catalog_lists_exactly_the_install_script_columns(relation):
    listed = [(c, exp.DataType.build(t, dialect="postgres").sql("postgres")) for c, t in relation.columns]
    assert listed == _install_script_columns(relation.table)


def test_catalog_spellings():
    assert catalog.MODELS.find_column("ModelId") == "model_id"
    assert catalog.MODELS.find_column("UPSTREAM_ACCURACY") == "upstream_accuracy"
    assert catalog.MODELS.find_column("NumParams") == "num_params"
    assert catalog.MODELS.find_column("Modality") == "input"
    assert catalog.READERS.find_column("DataReaderId") == "reader_id"
    assert catalog.MODELS.find_column("Nope") is None
    assert catalog.find_relation("DATAREADERS") is catalog.READERS
    assert catalog.find_relation("models") is catalog.MODELS


# --------------------------------------------------------------------------
# Golden translations: seed 000 §3.2 Q1–Q4 and the §3.1 hybrid example
# --------------------------------------------------------------------------


def test_q1_metadata_order():
    t = golden(Q1, SQL_Q1)
    assert t.scoring == []


def test_q2_cosine_nn():
    t = golden(Q2, SQL_Q2)
    assert t.scoring == [ScoringUse("CosineNN", {"metric": "cosine", "k": 1}, "TestReader", "TrainReader")]


def test_q3_linear_with_params():
    t = golden(Q3, SQL_Q3)
    (use,) = t.scoring
    assert use.scorer == "Linear" and use.params["lr"] == 0.1 and use.params["epochs"] == 10
    assert (use.test_reader, use.train_reader) == ("TestReader", "TrainReader")


def test_q4_script_union_not_in():
    t = golden(Q4, SQL_Q4)
    assert [u.scorer for u in t.scoring] == ["Linear"]


def test_q4_script_with_trailing_semicolon_and_q1_form():
    assert translate(Q4 + ";\n").sql == SQL_Q4
    golden("Q1 := " + Q1 + ";", SQL_Q1)


def test_q4_as_the_paper_lays_it_out():
    """§3.2 writes Q4 after Q1 with no ';' between them: a name followed by := starts the next one."""
    golden(Q4_SCRIPT, SQL_Q4)
    err = fails(Q4_SCRIPT.replace("Q4 :=", "Q4 ="), "42601")
    assert 'at or near "Q4"' in err.message and "line 4" in err.detail


def test_hybrid_example():
    t = golden(HYBRID, SQL_HYBRID)
    assert t.scoring == [ScoringUse("Linear", t.scoring[0].params, "TestReader", "TrainReader")]
    assert t.scoring[0].params["lr"] == 0.1


def test_named_scoring_view_pool_is_named_after_it():
    golden("Q3 := " + Q3, SQL_Q3.replace("pool", "q3_pool"))


def test_unused_definitions_are_left_out():
    script = "Q1 := %s;\nQ2 := %s;\nQ3 := %s" % (Q1, Q2, Q3)
    t = golden(script, SQL_Q3.replace("pool", "q3_pool"))
    assert [u.scorer for u in t.scoring] == ["Linear"]


def test_reading_a_named_query_by_name():
    golden("Q1 := %s; Q1" % Q1,
           "WITH " + SQL_Q1_CTE + " SELECT * FROM q1 ORDER BY score DESC NULLS LAST, model_id")


def test_scoring_view_over_a_named_query():
    sql = translate("Q1 := SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 10 TESTED ON a TRAINED ON b; "
                    "SELECT ModelId FROM Q1 ORDER BY Linear LIMIT 1 TESTED ON a TRAINED ON b").sql
    assert "pool AS (SELECT q1.model_id AS model_id FROM q1)" in sql
    assert sql.count("shift.score(") == 2
    sqlglot.parse_one(sql, read="postgres")


# --------------------------------------------------------------------------
# Spellings: case, ==, <SHIFT> tags, parameter forms
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    Q1.replace("==", "="),
    Q1.lower().replace("'vision'", "'Vision'"),
    Q1.upper().replace("'VISION'", "'Vision'"),
    "select model_id from models where INPUT = 'Vision' order by Upstream_Accuracy desc limit 1",
    "SELECT modelid FROM MODELS WHERE input=='Vision' ORDER BY upstreamaccuracy DESC LIMIT 1;",
    "SELECT ModelId FROM Models WHERE Input == 'Vision' <SHIFT> ORDER BY UpstreamAccuracy DESC LIMIT 1 </SHIFT>",
])
def test_q1_spellings(text):
    golden(text, SQL_Q1)


@pytest.mark.parametrize("text", [
    Q3.replace("==", "="),
    Q3.lower().replace("testreader", "TestReader").replace("trainreader", "TrainReader").replace("'vision'",
                                                                                                "'Vision'"),
    Q3.replace("ORDER BY", "<SHIFT>\nORDER BY") + "\n</SHIFT>",
    Q3.replace("<SHIFT>", "").replace("Linear(lr=0.1)", "LINEAR(LR = 0.1)"),
    Q3.replace("Linear(lr=0.1)", "Linear(lr := 0.1)"),
    Q3.replace("Linear(lr=0.1)", "Linear(lr => 0.1)"),
    Q3.replace("Linear(lr=0.1)", "Linear(lr=1e-1)"),
    Q3.replace("Input == 'Vision'", "Modality = 'Vision'"),
    Q3 + ";",
])
def test_q3_spellings(text):
    golden(text, SQL_Q3)


def test_hybrid_with_tags_and_as():
    text = HYBRID.replace("ORDER BY Linear", "<SHIFT> ORDER BY Linear").replace("TrainReader)", "TrainReader </SHIFT>)")
    golden(text.replace(") Q2", ") AS Q2"), SQL_HYBRID)


def test_bare_scorer_and_direction():
    sql = translate("SELECT ModelId FROM Models ORDER BY EuclideanNN LIMIT 5 TESTED ON TestReader "
                    "TRAINED ON TrainReader").sql
    assert sql == ("WITH pool AS (%s) " % pool_of()
                   + scored("pool", "EuclideanNN", '{"k":1,"metric":"euclidean"}', top_k=5) + " LIMIT 5")
    desc = translate("SELECT ModelId FROM Models ORDER BY LinearAccuracy DESC LIMIT 3 TESTED ON TestReader "
                     "TRAINED ON TrainReader").sql
    assert "ORDER BY s.score DESC NULLS LAST, p.model_id LIMIT 3" in desc
    assert "'TestReader', 'TrainReader', 3, TRUE)" in desc


def test_scorer_params_are_resolved_and_canonical():
    t = golden("SELECT ModelId FROM Models ORDER BY Linear(lr=0.1, epochs=3) LIMIT 1 "
               "TESTED ON TestReader TRAINED ON TrainReader",
               "WITH pool AS (%s) " % pool_of()
               + scored("pool", "Linear", '{"batch_size":64,"epochs":3,"l2":0.0001,"lr":0.1,"seed":0}') + " LIMIT 1")
    assert t.scoring[0].params == {"lr": 0.1, "l2": 0.0001, "batch_size": 64, "epochs": 3, "seed": 0}


def test_extra_columns_follow_model_id_and_score():
    golden("SELECT ModelId, NumParams FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 2",
           "SELECT models.model_id AS model_id, models.upstream_accuracy AS score, models.num_params "
           "FROM shift.models AS models ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 2")
    golden("SELECT ModelId, NumParams FROM Models WHERE NumParams < 10000000 ORDER BY CosineNN LIMIT 3 "
           "TESTED ON TestReader TRAINED ON TrainReader",
           "WITH pool AS (%s) " % pool_of("models.num_params < 10000000", ", models.num_params")
           + scored("pool", "CosineNN", COSINE_NN, top_k=3).replace(
               "s.score AS score FROM", "s.score AS score, p.num_params FROM") + " LIMIT 3")


def test_metadata_score_is_cast_or_null():
    golden("SELECT m.ModelId FROM Models AS m ORDER BY m.NumParams LIMIT 3",
           "SELECT m.model_id AS model_id, CAST(m.num_params AS DOUBLE PRECISION) AS score FROM shift.models AS m "
           "ORDER BY m.num_params ASC, m.model_id LIMIT 3")
    golden("SELECT ModelId FROM Models ORDER BY Architecture",
           "SELECT models.model_id AS model_id, CAST(NULL AS DOUBLE PRECISION) AS score FROM shift.models AS models "
           "ORDER BY models.architecture ASC, models.model_id")
    golden("SELECT ModelId FROM Models",
           "SELECT models.model_id AS model_id, CAST(NULL AS DOUBLE PRECISION) AS score FROM shift.models AS models "
           "ORDER BY models.model_id")


def test_sub_query_over_datareaders():
    golden("SELECT ModelId FROM Models WHERE EXISTS (SELECT 1 FROM DataReaders r WHERE r.Input = Models.Input) "
           "ORDER BY UpstreamAccuracy DESC LIMIT 1",
           "SELECT models.model_id AS model_id, models.upstream_accuracy AS score FROM shift.models AS models "
           "WHERE EXISTS(SELECT 1 FROM shift.readers AS r WHERE r.input = models.input) "
           "ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 1")


# --------------------------------------------------------------------------
# The parse tree
# --------------------------------------------------------------------------


def test_tree_has_scoring_clause_and_named_queries():
    script = translate(HYBRID).tree
    (union,) = script.expressions
    assert isinstance(union, exp.Union)
    left, right = union.this, union.expression
    assert isinstance(left, NamedQuery) and left.this.name == "Q1"
    assert isinstance(right, NamedQuery) and right.this.name == "Q2"
    clause = right.expression.args["scoring"]
    assert isinstance(clause, ScoringClause)
    assert clause.args["tested_on"].name == "TestReader" and clause.args["trained_on"].name == "TrainReader"
    (in_,) = list(right.expression.find_all(exp.In))
    assert isinstance(in_.args["field"], QueryRef)


def test_order_by_and_limit_after_union_belong_to_the_last_block():
    (stmt,) = parse_script(Q4).expressions[1:]
    union = stmt.expression
    assert union.args.get("order") is None and union.args.get("limit") is None
    assert union.expression.args["limit"] is not None


def test_shiftql_prints_back():
    for text in (Q1, Q2, Q3, Q4, HYBRID):
        again = to_shiftql(parse_script(text))
        assert translate(again).sql == translate(text).sql


def test_explain_tree_shows_views_and_pools():
    tree = explain_tree(translate(HYBRID))
    assert tree.splitlines()[0] == "union"
    assert "named query Q1" in tree and "named query Q2" in tree
    assert "metadata view" in tree and "scoring view" in tree
    assert "scorer: Linear %s ASC" % LINEAR_LR_01 in tree
    assert "tested on: TestReader, trained on: TrainReader" in tree
    assert "pool (q2_pool): SELECT models.model_id AS model_id FROM shift.models AS models " \
           "WHERE models.input = 'Vision' AND NOT models.model_id IN (SELECT model_id FROM q1)" in tree
    assert "named query Q1 (see above)" in tree


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_unknown_scorer_names_the_closest():
    err = fails(Q2.replace("CosineNN", "CosineN"), "42704")
    assert "CosineN" in err.message and "CosineNN" in err.hint
    err = fails("SELECT ModelId FROM Models ORDER BY CosineN ASC LIMIT 1", "42704")
    assert "scorer" in err.message and "CosineNN" in err.hint
    err = fails(Q3.replace("Linear(", "Lineer("), "42704")
    assert "Linear" in err.hint


def test_unknown_column_and_table():
    err = fails("SELECT ModelId FROM Models ORDER BY UpstreamAcuracy DESC LIMIT 1", "42704")
    assert "column" in err.message and "upstream_accuracy" in err.hint
    err = fails("SELECT ModelId FROM Models WHERE Inputt = 'Vision'", "42704")
    assert "input" in err.hint and "^" in err.detail
    err = fails("SELECT ModelId FROM Modelz", "42704")
    assert "table" in err.message and "Models" in err.hint
    fails("SELECT ModelId FROM Models WHERE ModelId NOT IN Q9", "42704")


def test_bad_parameters_come_from_the_registry():
    assert fails(Q3.replace("lr=0.1", "lr=100"), "22023").message.startswith("parameter lr of Linear")
    fails(Q3.replace("lr=0.1", "lr='fast'"), "22023")
    fails(Q3.replace("lr=0.1", "lr=Input"), "22023")
    assert "lr" in fails(Q3.replace("lr=0.1", "lrr=0.1"), "42704").hint
    fails(Q3.replace("lr=0.1", "lr=0.1, lr=0.2"), "22023")
    fails(Q3.replace("lr=0.1", "0.1"), "42601")


def test_scorer_needs_both_readers():
    err = fails("SELECT ModelId FROM Models ORDER BY Linear(lr=0.1) LIMIT 1", "42601")
    assert "TESTED ON" in err.message and "TRAINED ON" in err.message and "TESTED ON" in err.hint
    err = fails("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON TestReader", "42601")
    assert "TRAINED ON" in err.message


def test_readers_without_scorer():
    err = fails("SELECT ModelId FROM Models ORDER BY NumParams LIMIT 1 TESTED ON a TRAINED ON b", "42601")
    assert "scorer" in err.message and "CosineNN" in err.hint
    fails("SELECT ModelId FROM Models TESTED ON a TRAINED ON b", "42601")


@pytest.mark.parametrize("text, near, line, column", [
    ("SELECT ModelId FROM Models ORDER BY LIMIT", "LIMIT", 1, 37),
    ("SELECT ModelId FROM Models\nWHERE Input == 'Vision'\nORDER BY UpstreamAccuracy DESC LIMIT 1 LIMIT 2", "LIMIT", 3, 40),
    ("SELECT ModelId FROM Models WHERE Input == 'Vision", "'Vision", 1, 43),
    ("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON a TESTED ON b", "TESTED", 1, 66),
    ("SELECT ModelId FROM Models ORDER BY CosineNN </SHIFT>", "</SHIFT>", 1, 46),
    ("(SELECT ModelId FROM Models) Q1 UNION UNION", "UNION", 1, 39),
])
def test_syntax_errors_point_at_the_token(text, near, line, column):
    err = fails(text, "42601")
    assert err.message == 'syntax error at or near "%s"' % near
    first, shown, caret = err.detail.split("\n")
    assert first == "line %d, column %d:" % (line, column)
    assert shown == text.split("\n")[line - 1]
    assert caret == " " * (column - 1) + "^"
    assert err.hint


@pytest.mark.parametrize("text", [
    "SELECT ModelId FROM Models WHERE",
    "SELECT ModelId FROM Models WHERE (Input == 'Vision'",
    "Q1 :=",
    "SELECT ModelId FROM Models ORDER BY Linear(lr=0.1) LIMIT 1 TESTED ON",
    "SELECT ModelId FROM Models <SHIFT> ORDER BY CosineNN",
])
def test_syntax_error_at_end_of_input(text):
    err = fails(text, "42601")
    assert err.message in ("syntax error at end of input", 'syntax error at or near "<SHIFT>"')
    assert err.detail.endswith("^")


def test_other_errors():
    assert fails("", "42601").message == "empty query"
    fails(";", "42601")
    fails("SELECT 1", "42601")
    fails("SELECT ModelId FROM Models; SELECT ModelId FROM Models", "42601")
    assert fails("Q1 := %s; Q1 := %s; Q1" % (Q1, Q1), "42710").message == "query Q1 is defined twice"
    fails("Models := %s; Models" % Q1, "42710")
    fails("SELECT ModelId, NumParams AS Score FROM Models", "42701")
    fails("SELECT ModelId FROM Models WHERE NumParams > $1", "42601")
    fails("SELECT ModelId FROM Models GROUP BY ROLLUP (Input)", "0A000")
    fails("SELECT ReaderId FROM DataReaders", "0A000")
    fails("Q1 := %s; Q1 UNION SELECT ModelId, NumParams FROM Models" % Q1, "42601")
    fails("SELECT ModelId FROM Models ORDER BY CosineNN, NumParams TESTED ON a TRAINED ON b", "42601")
    with pytest.raises(ShiftError):
        translate(None)


# --------------------------------------------------------------------------
# User input reaches the SQL only as literals and identifiers
# --------------------------------------------------------------------------

EVIL = "x'); DROP TABLE shift.models; --"


def _literals(sql):
    """The values of the string constants of a statement (E'...' strings included)."""
    tree = sqlglot.parse_one(sql, read="postgres")
    return [node.this for node in tree.find_all(exp.Literal, exp.ByteString)
            if isinstance(node, exp.ByteString) or node.is_string]


@pytest.mark.parametrize("written", ["'x''); DROP TABLE shift.models; --'",
                                     '"x\'); DROP TABLE shift.models; --"'])
def test_reader_names_are_quoted_literals(written):
    t = translate("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON %s TRAINED ON TrainReader" % written)
    assert "'x''); DROP TABLE shift.models; --'" in t.sql
    assert len(sqlglot.parse(t.sql, read="postgres")) == 1
    assert EVIL in _literals(t.sql)
    assert t.scoring[0].test_reader == EVIL


def test_string_literals_with_quotes_stay_literals():
    t = translate("SELECT ModelId FROM Models WHERE Input = 'Vi''sion''; DELETE FROM shift.models; --' "
                  "ORDER BY CosineNN LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader")
    assert "'Vi''sion''; DELETE FROM shift.models; --'" in t.sql
    assert len(sqlglot.parse(t.sql, read="postgres")) == 1
    assert "Vi'sion'; DELETE FROM shift.models; --" in _literals(t.sql)
    t = translate("SELECT ModelId FROM Models WHERE Input = E'\\'; DROP TABLE x; --' AND Input = $$a'b$$")
    assert len(sqlglot.parse(t.sql, read="postgres")) == 1
    assert "'; DROP TABLE x; --" in _literals(t.sql) and "a'b" in _literals(t.sql)


def test_names_are_quoted_identifiers():
    t = translate('"Q1; DROP TABLE x" := %s; "Q1; DROP TABLE x"' % Q1)
    assert 'WITH "q1; drop table x" AS (' in t.sql
    assert len(sqlglot.parse(t.sql, read="postgres")) == 1
    t = translate('SELECT ModelId, NumParams AS "n"")--" FROM Models')
    assert 'AS "n"")--"' in t.sql
    assert len(sqlglot.parse(t.sql, read="postgres")) == 1
    t = translate("SELECT ModelId FROM Models AS \"order\" ORDER BY UpstreamAccuracy DESC")
    assert 'shift.models AS "order"' in t.sql and '"order".upstream_accuracy' in t.sql


def test_scorer_params_json_is_a_literal():
    t = translate("SELECT ModelId FROM Models ORDER BY Linear(lr=0.1) LIMIT 1 TESTED ON a TRAINED ON b")
    assert LINEAR_LR_01 in _literals(t.sql)


# --------------------------------------------------------------------------
# The rest of the language: suffixes, joins, grouping, WITH, views, similarity, FineTune
# --------------------------------------------------------------------------

BEST = catalog.ViewInfo("public", "best", "scoring", (("model_id", "text"), ("score", "double precision"),
                                                      ("num_params", "bigint")), True, "CREATE SCORING VIEW best AS ...")
NEAR = catalog.ViewInfo("analytics", "near", "dataset similarity",
                        (("reader_id", "text"), ("score", "double precision")), False, "CREATE ...")
CAT = catalog.StaticCatalog(
    views=[BEST, NEAR],
    tables={"public.licences": [("model_id", "text"), ("licence", "text")],
            "public.latencies": [("model_id", "text"), ("device", "text"), ("ms", "double precision")]},
    readers=["TestReader", "TrainReader", "Shapes"], models=["bert-base", "m1"])
SCORED = " ORDER BY CosineNN LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader"


def test_number_suffixes():
    sql = translate("SELECT ModelId FROM Models WHERE NumParams BETWEEN 1.5K AND 10M OR NumParams > 2g "
                    "OR NumParams < 1e-3k").sql
    assert "BETWEEN 1500 AND 10000000 OR models.num_params > 2000000000 OR models.num_params < 1" in sql
    fails("SELECT ModelId FROM Models WHERE NumParams < 10 M", "42601")
    fails("SELECT ModelId FROM Models WHERE NumParams < 1e40M", "42601")


def test_scoring_view_with_a_join_carries_the_selected_columns_in_its_pool():
    t = translate("SELECT ModelId, l.licence AS lic FROM Models JOIN public.licences l ON l.model_id = Models.ModelId "
                  "WHERE l.licence = 'MIT'" + SCORED, CAT)
    assert t.sql.startswith("WITH pool AS (SELECT models.model_id AS model_id, l.licence AS lic FROM shift.models "
                            "AS models JOIN public.licences AS l ON l.model_id = models.model_id WHERE "
                            "l.licence = 'MIT') SELECT p.model_id AS model_id, s.score AS score, p.lic FROM pool")
    fails("SELECT ModelId, NumParams AS x, FeatureDim AS x FROM Models" + SCORED, "42701")
    fails("SELECT * FROM Models JOIN public.unknown_columns u ON u.id = Models.ModelId" + SCORED, "0A000")
    assert "licence" in fails_with(CAT, "SELECT ModelId, l.licenc FROM Models JOIN public.licences l "
                                        "ON l.model_id = Models.ModelId", "42704").hint
    assert "public.licences" in fails_with(CAT, "SELECT ModelId FROM public.licence", "42704").hint
    # without a catalog the columns of a user's table are not known: names pass through
    assert "l.licenc" in translate("SELECT ModelId, l.licenc FROM Models JOIN public.licences l "
                                   "ON l.model_id = Models.ModelId").sql


def fails_with(cat, text, sqlstate):
    with pytest.raises(ShiftError) as info:
        translate(text, cat)
    assert info.value.sqlstate == sqlstate, (info.value.message, info.value.hint)
    return info.value


def test_grouping_distinct_and_with():
    golden("SELECT ModelId, count(*) AS n FROM Models JOIN public.latencies l ON l.model_id = Models.ModelId "
           "GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC",
           "SELECT models.model_id AS model_id, CAST(COUNT(*) AS DOUBLE PRECISION) AS score, COUNT(*) AS n FROM "
           "shift.models AS models JOIN public.latencies AS l ON l.model_id = models.model_id GROUP BY "
           "models.model_id HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC NULLS LAST, models.model_id")
    golden("SELECT DISTINCT ModelId FROM Models ORDER BY NumParams",
           "SELECT DISTINCT models.model_id AS model_id, CAST(models.num_params AS DOUBLE PRECISION) AS score FROM "
           "shift.models AS models ORDER BY CAST(models.num_params AS DOUBLE PRECISION) ASC, models.model_id")
    golden("WITH fast AS (SELECT model_id FROM public.latencies WHERE ms < 5) "
           "SELECT ModelId FROM Models WHERE ModelId IN (SELECT model_id FROM fast)",
           "WITH fast AS (SELECT model_id FROM public.latencies WHERE ms < 5) SELECT "
           "models.model_id AS model_id, CAST(NULL AS DOUBLE PRECISION) AS score FROM shift.models AS models "
           "WHERE models.model_id IN (SELECT fast.model_id FROM fast) ORDER BY models.model_id")
    fails("WITH RECURSIVE r AS (SELECT 1) SELECT ModelId FROM Models", "42601")
    fails("SELECT ModelId FROM Models GROUP BY 3", "42601")


def test_top_k_is_limit_plus_offset_and_only_constants():
    assert "'TrainReader', 5, FALSE)" in translate("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 2 OFFSET 3 "
                                                    "TESTED ON TestReader TRAINED ON TrainReader").sql
    assert "'TrainReader') AS s" in translate("SELECT ModelId FROM Models ORDER BY CosineNN "
                                              "TESTED ON TestReader TRAINED ON TrainReader").sql
    assert "'TrainReader') AS s" in translate("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT ALL "
                                              "TESTED ON TestReader TRAINED ON TrainReader").sql


def test_set_operations_compare_models_not_scores():
    fails_with(CAT, "(SELECT ModelId FROM Models" + SCORED + ") INTERSECT best", "42601")  # 2 columns and 3
    t = translate("(SELECT ModelId FROM Models" + SCORED + ") INTERSECT SELECT ModelId FROM best", CAT)
    assert t.sql.endswith("SELECT c.model_id AS model_id, (SELECT x.score FROM part AS x WHERE x.model_id = "
                          "c.model_id ORDER BY x.score ASC LIMIT 1) AS score FROM (SELECT model_id FROM part "
                          "INTERSECT SELECT model_id FROM part_2) AS c ORDER BY model_id, score")
    t = translate("SELECT ModelId FROM Models ORDER BY NumParams LIMIT 1 UNION ALL "
                  "SELECT ModelId FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 1")
    assert " UNION ALL (SELECT models.model_id" in t.sql and "COALESCE" not in t.sql
    fails("SELECT ModelId FROM Models UNION SELECT DataReaderId FROM DataReaders", "42809")


def test_scoring_views_nested_in_a_query_are_ctes():
    t = translate("SELECT ModelId FROM Models WHERE ModelId IN (SELECT ModelId FROM Models" + SCORED + ")")
    assert t.sql.startswith("WITH nested_pool AS (SELECT models.model_id AS model_id FROM shift.models AS models), "
                            "nested AS (SELECT p.model_id")
    assert "WHERE models.model_id IN (SELECT model_id FROM nested)" in t.sql
    assert [u.scorer for u in t.scoring] == ["CosineNN"]
    assert "implicit view nested" in explain_tree(t)
    t = translate("SELECT t.ModelId FROM (SELECT ModelId FROM Models" + SCORED + ") AS t")
    assert "t AS (SELECT p.model_id" in t.sql and "FROM t AS t" in t.sql
    # plain sub-queries stay plain SQL
    t = translate("SELECT ModelId FROM Models WHERE ModelId IN (SELECT ModelId FROM Models ORDER BY NumParams LIMIT 2)")
    assert "IN (SELECT models_1" not in t.sql and "ORDER BY models.num_params LIMIT 2)" in t.sql
    fails("SELECT ModelId FROM (SELECT ModelId FROM Models" + SCORED + ")", "42601")  # a name is needed


def test_create_and_drop_views():
    t = translate("CREATE SCORING VIEW v AS SELECT ModelId, NumParams FROM Models" + SCORED)
    create, comment = t.statements
    assert create.kind == "create view" and comment.kind == "comment" and t.query is None
    assert create.sql.startswith("CREATE VIEW public.v WITH (security_invoker=TRUE) AS WITH v_pool AS")
    assert comment.sql.startswith("COMMENT ON VIEW public.v IS 'shift scoring view, score ASC\nCREATE SCORING")
    assert catalog.parse_view_comment(_literals(comment.sql)[0]) == (
        "scoring", False, "CREATE SCORING VIEW v AS SELECT ModelId, NumParams FROM Models" + SCORED)
    assert create.view.columns == (("model_id", "text"), ("score", "double precision"), ("num_params", "bigint"))
    assert t.plan.kind == "create scoring view" and t.plan.name == "public.v"
    # in a schema, replaced, read later in the same script, dropped
    t = translate('CREATE OR REPLACE SCORING VIEW a."Mixed Case" AS SELECT ModelId FROM Models ORDER BY NumParams; '
                  'DROP SCORING VIEW a."Mixed Case" CASCADE')
    assert [s.kind for s in t.statements] == ["create view", "comment", "drop view"]
    assert t.statements[0].sql.startswith('CREATE OR REPLACE VIEW a."Mixed Case" WITH')
    assert t.statements[2].sql == 'DROP VIEW a."Mixed Case" CASCADE'
    t = translate('CREATE SCORING VIEW a."Mixed Case" AS SELECT ModelId FROM Models ORDER BY NumParams; '
                  'SELECT ModelId FROM a."Mixed Case" WHERE ModelId IN a."Mixed Case"')
    assert t.query == ('SELECT "Mixed Case".model_id AS model_id, "Mixed Case".score AS score FROM a."Mixed Case" '
                       'WHERE "Mixed Case".model_id IN (SELECT model_id FROM a."Mixed Case") '
                       'ORDER BY "Mixed Case".score ASC, "Mixed Case".model_id')
    fails("SELECT ModelId FROM Models; DROP SCORING VIEW v", "42601")  # a query comes last
    # the catalog knows what exists
    assert translate("DROP SCORING VIEW best", CAT).sql == "DROP VIEW public.best"
    assert translate("DROP SCORING VIEW IF EXISTS nope", CAT).statements == []
    assert "best" in fails_with(CAT, "DROP SCORING VIEW bestt", "42704").hint
    assert "DROP DATASET SIMILARITY VIEW" in fails_with(CAT, "DROP SCORING VIEW analytics.near", "42809").hint
    fails_with(CAT, "CREATE SCORING VIEW best AS SELECT ModelId FROM Models", "42P07")
    fails_with(CAT, "CREATE OR REPLACE DATASET SIMILARITY VIEW best AS SELECT DataReaderId FROM DataReaders", "42809")
    fails("CREATE SCORING VIEW models AS SELECT ModelId FROM Models", "42710")
    fails("CREATE SCORING VIEW v AS SELECT DataReaderId FROM DataReaders", "42809")
    fails("CREATE DATASET SIMILARITY VIEW v AS SELECT ModelId FROM Models", "42809")
    fails("CREATE TABLE t (a int)", "42601")


def test_reading_persisted_views():
    golden_sql = translate("best", CAT).sql
    assert golden_sql == "SELECT * FROM public.best ORDER BY score DESC NULLS LAST, model_id"
    t = translate("SELECT ModelId, NumParams FROM best WHERE NumParams < 5M", CAT)
    assert t.sql == ("SELECT best.model_id AS model_id, best.score AS score, best.num_params FROM public.best WHERE "
                     "best.num_params < 5000000 ORDER BY best.score DESC NULLS LAST, best.model_id")
    assert "scoring view public.best" in explain_tree(t)
    t = translate("SELECT ModelId FROM Models WHERE ModelId NOT IN best" + SCORED, CAT)
    assert "NOT models.model_id IN (SELECT model_id FROM public.best)" in t.sql
    t = translate("SELECT ModelId FROM Models WHERE Input IN (SELECT r.Input FROM DataReaders r "
                  "WHERE r.ReaderId IN analytics.near)", CAT)
    assert "r.reader_id IN (SELECT reader_id FROM analytics.near)" in t.sql
    fails_with(CAT, "analytics.near", "0A000")  # a query returns models
    fails("SELECT ModelId FROM best", "42704")  # no catalog, no view


def test_dataset_similarity_views():
    want = ("WITH pool AS (SELECT readers.reader_id AS reader_id FROM shift.readers AS readers WHERE readers.input = "
            "'Vision') SELECT p.reader_id AS reader_id, s.score AS score FROM pool AS p JOIN shift.dataset_similarity("
            "'Task2Vec', CAST('{\"alpha\":0.15,\"batch_size\":64,\"distance\":\"normalized_cosine\",\"epochs\":1,\"max_samples\":1000,\"method\":\"montecarlo\",\"probe\":\"\",\"seed\":0,\"skip_layers\":0}' AS JSONB), ARRAY(SELECT reader_id FROM pool), 'TestReader', "
            "2, FALSE) AS s ON s.reader_id = p.reader_id ORDER BY s.score ASC, p.reader_id LIMIT 2")
    for clause in ("TESTED AGAINST TestReader", "TESTED ON TestReader"):
        t = translate("CREATE DATASET SIMILARITY VIEW v SELECT DataReaderId FROM DataReaders WHERE Input = 'Vision' "
                      "<SHIFT> ORDER BY Task2Vec LIMIT 2 %s </SHIFT>" % clause)
        assert t.statements[0].sql == "CREATE VIEW public.v WITH (security_invoker=TRUE) AS " + want.replace(
            "pool", "v_pool")
        assert [tuple(u) for u in t.similarity] == [("Task2Vec", scorers.get("Task2Vec").resolve({}), "TestReader")]
    fails("SELECT DataReaderId FROM DataReaders ORDER BY Task2Vec LIMIT 1", "42601")  # no target
    fails("SELECT DataReaderId FROM DataReaders ORDER BY Task2Vec LIMIT 1 TESTED ON a TRAINED ON b", "42601")
    fails("SELECT DataReaderId FROM DataReaders ORDER BY CosineNN LIMIT 1 TESTED AGAINST a", "42809")
    fails("SELECT ModelId FROM Models ORDER BY Task2Vec LIMIT 1 TESTED AGAINST a", "42809")
    fails("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED AGAINST a", "42601")
    assert "Shapes" in fails_with(CAT, "CREATE DATASET SIMILARITY VIEW v SELECT DataReaderId FROM DataReaders "
                                       "ORDER BY Task2Vec TESTED AGAINST Shapez", "42704").hint


Q5 = corpus.Q5


def test_q5_meta_learned_finetune():
    t = golden(Q5, "WITH q6_pool AS (SELECT readers.reader_id AS reader_id FROM shift.readers AS readers), q6 AS "
               "(SELECT p.reader_id AS reader_id, s.score AS score FROM q6_pool AS p JOIN shift.dataset_similarity("
               "'Task2Vec', CAST('{\"alpha\":0.15,\"batch_size\":64,\"distance\":\"normalized_cosine\",\"epochs\":1,\"max_samples\":1000,\"method\":\"montecarlo\",\"probe\":\"\",\"seed\":0,\"skip_layers\":0}' AS JSONB), ARRAY(SELECT reader_id FROM q6_pool), "
               "'TestReader', 1, FALSE) AS s ON s.reader_id = p.reader_id ORDER BY s.score ASC, p.reader_id LIMIT 1), pool AS "
               "(SELECT models.model_id AS model_id, readers.reader_id AS reader_id FROM shift.models AS models "
               "CROSS JOIN shift.readers AS readers WHERE models.input = 'Vision' AND readers.reader_id IN (SELECT "
               "reader_id FROM q6)) SELECT p.model_id AS model_id, s.score AS score FROM pool AS p JOIN "
               "shift.benchmark_scores('FineTune', CAST('{\"batch_size\":64,\"lr\":0.01,\"lr_grid\":2,\"repeats\":1,\"seed\":0,\"steps\":200}' "
               "AS JSONB), ARRAY(SELECT DISTINCT model_id FROM pool), ARRAY(SELECT DISTINCT reader_id FROM pool)) AS s "
               "ON s.model_id = p.model_id AND s.reader_id = p.reader_id ORDER BY s.score ASC, p.model_id, "
               "p.reader_id LIMIT 1")
    assert t.scoring == [ScoringUse("FineTune", {"lr": 0.01, "lr_grid": 2, "steps": 200, "batch_size": 64,
                                              "repeats": 1, "seed": 0}, None, None)]
    tree = explain_tree(t)
    assert "benchmark view" in tree and "dataset similarity view" in tree and "named query Q6" in tree
    # the readers are joined implicitly only for a FineTune ranking; a plain block must name them
    fails("SELECT ModelId FROM Models WHERE Readers.ReaderId = 'x' ORDER BY NumParams", "42704")
    # task-aware fine-tuning goes through shift.score like a proxy
    t = translate("SELECT ModelId FROM Models ORDER BY FineTune(steps=3) LIMIT 1 TESTED ON a TRAINED ON b")
    assert "shift.score('FineTune', CAST('{\"batch_size\":64,\"lr\":0.01,\"lr_grid\":2,\"repeats\":1,\"seed\":0,\"steps\":3}' AS JSONB)" in t.sql
    fails("SELECT ModelId FROM Models ORDER BY FineTune LIMIT 1 TESTED ON a", "42601")


def test_catalog_checks_readers_and_model_ids():
    err = fails_with(CAT, "SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON testreadr "
                          "TRAINED ON TrainReader", "42704")
    assert "TestReader" in err.hint and err.detail.endswith("^")
    translate("SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON testreader TRAINED ON trainreader",
              CAT)  # case aside, as shift.score resolves them
    assert "bert-base" in fails_with(CAT, "SELECT ModelId FROM Models WHERE ModelId IN ('m1', 'bert-bas')",
                                     "42704").hint
    fails_with(CAT, "SELECT ModelId FROM Models WHERE ReaderId = 'x'", "42704")  # no such column in Models
    translate("SELECT ModelId FROM Models WHERE ModelId LIKE 'bert%' AND ModelId <> 'm1'", CAT)


def test_models_columns_win_over_a_joined_table():
    t = translate("SELECT ModelId FROM Models JOIN public.licences l ON l.model_id = Models.ModelId", CAT)
    assert t.sql.startswith("SELECT models.model_id AS model_id")
    fails("SELECT ModelId FROM Models JOIN DataReaders r ON r.Input = Models.Input WHERE Input = 'Vision'", "42702")


def test_view_names_and_definitions_are_identifiers_and_literals():
    evil = 'x"; DROP TABLE shift.models; --'
    t = translate('CREATE SCORING VIEW "%s" AS SELECT ModelId FROM Models WHERE Input = \'a\'\'b\''
                  % evil.replace('"', '""'))
    create, comment = t.statements
    assert len(sqlglot.parse(create.sql, read="postgres")) == 1
    table = sqlglot.parse_one(create.sql, read="postgres").this
    assert table.name == evil and table.this.quoted
    text = _literals(comment.sql)[0]
    assert text.endswith("WHERE Input = 'a''b'") and catalog.parse_view_comment(text)[0] == "scoring"


# --------------------------------------------------------------------------
# Fuzz: any text gives a translation that parses, or a ShiftError; nothing else
# --------------------------------------------------------------------------

FUZZ_CATALOG = catalog.StaticCatalog(
    views=[catalog.ViewInfo("public", "best", "scoring", (("model_id", "text"), ("score", "double precision")))],
    tables={"public.licences": [("model_id", "text"), ("licence", "text")],
            "public.latencies": [("model_id", "text"), ("device", "text"), ("ms", "double precision")]},
    readers=["TestReader", "TrainReader", "Shapes"], models=["bert-base", "shapes10.resnet10t"])


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus.mutated(), st.booleans())
def test_fuzz_only_shift_errors(text, with_catalog):
    """Thousands of mutated queries: each translates to SQL PostgreSQL's grammar reads, or is a clean ShiftError."""
    try:
        translation = translate(text, FUZZ_CATALOG if with_catalog else None)
    except ShiftError as error:
        assert isinstance(error.sqlstate, str) and re.fullmatch(r"[0-9A-Z]{5}", error.sqlstate)
        assert error.sqlstate != "XX000"
        assert error.message and error.message == error.message.strip()
        return
    assert len(sqlglot.parse(translation.sql, read="postgres")) == len(translation.statements)


def test_corpus_translates():
    for text in corpus.SEEDS:
        translate(text, FUZZ_CATALOG)
