"""Every example of docs/shiftql.md runs, in order, on the SHiFT-QL fixture database.

```shiftql blocks go through shift.translate and shift.query (```shiftql error=XXXXX blocks must
fail with that SQLSTATE, both ways); ```sql blocks run as written; ```python blocks run here.
"""

import re

import psycopg
import pytest

from shift_cli.testbed import ROOT

DOC = ROOT / "docs" / "shiftql.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def examples():
    return [(lang, info.strip(), body) for lang, info, body in FENCE.findall(DOC.read_text())]


def test_the_documentation_has_an_example_per_construct():
    text = DOC.read_text()
    shiftql = [body for lang, _, body in examples() if lang == "shiftql"]
    assert len(shiftql) >= 30
    for construct in ("TESTED ON", "TRAINED ON", "TESTED AGAINST", "<SHIFT>", "==", ":=", ") Q1", "NOT IN Q1",
                      "UNION", "INTERSECT", "EXCEPT", "WITH", "JOIN", "GROUP BY", "HAVING", "DISTINCT", "BETWEEN",
                      "IS NULL", "LIKE", "4.5M", "300K", "KNN(k=5", "Linear(lr=0.1, l2=1e-4, epochs=20, batch_size=64)",
                      "Task2Vec", "FineTune", "CREATE SCORING VIEW", "CREATE DATASET SIMILARITY VIEW",
                      "DROP DATASET SIMILARITY VIEW", "Readers.ReaderId"):
        assert any(construct in body for body in shiftql), construct
    assert "## Grammar" in text and "script       =" in text


def _fails(run, sqlstate):
    with pytest.raises(psycopg.Error) as info:
        run()
    assert info.value.diag.sqlstate == sqlstate, info.value.diag.message_primary
    assert info.value.diag.message_hint


def test_every_example_runs(shiftql_db):
    with shiftql_db.connect() as conn:
        run_examples(conn)


def run_examples(conn):
    """Run every example of the document on `conn`, in order, checking what each must show."""
    from pyfuncs import scorers

    ran = 0
    for lang, info, body in examples():
        if lang == "shiftql":
            expected = re.fullmatch(r"error=([0-9A-Z]{5})", info)
            if expected:
                _fails(lambda: conn.execute("SELECT * FROM shift.query(%s)", (body,)).fetchall(),
                       expected.group(1))
                if expected.group(1) in ("0A000", "55000"):  # it translates; running it is what fails
                    assert conn.execute("SELECT shift.translate(%s)", (body,)).fetchone()[0]
                else:
                    _fails(lambda: conn.execute("SELECT shift.translate(%s)", (body,)), expected.group(1))
            else:
                assert conn.execute("SELECT shift.translate(%s)", (body,)).fetchone()[0]
                rows = conn.execute("SELECT * FROM shift.query(%s)", (body,)).fetchall()
                if not body.lstrip().upper().startswith(("CREATE", "DROP")):
                    assert rows, body  # the fixture answers every example with some rows
        elif lang == "sql":
            conn.execute(body)
        elif lang == "python":
            before = dict(scorers.REGISTRY)
            try:
                exec(compile(body, str(DOC), "exec"), {})
                from pyfuncs.shiftql import translate
                for name in set(scorers.REGISTRY) - set(before):
                    assert scorers.REGISTRY[name].name in body
                translate("SELECT ModelId FROM Models ORDER BY KNN7(metric='euclidean') LIMIT 1 "
                          "TESTED ON a TRAINED ON b")
                translate("CREATE DATASET SIMILARITY VIEW v AS SELECT DataReaderId FROM DataReaders "
                          "ORDER BY Task2VecSym LIMIT 1 TESTED AGAINST a")
            finally:
                scorers.REGISTRY.clear()
                scorers.REGISTRY.update(before)
        else:
            continue
        ran += 1
    assert conn.execute("SELECT count(*) FROM shift.views WHERE view_name IN "
                        "('linear_top2', 'similar_readers')").fetchone()[0] == 0
    assert ran == len([e for e in examples() if e[0] in ("shiftql", "sql", "python")])
