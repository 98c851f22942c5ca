"""Running SHiFT-QL inside PostgreSQL: translate with the database's catalog, then execute.

    translation(db, text) -> Translation      # checked against the views, tables, readers and models there
    run(db, text) -> rows of shift.query       # (rank, model_id, score, selected json)
    explain(db, text) -> (section, content)    # the query tree, the SQL, PostgreSQL's plan, the engine's
    drop_view(db, name, cascade)               # shift.drop_view

`db` is pyfuncs.db.Plpy (or anything with its execute/one methods and, for
explain, a `plpy` attribute with subtransaction()).
"""

import json

from sqlglot import exp

from ..errors import SYNTAX_ERROR, ShiftError, unknown
from . import catalog
from .dialect import QueryRef, parse_script
from .names import folded
from .translate import explain_tree, translate

_DDL = ("create view", "comment", "drop view")


def translation(db, text, pretty=False):
    return translate(text, catalog.DatabaseCatalog(db), pretty=pretty)


def run(db, text):
    """Execute every statement of a SHiFT-QL text; the rows of its final query, ranked."""
    result = translation(db, text)
    rows = []
    for statement in result.statements:
        if statement.kind in _DDL:
            db.execute(statement.sql)
        else:
            rows = db.execute(statement.sql)
    out = []
    for rank, row in enumerate(rows, start=1):
        row = dict(row)
        model_id, value = row.pop("model_id", None), row.pop("score", None)
        out.append((rank, model_id, value, json.dumps(row, default=str)))
    return out


class _Rollback(Exception):
    pass


def explain(db, text):
    """The query tree (seed 000 §3.3), the translated SQL, the plan PostgreSQL chose for it, and
    for each scoring view what the engine would do (the cost model's choice and both estimates).

    Nothing runs: the plan is PostgreSQL's EXPLAIN without ANALYZE, so no
    scoring function is called, and the engine's plan is planner.describe. Views a script creates or drops exist only for
    the EXPLAIN, in a subtransaction that is rolled back.
    """
    result = translation(db, text)
    pretty = translation(db, text, pretty=True)
    plan = ["(no plan: the text ends with DROP, which only drops a view)"]
    last = result.statements[-1] if result.statements else None
    if last is not None and last.kind != "drop view":
        try:
            with db.plpy.subtransaction():
                for statement in result.statements[:-1]:
                    if statement.kind in _DDL:
                        db.execute(statement.sql)
                if last.kind == "query":
                    target = last.sql
                else:  # CREATE ... VIEW, then its COMMENT: the plan of reading the new view
                    for statement in result.statements[-2:]:
                        db.execute(statement.sql)
                    target = exp.select("*").from_(_table(last.view)).sql(dialect="postgres")
                plan = [r["QUERY PLAN"] for r in db.execute("EXPLAIN " + target)]
                raise _Rollback
        except _Rollback:
            pass
    return [("tree", explain_tree(result)),
            ("sql", ";\n".join(s.sql for s in pretty.statements)),
            ("plan", "\n".join(plan)),
            ("engine", "\n".join(_engine_plans(db, result)) or "(no scoring view runs proxy tasks)")]


def _engine_plans(db, result):
    """What the engine would do for each scoring view (seed 000 §4.2 cost model), from planner.describe."""
    from .. import planner, scorers
    from ..arguments import resolve_reader

    lines = []
    for request in result.requests:
        use = request.use
        head = "%s %s on %s, trained on %s" % (use.scorer, scorers.canonical_json(use.params), use.test_reader,
                                               use.train_reader)
        if request.top_k is not None:
            head += ", top %d %s" % (request.top_k, "DESC" if request.descending else "ASC")
        scorer = scorers.get(use.scorer)
        if scorer.kind != "proxy":
            lines.append("%s: not run in this version" % head)
            continue
        if request.pool_sql is None:
            lines.append("%s: planned when it runs, since its pool depends on another scoring view" % head)
            continue
        models = sorted(r["model_id"] for r in db.execute(request.pool_sql))
        test, train = resolve_reader(db, use.test_reader), resolve_reader(db, use.train_reader)
        described = planner.describe(planner.Request(db, scorer, use.params, models, test, train, request.top_k,
                                                     request.descending))
        lines.append("%s: %s" % (head, json.dumps(described, default=str, sort_keys=True)))
    return lines


def drop_view(db, name, cascade=False):
    """shift.drop_view(name): drop a scoring or dataset similarity view, `name` or `schema.name`."""
    ref = None
    if isinstance(name, str) and name.strip():
        try:
            statements = parse_script(name).expressions
        except Exception:  # any text that is not a name is reported below
            statements = []
        ref = statements[0] if len(statements) == 1 and isinstance(statements[0], QueryRef) else None
    if ref is None:
        raise ShiftError("%r is not a view name" % (name,), SYNTAX_ERROR, hint="write name or schema.name")
    cat = catalog.DatabaseCatalog(db)
    schema_ident = ref.args.get("schema")
    schema = folded(schema_ident) if schema_ident is not None else cat.default_schema
    view = cat.view(schema, folded(ref.this))
    if view is None:
        raise unknown("view", name, [v.name if v.schema == cat.default_schema else v.qualified for v in cat.views()])
    drop = exp.Drop(tables=[_table(view)], kind="VIEW", cascade=bool(cascade))
    db.execute(drop.sql(dialect="postgres"))


def _table(view):
    """The view as a table node, both names quoted exactly as the catalog has them."""
    return exp.Table(this=exp.to_identifier(view.name, quoted=True), db=exp.to_identifier(view.schema, quoted=True))
