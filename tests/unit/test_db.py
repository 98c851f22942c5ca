"""pyfuncs.db: statements are prepared once per session, not once per SQL function call."""

import pytest

from pyfuncs import db


class RecordingPlpy:
    """The two calls of PL/Python's plpy that Plpy uses, recording what was prepared."""

    def __init__(self):
        self.prepared = []

    def prepare(self, sql, types):
        self.prepared.append((sql, tuple(types)))
        return ("plan", sql, tuple(types))

    def execute(self, plan_or_sql, args=None):
        return [(plan_or_sql, args)]


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(db, "_PLANS", type(db._PLANS)())


def test_a_statement_is_prepared_once_across_calls():
    plpy = RecordingPlpy()
    for value in ("a", "b", "c"):
        # each SQL function call makes a new adapter over the session's plpy
        rows = db.Plpy(plpy).execute("SELECT $1::text", ["text"], [value])
        assert rows == [(("plan", "SELECT $1::text", ("text",)), [value])]
    assert plpy.prepared == [("SELECT $1::text", ("text",))]


def test_types_are_part_of_the_key():
    plpy = RecordingPlpy()
    db.Plpy(plpy).execute("SELECT $1", ["text"], ["x"])
    db.Plpy(plpy).execute("SELECT $1", ["integer"], [1])
    assert len(plpy.prepared) == 2


def test_unparameterised_sql_is_not_prepared():
    plpy = RecordingPlpy()
    assert db.Plpy(plpy).execute("SELECT 1") == [("SELECT 1", None)]
    assert plpy.prepared == []


def test_the_cache_is_bounded_and_keeps_the_recently_used(monkeypatch):
    monkeypatch.setattr(db, "_MAX_PLANS", 3)
    plpy = RecordingPlpy()
    adapter = db.Plpy(plpy)
    for i in range(3):
        adapter.execute("SELECT %d" % i, ["text"], ["x"])
    adapter.execute("SELECT 0", ["text"], ["x"])       # used again: now the most recent
    adapter.execute("SELECT 3", ["text"], ["x"])       # evicts SELECT 1, the least recent
    assert len(db._PLANS) == 3
    adapter.execute("SELECT 0", ["text"], ["x"])
    adapter.execute("SELECT 1", ["text"], ["x"])
    assert [sql for sql, _ in plpy.prepared] == ["SELECT 0", "SELECT 1", "SELECT 2", "SELECT 3", "SELECT 1"]
