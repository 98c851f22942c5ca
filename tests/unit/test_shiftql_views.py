"""views.py: CREATE and DROP of persisted scoring and dataset similarity views (seed 000 §3.1)."""

import pytest

from pyfuncs.errors import DUPLICATE_OBJECT, DUPLICATE_TABLE, UNDEFINED_OBJECT, WRONG_OBJECT_TYPE, ShiftError
from pyfuncs.shiftql import catalog
from pyfuncs.shiftql.views import create_view, drop_view
from tests.shiftql_passes import CAT, statement


def test_create_makes_the_view_and_its_comment_and_the_script_sees_it():
    text = "CREATE SCORING VIEW top AS SELECT ModelId FROM Models ORDER BY NumParams DESC LIMIT 2"
    ctx, node = statement(text, CAT)
    made, plan = create_view(ctx, node, False)
    assert [s.kind for s in made] == ["create view", "comment"]
    assert made[0].sql.startswith("CREATE VIEW public.top WITH (security_invoker=TRUE) AS SELECT")
    info = made[0].view
    assert (info.kind, info.descending, info.definition) == ("scoring", True, text)
    assert made[1].sql == "COMMENT ON VIEW public.top IS '%s'" % catalog.view_comment("scoring", True, text)
    assert ctx.view("public", "top") is info
    assert plan.kind == "create scoring view" and plan.name == "public.top"


def test_create_refuses_an_existing_view_a_relations_name_and_the_wrong_rows():
    cases = [("CREATE SCORING VIEW best AS SELECT ModelId FROM Models", DUPLICATE_TABLE),
             ("CREATE SCORING VIEW models AS SELECT ModelId FROM Models", DUPLICATE_OBJECT),
             ("CREATE OR REPLACE DATASET SIMILARITY VIEW best AS SELECT ReaderId FROM DataReaders",
              WRONG_OBJECT_TYPE),
             ("CREATE SCORING VIEW r AS SELECT ReaderId FROM DataReaders", WRONG_OBJECT_TYPE)]
    for text, sqlstate in cases:
        ctx, node = statement(text, CAT)
        with pytest.raises(ShiftError) as raised:
            create_view(ctx, node, False)
        assert raised.value.sqlstate == sqlstate, text
        assert ctx.view_changes == {}


def test_drop_forgets_the_view_for_the_rest_of_the_script():
    ctx, node = statement("DROP SCORING VIEW best CASCADE", CAT)
    made, plan = drop_view(ctx, node, False)
    assert [s.sql for s in made] == ["DROP VIEW public.best CASCADE"]
    assert ctx.view("public", "best") is None and plan.name == "public.best"
    with pytest.raises(ShiftError) as raised:
        drop_view(ctx, node, False)
    assert raised.value.sqlstate == UNDEFINED_OBJECT


def test_drop_if_exists_of_an_absent_view_does_nothing_and_a_wrong_kind_is_refused():
    ctx, node = statement("DROP SCORING VIEW IF EXISTS nothere", CAT)
    made, plan = drop_view(ctx, node, False)
    assert made == [] and plan.name == "public.nothere (absent)"
    ctx, node = statement("DROP DATASET SIMILARITY VIEW best", CAT)
    with pytest.raises(ShiftError, match="is a scoring view") as raised:
        drop_view(ctx, node, False)
    assert raised.value.sqlstate == WRONG_OBJECT_TYPE
