"""The translator's bounds: text size, tokens and nodes refused before the stage they would make big; cancels."""

import importlib

import pytest

from pyfuncs.errors import ShiftError
from pyfuncs.shiftql import catalog, dialect, limits, translate

driver = importlib.import_module("pyfuncs.shiftql.translate")  # the module, which the package's name hides


def _ors(n):
    return "SELECT ModelId FROM Models WHERE " + " OR ".join("NumParams = %d" % i for i in range(n))


def _refused(text, sqlstate, **kw):
    with pytest.raises(ShiftError) as info:
        translate(text, **kw)
    assert info.value.sqlstate == sqlstate, info.value.message
    return info.value


def test_a_long_text_is_refused_before_it_is_tokenized(monkeypatch):
    def tokenize(*_):
        raise AssertionError("tokenized")

    monkeypatch.setattr(dialect.ShiftQL.Tokenizer, "tokenize", tokenize)
    text = _ors(500_000)  # about 10 MB: once drove a backend past 6 GB
    error = _refused(text, "54000")
    assert error.message == "SHiFT-QL text of %d characters is longer than the limit of %d" % (
        len(text), limits.MAX_TEXT_CHARS)


def test_too_many_tokens_are_refused_before_they_are_parsed(monkeypatch):
    def parse(*_):
        raise AssertionError("parsed")

    monkeypatch.setattr(dialect.ShiftQL.Parser, "parse", parse)
    text = "SELECT ModelId FROM Models WHERE ModelId IN (%s)" % ",".join(["1"] * 30_000)
    assert len(text) < limits.MAX_TEXT_CHARS
    error = _refused(text, "54001")
    assert "of 60008 tokens is more than the limit of %d" % limits.MAX_TOKENS in error.message


def test_too_many_nodes_are_refused_before_any_pass_runs(monkeypatch):
    def passes(*_):
        raise AssertionError("translated")

    monkeypatch.setattr(driver, "_script", passes)
    text = _ors(11_000)  # 44,000 tokens, 55,000 nodes
    error = _refused(text, "54001")
    assert error.message == "SHiFT-QL text parses to more than the limit of %d syntax nodes" % limits.MAX_NODES


def test_a_big_real_query_is_within_the_limits():
    ids = ", ".join("'model-%d'" % i for i in range(10_000))  # a pool of ten thousand models by id
    out = translate("SELECT ModelId FROM Models WHERE ModelId IN (%s) ORDER BY NumParams LIMIT 3" % ids)
    assert "'model-9999'" in out.sql


def test_deep_nesting_is_statement_too_complex():
    error = _refused("SELECT ModelId FROM Models WHERE " + "(" * 3000 + "1 = 1" + ")" * 3000, "54001")
    assert "nested too deeply" in error.message


class Cancelled(Exception):
    """Stands for plpy's QueryCanceled: whatever PostgreSQL raised must come out unchanged."""


class CancellingCatalog(catalog.StaticCatalog):
    def __init__(self, after):
        super().__init__()
        self.calls, self.after = 0, after

    def check_interrupts(self):
        self.calls += 1
        if self.calls > self.after:
            raise Cancelled("canceling statement due to user request")


def test_the_translation_checks_for_a_cancel_while_parsing_and_translating(monkeypatch):
    monkeypatch.setattr(limits, "CHECK_SECONDS", 0.0)
    cat = CancellingCatalog(after=10 ** 9)
    translate(_ors(2000), cat)
    assert cat.calls > 8000  # a check at every parser step, not only between the stages


@pytest.mark.parametrize("after", [0, 3, 500, 9000])
def test_a_cancel_is_raised_as_postgresql_raised_it(monkeypatch, after):
    monkeypatch.setattr(limits, "CHECK_SECONDS", 0.0)
    with pytest.raises(Cancelled, match="canceling statement"):
        translate(_ors(2000), CancellingCatalog(after))


def test_without_a_database_there_is_nothing_to_check():
    assert translate("SELECT ModelId FROM Models", catalog.StaticCatalog()).sql
    assert limits.Interrupts().check() is None


def test_the_database_catalog_checks_by_running_a_statement():
    class Db:
        def __init__(self):
            self.sql = []

        def one(self, sql, *args):
            return {"s": None}

        def execute(self, sql, *args):
            self.sql.append(sql)
            return []

    db = Db()
    catalog.DatabaseCatalog(db).check_interrupts()
    assert db.sql == ["SELECT 1"]
