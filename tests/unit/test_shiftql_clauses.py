"""clauses.py: WHERE with its id checks, GROUP BY / DISTINCT ON keys, LIMIT, and the select list of a block."""

import pytest

from pyfuncs.errors import DUPLICATE_COLUMN, FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, UNDEFINED_OBJECT, ShiftError
from pyfuncs.shiftql.clauses import constant_clause, extras, grouping, limit_lines, projection_ref, where
from pyfuncs.shiftql.expressions import sources
from pyfuncs.shiftql.names import Scope
from tests.shiftql_passes import CAT, statement, text_of


def block(text, cat=CAT):
    ctx, select = statement(text, cat)
    found, _, _ = sources(ctx, select, None)
    return ctx, select, Scope(found)


def test_where_names_the_closest_registered_model_for_a_misspelt_id():
    ctx, select, scope = block("SELECT ModelId FROM Models WHERE ModelId = 'm3' OR Framework = 'm3'")
    with pytest.raises(ShiftError) as raised:
        where(ctx, select, scope)
    assert raised.value.sqlstate == UNDEFINED_OBJECT and str(raised.value) == "unknown model 'm3'"
    ctx, select, scope = block("SELECT ModelId FROM Models WHERE ModelId IN ('m1', 'm2') AND Framework = 'x'")
    assert text_of(where(ctx, select, scope)) == \
        "WHERE models.model_id IN ('m1', 'm2') AND models.framework = 'x'"


def test_where_checks_reader_ids_too():
    ctx, select, scope = block("SELECT ReaderId FROM DataReaders WHERE 'Nope' = ReaderId")
    with pytest.raises(ShiftError, match="unknown reader 'Nope'"):
        where(ctx, select, scope)


def test_group_by_a_position_or_an_alias_means_the_selected_expression():
    ctx, select, scope = block("SELECT Framework AS fw, max(UpstreamAccuracy) FROM Models GROUP BY 1, fw")
    group, having, distinct = grouping(ctx, select, scope)
    assert text_of(group) == "GROUP BY models.framework, models.framework"
    assert having is None and distinct is None
    ctx, select, scope = block("SELECT Framework FROM Models GROUP BY 3")
    with pytest.raises(ShiftError, match="position 3 is not in the select list") as raised:
        grouping(ctx, select, scope)
    assert raised.value.sqlstate == SYNTAX_ERROR


def test_grouping_sets_are_refused():
    ctx, select, scope = block("SELECT Framework FROM Models GROUP BY ROLLUP (Framework)")
    with pytest.raises(ShiftError) as raised:
        grouping(ctx, select, scope)
    assert raised.value.sqlstate == FEATURE_NOT_SUPPORTED


def test_a_column_of_the_relation_wins_over_a_select_alias_of_the_same_name():
    ctx, select, scope = block("SELECT NumParams AS input FROM Models ORDER BY input")
    key = select.args["order"].expressions[0].this
    assert text_of(projection_ref(ctx, key, scope, select)) == "models.input"


def test_limit_and_offset_are_constants_and_show_in_the_plan():
    ctx, select, scope = block("SELECT ModelId FROM Models LIMIT 3 OFFSET 1")
    assert text_of(constant_clause(ctx, select, "limit")) == "LIMIT 3"
    assert limit_lines(select) == ["limit 3", "offset 1"]
    ctx, select, scope = block("SELECT ModelId FROM Models LIMIT NumParams")
    with pytest.raises(ShiftError, match="unknown column"):
        constant_clause(ctx, select, "limit")


def test_extras_leave_out_the_id_and_name_the_rest():
    ctx, select, scope = block("SELECT ModelId, Framework, NumParams + 1, l.licence AS Lic FROM Models "
                               "JOIN public.licences l ON l.model_id = Models.ModelId")
    out, names, types, first = extras(ctx, select, scope, scope.sources[0])
    assert names == ["framework", "?column?", "lic"] and first == "model_id"
    assert types == {"framework": "text", "?column?": None, "lic": "text"}
    assert [text_of(e) for e in out] == ["models.framework", "models.num_params + 1", "l.licence AS lic"]


def test_a_star_expands_to_the_known_columns_once():
    ctx, select, scope = block("SELECT l.*, * FROM Models JOIN public.licences l ON l.model_id = Models.ModelId")
    _, names, _, first = extras(ctx, select, scope, scope.sources[0])
    assert names[0] == "licence" and names.count("licence") == 1 and "model_id" not in names
    assert first == "model_id"


def test_an_extra_may_not_take_the_name_score():
    ctx, select, scope = block("SELECT ModelId, NumParams AS score FROM Models")
    with pytest.raises(ShiftError) as raised:
        extras(ctx, select, scope, scope.sources[0])
    assert raised.value.sqlstate == DUPLICATE_COLUMN
