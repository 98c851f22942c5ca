"""expressions.py: the user's expressions, FROM sources and sub-queries, resolved against the catalog."""

import pytest
from sqlglot import exp

from pyfuncs.errors import FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, UNDEFINED_OBJECT, ShiftError
from pyfuncs.shiftql import parse_script
from pyfuncs.shiftql.expressions import expr, plain, sources
from pyfuncs.shiftql.named import define
from pyfuncs.shiftql.names import Scope
from tests.shiftql_passes import CAT, context, statement, text_of


def scope_of(ctx, select):
    found, _, _ = sources(ctx, select, None)
    return Scope(found)


def test_sources_give_our_relations_their_schema_and_an_alias():
    ctx, select = statement("SELECT ModelId FROM Models m JOIN public.licences l USING (ModelId)", CAT)
    found, from_, joins = sources(ctx, select, None)
    assert text_of(from_) == "FROM shift.models AS m"
    assert [s.sql_alias for s in found] == ["m", "l"]
    assert text_of(joins[0]) == "JOIN public.licences AS l USING (model_id)"


def test_an_unknown_relation_hints_at_writing_its_schema():
    ctx, select = statement("SELECT ModelId FROM licences", CAT)
    with pytest.raises(ShiftError) as raised:
        sources(ctx, select, None)
    assert raised.value.sqlstate == UNDEFINED_OBJECT
    assert raised.value.hint.endswith("e.g. public.licences")
    assert raised.value.detail.startswith("line 1, column 21:")


def test_a_sub_query_in_from_needs_a_name():
    ctx, select = statement("SELECT ModelId FROM (SELECT 1)")
    with pytest.raises(ShiftError, match="needs a name") as raised:
        sources(ctx, select, None)
    assert raised.value.sqlstate == SYNTAX_ERROR


def test_a_ranked_sub_query_in_from_becomes_an_implicit_view():
    ctx, select = statement("SELECT ModelId FROM (SELECT ModelId FROM Models ORDER BY CosineNN "
                            "TESTED ON a TRAINED ON b) AS t")
    found, from_, _ = sources(ctx, select, None)
    assert text_of(from_) == "FROM t AS t"
    assert found[0].key == "model_id" and list(ctx.implicit) == [from_.this.name]


def test_expr_resolves_columns_and_reads_a_named_query_after_in():
    text = "Q1 := SELECT ModelId FROM Models; SELECT ModelId FROM Models WHERE ModelId NOT IN Q1"
    ctx, script = context(text), parse_script(text).expressions
    define(ctx, script[0])
    condition = expr(ctx, script[1].args["where"].this, scope_of(ctx, script[1]))
    assert text_of(condition) == "NOT models.model_id IN (SELECT model_id FROM q1)"


def test_expr_refuses_parameters_and_dots():
    ctx, select = statement("SELECT ModelId FROM Models")
    scope = scope_of(ctx, select)
    with pytest.raises(ShiftError, match="parameters are not supported"):
        expr(ctx, exp.Add(this=exp.Placeholder(), expression=exp.Literal.number(1)), scope)
    with pytest.raises(ShiftError, match="unexpected . in"):
        expr(ctx, exp.Dot(this=exp.Literal.string("a"), expression=exp.to_identifier("b")), scope)
    with pytest.raises(ShiftError, match="unknown column 'nope'"):
        expr(ctx, exp.Add(this=exp.column("nope"), expression=exp.Literal.number(1)), scope)


def test_plain_keeps_the_users_sql_and_knows_its_columns():
    ctx, select = statement("SELECT l.licence AS lic, count(*) FROM public.licences l GROUP BY 1", CAT)
    built = plain(ctx, select, Scope([]))
    assert built.columns == ["lic", "?column?"] and built.key is None and not built.opaque
    assert text_of(built.query) == "SELECT l.licence AS lic, COUNT(*) FROM public.licences AS l GROUP BY 1"
    ctx, select = statement("SELECT * FROM public.licences", CAT)
    assert plain(ctx, select, Scope([])).opaque


def test_a_relation_with_column_aliases_is_refused():
    ctx, select = statement("SELECT ModelId FROM Models AS m(a, b)")
    with pytest.raises(ShiftError) as raised:
        sources(ctx, select, None)
    assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED
