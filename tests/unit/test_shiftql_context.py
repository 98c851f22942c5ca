"""context.py: fresh CTE names, and persisted views as the script leaves them so far."""

from pyfuncs.shiftql import catalog
from tests.shiftql_passes import CAT, context


def test_fresh_names_count_up_from_two():
    ctx = context("")
    assert [ctx.fresh("q"), ctx.fresh("q"), ctx.fresh("q"), ctx.fresh("q_2")] == ["q", "q_2", "q_3", "q_2_2"]


def test_views_made_or_dropped_by_the_script_hide_the_catalogs():
    ctx = context("", CAT)
    assert ctx.view("public", "best") is not None
    ctx.view_changes[("public", "best")] = None
    made = catalog.ViewInfo("other", "near", "dataset similarity", (), False, "")
    ctx.view_changes[("other", "near")] = made
    assert ctx.view("public", "best") is None
    assert ctx.views() == [made]
    assert ctx.view_display(made) == "other.near" and ctx.view_display(CAT.views()[0]) == "best"
