"""generate.py: the final statement with only the CTEs it reads, printed once, read back as PostgreSQL."""

import pytest
from sqlglot import exp

from pyfuncs.errors import SYNTAX_ERROR, ShiftError
from pyfuncs.shiftql.context import Built
from pyfuncs.shiftql.generate import finish, pool_ids_sql, sql, translation_of
from pyfuncs.shiftql.nodes import QueryRef, Script
from pyfuncs.shiftql.plan import PlanNode, ScoringUse, Statement
from tests.shiftql_passes import context


def built(query, block=True, order=()):
    return Built(query, ["model_id", "score"], {}, PlanNode("metadata view"), list(order), block=block,
                 key="model_id")


def test_finish_keeps_only_the_ctes_the_statement_reads_through_each_other():
    ctx = context("")
    ctx.ctes += [("a", exp.select("model_id").from_("shift.models")), ("b", exp.select("model_id").from_("a")),
                 ("unused", exp.select("1"))]
    final = finish(ctx, built(exp.select("*").from_("b")))
    assert sql(final) == "WITH a AS (SELECT model_id FROM shift.models), b AS (SELECT model_id FROM a) " \
                         "SELECT * FROM b"
    assert ctx.emitted == {"a", "b"}


def test_finish_orders_a_query_that_is_not_one_block():
    ctx = context("")
    order = [exp.Ordered(this=exp.column("model_id"), nulls_first=False)]
    assert sql(finish(ctx, built(exp.select("*").from_("q"), block=False, order=order))) == \
        "SELECT * FROM q ORDER BY model_id"


def test_finish_refuses_what_only_shiftql_can_read():
    ctx = context("")
    query = exp.select("*").from_("q").where(exp.In(this=exp.column("model_id"),
                                                    field=QueryRef(this=exp.to_identifier("q1"))))
    with pytest.raises(ShiftError, match="could not translate"):
        finish(ctx, built(query))


def test_pool_ids_sql_is_none_when_the_pool_reads_a_scoring_call():
    ctx = context("")
    call = exp.Table(this=exp.Anonymous(this="score", expressions=[]), db=exp.to_identifier("shift"))
    ctx.ctes += [("p", exp.select("model_id").from_("shift.models")), ("s", exp.select("model_id").from_(call)),
                 ("p2", exp.select("model_id").from_("s"))]
    assert pool_ids_sql(ctx, "p") == "WITH p AS (SELECT model_id FROM shift.models) SELECT DISTINCT model_id FROM p"
    assert pool_ids_sql(ctx, "p2") is None


def test_translation_lists_the_scoring_views_of_emitted_pools_only():
    ctx = context("")
    use = ScoringUse("CosineNN", {}, "a", "b")
    ctx.ctes.append(("p", exp.select("model_id").from_("shift.models")))
    ctx.uses += [("p", use), ("gone", use)]
    ctx.requests += [("p", use, 3, False), ("gone", use, None, True)]
    ctx.emitted.add("p")
    result = translation_of(ctx, Script(expressions=[]), [Statement("query", "SELECT 1")], None)
    assert result.sql == "SELECT 1" and result.scoring == [use] and result.plan.kind == "nothing"
    assert [(r.top_k, r.pool_sql is not None) for r in result.requests] == [(3, True)]


def test_translation_refuses_text_that_does_not_read_back_as_one_statement():
    with pytest.raises(ShiftError) as raised:
        translation_of(context(""), Script(expressions=[]), [Statement("query", "SELECT 1; SELECT 2")], None)
    assert raised.value.sqlstate == SYNTAX_ERROR and raised.value.detail == "SELECT 1; SELECT 2"
