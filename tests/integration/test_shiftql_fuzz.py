"""Mutated SHiFT-QL through the real shift.translate and shift.query: clean SQLSTATE errors, a living backend.

A database of its own, with the SHiFT-QL fixture's models, readers and tables
but no worker: a mutation that still asks for scores fails at once with 55000
instead of waiting, and every statement runs under a short statement_timeout.
"""

import re

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from tests import shiftql_corpus as corpus
from tests.integration.conftest import setup_shiftql
from shift_cli.testbed import Database


@pytest.fixture(scope="module")
def fuzz_conn(cluster, zoo):
    with Database(cluster, "shift_ql_fuzz") as database:
        setup_shiftql(database, cluster, zoo, "shift_ql_fuzz")
        with database.connect() as conn:
            conn.execute("SET statement_timeout = '5s'")
            yield conn, conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def _clean(error):
    diag = error.diag
    assert diag.sqlstate and re.fullmatch(r"[0-9A-Z]{5}", diag.sqlstate), (type(error), str(error))
    assert diag.sqlstate != "XX000", diag.message_primary  # no internal error
    assert diag.message_primary and not diag.message_primary.startswith(("plpy", "spiexceptions", "Traceback"))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=corpus.mutated())
def test_mutated_queries_fail_cleanly_in_postgresql(fuzz_conn, text):
    conn, pid = fuzz_conn
    translated = None
    try:
        translated = conn.execute("SELECT shift.translate(%s)", (text,)).fetchone()[0]
    except psycopg.Error as error:
        _clean(error)
    try:
        conn.execute("SELECT * FROM shift.query(%s)", (text,)).fetchall()
    except psycopg.Error as error:
        _clean(error)
    if translated is not None:
        try:
            conn.execute(translated)
        except psycopg.Error as error:
            _clean(error)
    # the same backend is alive and answers
    assert not conn.closed
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid


def test_no_backend_crashed(fuzz_conn):
    """After the fuzzing, the server has not restarted (a crashed backend would restart every session)."""
    conn, pid = fuzz_conn
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert conn.execute("SELECT count(*) FROM shift.models").fetchone()[0] == 7
