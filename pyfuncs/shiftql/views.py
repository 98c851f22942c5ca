"""Persisted views (seed 000 §3.1): CREATE [OR REPLACE] SCORING / DATASET SIMILARITY VIEW, DROP ... VIEW."""

from sqlglot import exp

from ..errors import DUPLICATE_OBJECT, DUPLICATE_TABLE, WRONG_OBJECT_TYPE, ShiftError, unknown
from . import catalog
from .dialect import to_shiftql
from .generate import finish, sql
from .names import folded, ident
from .plan import PlanNode, Statement
from .queries import query


def view_names(ctx, table):
    """(schema, name) of a view name as written in CREATE / DROP."""
    schema = folded(table.args.get("db")) or ctx.catalog.default_schema
    return schema, folded(table.this)


def create_view(ctx, statement, pretty):
    """`CREATE VIEW schema.v WITH (security_invoker = true) AS <translation>` and its COMMENT (catalog.py)."""
    kind = statement.args["kind"]
    target = statement.this
    schema, name = view_names(ctx, target)
    replacing = bool(statement.args.get("replace"))
    _check_creatable(ctx, target, schema, name, kind, replacing)
    built = query(ctx, statement.expression, ctx.fresh(name.lower()))
    want = "model_id" if kind == "scoring" else "reader_id"
    if built.key != want:
        raise ctx.located(ShiftError(
            "a %s view returns %s" % (kind, "models" if want == "model_id" else "data readers"), WRONG_OBJECT_TYPE,
            hint="a scoring view reads Models (CREATE SCORING VIEW), a dataset similarity view reads "
                 "DataReaders (CREATE DATASET SIMILARITY VIEW)"), statement.expression)
    final = finish(ctx, built)
    table = exp.Table(this=ident(name), db=ident(schema))
    create = exp.Create(
        this=table, kind="VIEW", expression=final, replace=replacing,
        # the view reads shift's tables and the user's with the privileges of whoever queries it
        properties=exp.Properties(expressions=[exp.Property(this=exp.Var(this="security_invoker"),
                                                            value=exp.Boolean(this=True))]))
    definition = statement.meta.get("text") or to_shiftql(statement)
    info = catalog.ViewInfo(schema, name, kind, tuple((c, built.types.get(c)) for c in built.columns),
                            built.descending, definition)
    comment = exp.Comment(this=table.copy(), kind="VIEW", expression=exp.Literal.string(
        catalog.view_comment(kind, built.descending, definition)))
    statements = [Statement("create view", sql(create, pretty), info), Statement("comment", sql(comment), info)]
    ctx.view_changes[(schema, name)] = info
    ctx.view_named.pop((schema, name), None)
    return statements, PlanNode("create %s view" % kind, info.qualified, children=[built.plan])


def _check_creatable(ctx, target, schema, name, kind, replacing):
    if not target.args.get("db") and catalog.find_relation(name) is not None:
        raise ctx.located(ShiftError("view name %s is the name of a relation" % name, DUPLICATE_OBJECT,
                                     hint="name the view otherwise"), target.this)
    existing = ctx.view(schema, name)
    if existing is not None and not replacing:
        raise ctx.located(ShiftError("view %s.%s already exists" % (schema, name), DUPLICATE_TABLE,
                                     hint="drop it first with DROP %s VIEW %s, or write CREATE OR REPLACE"
                                          % (existing.kind.upper(), name)), target.this)
    if existing is not None and existing.kind != kind:
        raise ctx.located(ShiftError("%s.%s is a %s view" % (schema, name, existing.kind), WRONG_OBJECT_TYPE,
                                     hint="drop it with DROP %s VIEW %s first" % (existing.kind.upper(), name)),
                          target.this)


def drop_view(ctx, statement, pretty):
    """`DROP VIEW schema.v [CASCADE]` of a SHiFT-QL view of the right kind."""
    kind = statement.args["kind"]
    schema, name = view_names(ctx, statement.this)
    info = ctx.view(schema, name)
    if info is None:
        if statement.args.get("exists"):
            return [], PlanNode("drop %s view" % kind, "%s.%s (absent)" % (schema, name))
        raise ctx.located(unknown("%s view" % kind, name if statement.this.args.get("db") is None
                                  else "%s.%s" % (schema, name),
                                  [ctx.view_display(v) for v in ctx.views() if v.kind == kind]),
                          statement.this.this)
    if info.kind != kind:
        raise ctx.located(ShiftError("%s is a %s view" % (info.qualified, info.kind), WRONG_OBJECT_TYPE,
                                     hint="DROP %s VIEW %s" % (info.kind.upper(), name)), statement.this.this)
    drop = exp.Drop(tables=[exp.Table(this=ident(name), db=ident(schema))], kind="VIEW",
                    cascade=bool(statement.args.get("cascade")))
    ctx.view_changes[(schema, name)] = None
    ctx.view_named.pop((schema, name), None)
    return [Statement("drop view", sql(drop, pretty), info)], PlanNode("drop %s view" % kind, info.qualified)
