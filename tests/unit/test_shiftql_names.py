"""names.py: identifiers PostgreSQL reads as written, and scopes that resolve the user's column names."""

import pytest
from sqlglot import exp

from pyfuncs.errors import AMBIGUOUS_COLUMN, UNDEFINED_OBJECT, ShiftError
from pyfuncs.shiftql import catalog
from pyfuncs.shiftql.names import Scope, Source, folded, ident, output_name


def models(alias="models", implicit=False):
    return Source(alias, {alias, *catalog.spellings(catalog.MODELS)}, tuple(catalog.MODELS.column_names()),
                  dict(catalog.MODELS.columns), relation=catalog.MODELS, implicit=implicit)


def column(name, table=None):
    return exp.column(name, table)


def test_ident_quotes_reserved_words_and_capitals_only():
    assert ident("order").sql(dialect="postgres") == '"order"'
    assert ident("Q1").sql(dialect="postgres") == '"Q1"'
    assert ident("q1").sql(dialect="postgres") == "q1"


def test_folded_lowers_unless_quoted():
    assert folded(exp.to_identifier("Abc")) == "abc"
    assert folded(exp.to_identifier("Abc", quoted=True)) == "Abc"
    assert folded(None) is None
    with pytest.raises(ShiftError):
        folded(exp.Literal.number(1))


def test_output_name_of_select_items():
    assert output_name(exp.alias_(exp.column("x"), "Y")) == "y"
    assert output_name(exp.column("Model_Id", "m")) == "model_id"
    assert output_name(exp.Literal.number(1)) is None


def test_resolve_maps_the_papers_spelling_to_the_table_column():
    scope = Scope([models()])
    assert scope.resolve(column("ModelId")).sql() == "models.model_id"
    assert scope.resolve(column("Modality", "Models")).sql() == "models.input"


def test_resolve_reports_ambiguity_between_two_of_our_relations():
    scope = Scope([models("a"), models("b")])
    with pytest.raises(ShiftError) as raised:
        scope.resolve(column("ModelId"))
    assert raised.value.sqlstate == AMBIGUOUS_COLUMN
    assert "a.model_id or b.model_id" in raised.value.hint


def test_models_win_over_a_users_table_with_the_same_column():
    licences = Source("l", {"l"}, ("model_id", "licence"))
    assert Scope([models(), licences]).resolve(column("ModelId")).sql() == "models.model_id"


def test_an_implicit_relation_answers_only_to_its_name():
    scope = Scope([models("r", implicit=True)])
    with pytest.raises(ShiftError) as raised:
        scope.resolve(column("ModelId"))
    assert raised.value.sqlstate == UNDEFINED_OBJECT
    assert scope.resolve(column("ModelId", "r")).sql() == "r.model_id"


def test_unknown_columns_pass_through_a_table_whose_columns_are_unknown():
    scope = Scope([Source("t", {"t"}, external=True)], Scope([models()]))
    assert scope.resolve(column("whatever")).sql() == "whatever"
    assert scope.resolve(column("Framework", "t")).sql() == "t.Framework"


def test_an_outer_scope_resolves_what_the_inner_one_lacks():
    inner = Scope([Source("l", {"l"}, ("licence",))], Scope([models()]))
    assert inner.resolve(column("ModelId")).sql() == "models.model_id"
    with pytest.raises(ShiftError) as raised:
        inner.resolve(column("nope", "zz"))
    assert str(raised.value).startswith("unknown table 'zz'")
