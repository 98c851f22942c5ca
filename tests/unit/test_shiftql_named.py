"""named.py: named queries, WITH and implicit views become CTEs of the statement."""

import pytest
from sqlglot import exp

from pyfuncs.errors import DUPLICATE_OBJECT, FEATURE_NOT_SUPPORTED, UNDEFINED_OBJECT, ShiftError
from pyfuncs.shiftql.context import Built
from pyfuncs.shiftql.named import add_cte, define, define_implicit, define_with, lookup, uses_named
from pyfuncs.shiftql.plan import PlanNode
from tests.shiftql_passes import CAT, context, statement, text_of


def test_define_adds_a_cte_and_a_name_that_reads_it():
    ctx, named = statement("Q1 := SELECT ModelId FROM Models ORDER BY UpstreamAccuracy DESC LIMIT 3; "
                           "SELECT ModelId FROM Q1")
    result = define(ctx, named)
    assert [name for name, _ in ctx.ctes] == ["q1"]
    assert ctx.names["q1"] is result and result.table.sql() == "q1"
    assert result.built.key == "model_id" and result.built.plan.kind == "named query"
    assert "ORDER BY models.upstream_accuracy DESC" in text_of(ctx.ctes[0][1])


def test_a_definition_over_the_users_tables_is_plain_sql():
    ctx, named = statement("L := SELECT licence FROM public.licences; SELECT 1", CAT)
    result = define(ctx, named)
    assert result.built.key is None and result.built.columns == ["licence"]
    assert text_of(ctx.ctes[0][1]) == "SELECT licences.licence FROM public.licences"


def test_a_name_is_defined_once_and_is_no_relations_name():
    ctx, named = statement("Q1 := SELECT ModelId FROM Models; SELECT 1")
    define(ctx, named)
    with pytest.raises(ShiftError) as twice:
        define(ctx, named)
    assert twice.value.sqlstate == DUPLICATE_OBJECT
    ctx, named = statement("Models := SELECT ModelId FROM Models; SELECT 1")
    with pytest.raises(ShiftError, match="is the name of a relation"):
        define(ctx, named)


def test_fresh_cte_names_do_not_clash_with_a_named_query():
    ctx, select = statement("SELECT ModelId FROM Models ORDER BY CosineNN TESTED ON a TRAINED ON b")
    ctx.used.add("nested")
    named = define_implicit(ctx, select, "nested")
    assert named.cte == "nested_2" and named.cte in ctx.implicit
    assert [name for name, _ in ctx.ctes] == ["nested_2_pool", "nested_2"]


def test_with_recursive_and_column_lists_are_refused():
    ctx = context("")
    body = exp.select("model_id").from_("models")
    recursive = exp.With(expressions=[exp.CTE(this=body, alias=exp.TableAlias(this=exp.to_identifier("q")))],
                         recursive=True)
    with pytest.raises(ShiftError) as raised:
        define_with(ctx, recursive)
    assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED
    columns = exp.With(expressions=[exp.CTE(this=body, alias=exp.TableAlias(
        this=exp.to_identifier("q"), columns=[exp.to_identifier("a")]))])
    with pytest.raises(ShiftError, match="column names after a WITH query name"):
        define_with(ctx, columns)
    assert ctx.ctes == [] and ctx.names == {}


def test_lookup_finds_a_persisted_view_and_names_the_known_ones_when_it_fails():
    ctx, ref = statement("best", CAT)
    named = lookup(ctx, ref)
    assert named.view is not None and named.table.sql() == "public.best"
    ctx, ref = statement("bets", CAT)
    with pytest.raises(ShiftError) as raised:
        lookup(ctx, ref)
    assert raised.value.sqlstate == UNDEFINED_OBJECT and "best" in raised.value.hint


def test_add_cte_keeps_the_limit_of_a_set_operation_by_wrapping_it():
    union = exp.union(exp.select("model_id").from_("a"), exp.select("model_id").from_("b")).limit(2)
    ctx = context("")
    add_cte(ctx, "u1", Built(union, ["model_id"], {}, PlanNode("union"), [], key="model_id"))
    assert text_of(ctx.ctes[0][1]).startswith("SELECT * FROM (SELECT model_id FROM a UNION")


def test_uses_named_lists_the_plans_a_block_reads_once():
    ctx, named = statement("Q1 := SELECT ModelId FROM Models; SELECT 1")
    q1 = define(ctx, named)
    reads = exp.select("*").from_("q1").join("q1")
    assert uses_named(ctx, reads, None, [reads]) == [q1.built.plan]
