"""ranking.py: which ORDER BY key is a scorer or metric, its parameters, and the reader clause."""

import pytest
from sqlglot import exp

from pyfuncs import scorers
from pyfuncs.errors import INVALID_PARAMETER, SYNTAX_ERROR, UNDEFINED_OBJECT, ShiftError
from pyfuncs.shiftql import parse_script
from pyfuncs.shiftql.expressions import sources
from pyfuncs.shiftql.names import Scope
from pyfuncs.shiftql.ranking import NOT_CONSTANT, constant, is_view_query, params, ranking_of, reader_form, top_k
from tests.shiftql_passes import CAT, statement


def first_key(text, cat=CAT):
    ctx, select = statement(text, cat)
    found, _, _ = sources(ctx, select, None)
    key = select.args["order"].expressions[0]
    return ctx, select, Scope(found), key


def test_is_view_query_tells_a_scorer_from_a_column():
    assert is_view_query(parse_script("SELECT ModelId FROM Models ORDER BY CosineNN").expressions[0])
    assert is_view_query(parse_script("SELECT ModelId FROM Models ORDER BY Linear(lr=0.1)").expressions[0])
    assert not is_view_query(parse_script("SELECT ModelId FROM Models ORDER BY NumParams").expressions[0])
    # a select alias of a scorer's name is the alias
    assert not is_view_query(parse_script("SELECT NumParams AS CosineNN FROM Models ORDER BY CosineNN").expressions[0])


def test_ranking_of_returns_the_registered_scorer_and_its_arguments():
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY KNN(k=3) TESTED ON a TRAINED ON b")
    scorer, args = ranking_of(ctx, key.this, scope, select, select.args.get("scoring"))
    assert scorer is scorers.get("KNN") and len(args) == 1
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY NumParams")
    assert ranking_of(ctx, key.this, scope, select, None) is None


def test_a_misspelt_scorer_is_unknown_but_a_misspelt_column_is_left_to_the_column_check():
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY CosinNN TESTED ON a TRAINED ON b")
    with pytest.raises(ShiftError) as raised:
        ranking_of(ctx, key.this, scope, select, select.args.get("scoring"))
    assert raised.value.sqlstate == UNDEFINED_OBJECT and "CosineNN" in raised.value.hint
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY NumParam")
    assert ranking_of(ctx, key.this, scope, select, None) is None


def test_params_are_completed_and_checked():
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY KNN(k=3)")
    assert params(ctx, scorers.get("KNN"), key.this.expressions) == {"k": 3, "metric": "cosine"}
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY KNN(k=1 + 1)")
    with pytest.raises(ShiftError, match="must be a constant") as raised:
        params(ctx, scorers.get("KNN"), key.this.expressions)
    assert raised.value.sqlstate == INVALID_PARAMETER
    ctx, select, scope, key = first_key("SELECT ModelId FROM Models ORDER BY KNN(k=1, K=2)")
    with pytest.raises(ShiftError, match="given twice"):
        params(ctx, scorers.get("KNN"), key.this.expressions)


def test_constant_reads_literals_negations_and_bare_words():
    assert constant(exp.Neg(this=exp.Literal.number("0.5"))) == -0.5
    assert constant(exp.Literal.number("12")) == 12
    assert constant(exp.column("cosine")) == "cosine"
    assert constant(exp.Neg(this=exp.Boolean(this=True))) is NOT_CONSTANT


def test_top_k_is_limit_plus_offset_when_both_are_integers():
    def k(text):
        return top_k(parse_script(text).expressions[0])
    assert k("SELECT ModelId FROM Models LIMIT 3 OFFSET 2") == 5
    assert k("SELECT ModelId FROM Models OFFSET 2") is None
    assert k("SELECT ModelId FROM Models LIMIT 0") is None


def test_reader_form_of_each_kind_of_scorer():
    def form(text, name):
        ctx, select = statement(text, CAT)
        key = select.args["order"].expressions[0]
        return reader_form(ctx, scorers.get(name), select.args.get("scoring"), key)
    assert form("SELECT ModelId FROM Models ORDER BY CosineNN TESTED ON testreader TRAINED ON TrainReader",
                "CosineNN") == ("task", {"tested_on": "testreader", "trained_on": "TrainReader"})
    assert form("SELECT ModelId FROM Models ORDER BY FineTune", "FineTune") == ("benchmark", {})
    assert form("SELECT ReaderId FROM DataReaders ORDER BY Task2Vec TESTED ON TestReader",
                "Task2Vec") == ("similarity", {"tested_against": "TestReader"})
    with pytest.raises(ShiftError, match="needs TRAINED ON <train reader>") as raised:
        form("SELECT ModelId FROM Models ORDER BY CosineNN TESTED ON TestReader", "CosineNN")
    assert raised.value.sqlstate == SYNTAX_ERROR
    with pytest.raises(ShiftError, match="unknown reader 'Nope'"):
        form("SELECT ModelId FROM Models ORDER BY CosineNN TESTED ON Nope TRAINED ON TrainReader", "CosineNN")
