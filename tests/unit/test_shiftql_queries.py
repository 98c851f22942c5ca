"""queries.py: a query dispatched by kind, set operations rescored by their first operand, one SELECT block."""

import pytest

from pyfuncs.errors import FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, WRONG_OBJECT_TYPE, ShiftError
from pyfuncs.shiftql.queries import query
from tests.shiftql_passes import CAT, statement, text_of

A = "SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 2 TESTED ON TestReader TRAINED ON TrainReader"
B = "SELECT ModelId FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 2"


def built(text, label=None):
    ctx, node = statement(text, CAT)
    return ctx, query(ctx, node, label)


def test_a_block_over_a_view_keeps_its_scores():
    ctx, result = built("SELECT ModelId FROM best")
    assert text_of(result.query).startswith("SELECT best.model_id AS model_id, best.score AS score")
    assert "ORDER BY best.score DESC NULLS LAST" in text_of(result.query)


def test_a_named_query_read_by_name_is_select_star_from_its_cte():
    ctx, result = built("(%s) Q1" % B)
    assert text_of(result.query) == "SELECT * FROM q1" and [n for n, _ in ctx.ctes] == ["q1"]
    assert not result.block and result.key == "model_id"


def test_intersect_of_scored_blocks_rescored_by_the_first_operand():
    ctx, result = built("%s INTERSECT %s" % (A, B), "q")
    assert [n for n, _ in ctx.ctes] == ["q_pool", "q_part", "q_part_2"]
    sql = text_of(result.query)
    assert sql.startswith("SELECT c.model_id AS model_id, (SELECT x.score FROM q_part AS x WHERE")
    assert "q_part_2 AS x" not in sql  # INTERSECT keeps the first operand's score
    assert result.plan.kind == "intersect" and len(result.plan.children) == 2


def test_union_all_keeps_the_rows_as_they_are():
    ctx, result = built("%s UNION ALL %s" % (A, B))
    assert type(result.query).__name__ == "Union" and "q_part" not in text_of(result.query)
    assert result.plan.kind == "union all"


def test_set_operations_must_combine_like_rows():
    with pytest.raises(ShiftError) as raised:
        built("SELECT ModelId, Framework FROM Models UNION %s" % B)
    assert raised.value.sqlstate == SYNTAX_ERROR and raised.value.detail.startswith("left: model_id, score, ")
    with pytest.raises(ShiftError) as raised:
        built("SELECT ReaderId FROM DataReaders UNION %s" % B)
    assert raised.value.sqlstate == WRONG_OBJECT_TYPE


def test_a_block_needs_from_and_a_subject():
    with pytest.raises(ShiftError, match="must read FROM Models"):
        built("SELECT 1")
    with pytest.raises(ShiftError, match="returns models or data readers") as raised:
        built("SELECT licence FROM public.licences")
    assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED


def test_a_scorer_orders_alone_and_a_reader_clause_needs_one():
    with pytest.raises(ShiftError, match="orders by its scorer alone"):
        built("SELECT ModelId FROM Models ORDER BY CosineNN, NumParams TESTED ON TestReader TRAINED ON TrainReader")
    with pytest.raises(ShiftError, match="TESTED ON and TRAINED ON needs a scorer in ORDER BY"):
        built("SELECT ModelId FROM Models ORDER BY NumParams TESTED ON TestReader TRAINED ON TrainReader")
