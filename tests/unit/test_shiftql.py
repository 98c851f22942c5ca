"""SHiFT-QL → PostgreSQL: the queries of seed 000 §3.1–§3.2 and their translations.

Every golden test asserts the exact SQL and that PostgreSQL's grammar (sqlglot's
postgres dialect) reads it back as one statement.
"""

import re
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from pyfuncs.errors import ShiftError
from pyfuncs.shiftql import ScoringUse, catalog, explain_tree, parse_script, to_shiftql, translate
from pyfuncs.shiftql.dialect import NamedQuery, QueryRef, ScoringClause

ROOT = Path(__file__).resolve().parents[2]

# seed 000 §3.2, verbatim (Q4 refers to Q1, so it is a script with both)
Q1 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY UpstreamAccuracy DESC LIMIT 1"""
Q2 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY CosineNN ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
Q3 = """SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY Linear(lr=0.1) ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
Q4_SCRIPT = """Q1 := SELECT ModelId FROM Models
      WHERE Input == 'Vision'
      ORDER BY UpstreamAccuracy DESC LIMIT 1
Q4 := Q1
      UNION
      SELECT ModelId FROM Models
      WHERE Input == 'Vision' AND ModelId NOT IN Q1
      ORDER BY Linear(lr=0.1) ASC LIMIT 1
      TESTED ON TestReader TRAINED ON TrainReader"""
# the paper separates the definitions by layout; SHiFT-QL separates statements by ';'
Q4 = Q4_SCRIPT.replace("LIMIT 1\nQ4 :=", "LIMIT 1;\nQ4 :=")

# seed 000 §3.1, the hybrid example, verbatim
HYBRID = """(SELECT ModelId FROM Models
WHERE Input == 'Vision'
ORDER BY UpstreamAccuracy DESC LIMIT 1) Q1

UNION

(SELECT ModelId FROM Models
WHERE Input == 'Vision' AND ModelId NOT IN Q1
ORDER BY Linear(lr=0.1) ASC LIMIT 1
TESTED ON TestReader TRAINED ON TrainReader) Q2"""

LINEAR_LR_01 = '{"batch_size":64,"epochs":10,"l2":0.0001,"lr":0.1,"seed":0}'

SQL_Q1 = ("SELECT models.model_id AS model_id, models.upstream_accuracy AS score FROM shift.models AS models "
          "WHERE models.input = 'Vision' ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 1")


def scored(pool, scorer, params_json, test="TestReader", train="TrainReader", desc=False):
    return ("SELECT p.model_id AS model_id, s.score AS score FROM %s AS p JOIN shift.score('%s', CAST('%s' AS JSONB), "
            "ARRAY(SELECT model_id FROM %s), '%s', '%s') AS s ON s.model_id = p.model_id "
            "ORDER BY s.score %s, p.model_id" % (pool, scorer, params_json, pool, test, train,
                                                   "DESC NULLS LAST" if desc else "ASC"))


SQL_Q2 = ("WITH pool AS (SELECT * FROM shift.models AS models WHERE models.input = 'Vision') "
          + scored("pool", "CosineNN", '{"metric":"cosine"}') + " LIMIT 1")
SQL_Q3 = ("WITH pool AS (SELECT * FROM shift.models AS models WHERE models.input = 'Vision') "
          + scored("pool", "Linear", LINEAR_LR_01) + " LIMIT 1")
SQL_Q1_CTE = ("q1 AS (SELECT models.model_id AS model_id, models.upstream_accuracy AS score FROM shift.models AS models "
              "WHERE models.input = 'Vision' ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 1)")
SQL_Q4 = ("WITH " + SQL_Q1_CTE + ", q4_pool AS (SELECT * FROM shift.models AS models WHERE models.input = 'Vision' "
          "AND NOT models.model_id IN (SELECT model_id FROM q1)) SELECT * FROM q1 UNION ("
          + scored("q4_pool", "Linear", LINEAR_LR_01) + " LIMIT 1) ORDER BY model_id, score")
SQL_HYBRID = ("WITH " + SQL_Q1_CTE + ", q2_pool AS (SELECT * FROM shift.models AS models WHERE models.input = 'Vision' "
              "AND NOT models.model_id IN (SELECT model_id FROM q1)), q2 AS ("
              + scored("q2_pool", "Linear", LINEAR_LR_01) + " LIMIT 1) "
              "SELECT * FROM q1 UNION SELECT * FROM q2 ORDER BY model_id, score")


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
    text = (ROOT / "sql" / "shift--0.1.0.sql").read_text()
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
    assert t.scoring == [ScoringUse("CosineNN", {"metric": "cosine"}, "TestReader", "TrainReader")]


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


def test_q4_as_the_paper_lays_it_out_needs_semicolons():
    err = fails(Q4_SCRIPT, "42601")
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
    assert "pool AS (SELECT * FROM q1)" in sql
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
    assert sql == ("WITH pool AS (SELECT * FROM shift.models AS models) "
                   + scored("pool", "EuclideanNN", '{"metric":"euclidean"}') + " LIMIT 5")
    desc = translate("SELECT ModelId FROM Models ORDER BY LinearAccuracy DESC LIMIT 3 TESTED ON TestReader "
                     "TRAINED ON TrainReader").sql
    assert "ORDER BY s.score DESC NULLS LAST, p.model_id LIMIT 3" in desc


def test_scorer_params_are_resolved_and_canonical():
    t = golden("SELECT ModelId FROM Models ORDER BY Linear(lr=0.1, epochs=3) LIMIT 1 "
               "TESTED ON TestReader TRAINED ON TrainReader",
               "WITH pool AS (SELECT * FROM shift.models AS models) "
               + scored("pool", "Linear", '{"batch_size":64,"epochs":3,"l2":0.0001,"lr":0.1,"seed":0}') + " LIMIT 1")
    assert t.scoring[0].params == {"lr": 0.1, "l2": 0.0001, "batch_size": 64, "epochs": 3, "seed": 0}


def test_extra_columns_follow_model_id_and_score():
    golden("SELECT ModelId, NumParams FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 2",
           "SELECT models.model_id AS model_id, models.upstream_accuracy AS score, models.num_params "
           "FROM shift.models AS models ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id LIMIT 2")
    golden("SELECT ModelId, NumParams FROM Models WHERE NumParams < 10000000 ORDER BY CosineNN LIMIT 3 "
           "TESTED ON TestReader TRAINED ON TrainReader",
           "WITH pool AS (SELECT * FROM shift.models AS models WHERE models.num_params < 10000000) "
           + scored("pool", "CosineNN", '{"metric":"cosine"}').replace(
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
    assert "pool (q2_pool): SELECT * FROM shift.models AS models WHERE models.input = 'Vision' " \
           "AND NOT models.model_id IN (SELECT model_id FROM q1)" in tree
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
    fails("SELECT ModelId FROM Models GROUP BY ModelId", "0A000")
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
# Fuzz: any text gives a translation that parses, or a ShiftError; nothing else
# --------------------------------------------------------------------------

SEEDS = [Q1, Q2, Q3, Q4, HYBRID]
NOISE = "()'\";:=<>/*-,.$\\ \n\tQ1SELECTUNIONSHIFT0123456789é[]{}!@#%^&|?~`"


@st.composite
def mutated(draw):
    tokens = draw(st.sampled_from(SEEDS)).split(" ")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "blank"]))
        if op == "delete" and len(tokens) > 1:
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[draw(st.integers(0, len(tokens) - 1))])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "insert":
            at = draw(st.integers(0, len(tokens[i])))
            tokens[i] = tokens[i][:at] + draw(st.text(NOISE, min_size=1, max_size=3)) + tokens[i][at:]
        else:
            tokens[i] = ""
    return " ".join(tokens)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_only_shift_errors(text):
    try:
        translation = translate(text)
    except ShiftError as error:
        assert isinstance(error.sqlstate, str) and len(error.sqlstate) == 5
        assert error.message and error.message == error.message.strip()
        return
    assert len(sqlglot.parse(translation.sql, read="postgres")) == 1
