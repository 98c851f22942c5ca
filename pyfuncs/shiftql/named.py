"""Named queries and views (seed 000 §3.1–§3.2): `Q1 := ...`, `(...) Q1`, WITH, persisted and implicit views.

Each definition becomes a CTE of the statement; a reader of it reads the CTE
(or the persisted view) by name.
"""

from dataclasses import replace

from sqlglot import exp

from ..errors import DUPLICATE_OBJECT, FEATURE_NOT_SUPPORTED, ShiftError, unknown
from . import catalog
from .context import Built, Named
from .names import Scope, col, folded, ident
from .nodes import NamedQuery
from .plan import PlanNode
from .ranking import is_view_query


def check_new_name(ctx, name_ident):
    """A new query name must be new, and not a relation's name."""
    name = name_ident.name
    if name.lower() in ctx.names:
        raise ctx.located(ShiftError("query %s is defined twice" % name, DUPLICATE_OBJECT,
                                     hint="give the second one another name"), name_ident)
    if catalog.find_relation(name) is not None:
        raise ctx.located(ShiftError("query name %s is the name of a relation" % name, DUPLICATE_OBJECT,
                                     hint="name the query otherwise, e.g. Q1"), name_ident)


def define(ctx, named):
    """Q1 := query, (query) Q1, WITH Q1 AS (query): the query becomes a CTE (seed 000 §3.2)."""
    check_new_name(ctx, named.this)
    display = named.this.name
    cte = ctx.fresh(display.lower())
    built = _definition(ctx, named.expression, cte)
    add_cte(ctx, cte, built)
    plan = PlanNode("named query", display, children=[built.plan])
    ctx.names[display.lower()] = Named(display, exp.Table(this=ident(cte)), replace(built, plan=plan), cte)
    return ctx.names[display.lower()]


def define_implicit(ctx, query, base):
    """A scoring or dataset similarity view nested in a query: an implicit view (seed 000 §3.1), a CTE."""
    cte = ctx.fresh(base)
    built = ctx.query(ctx, query, cte)
    add_cte(ctx, cte, built)
    plan = PlanNode("implicit view", cte, children=[built.plan])
    ctx.implicit[cte] = Named(cte, exp.Table(this=ident(cte)), replace(built, plan=plan), cte)
    return ctx.implicit[cte]


def define_with(ctx, with_):
    """A WITH clause: its queries are named queries."""
    if with_.args.get("recursive"):
        raise ctx.located(ShiftError("WITH RECURSIVE is not supported in SHiFT-QL", FEATURE_NOT_SUPPORTED), with_)
    for cte in with_.expressions:
        name = cte.args.get("alias")
        if name is None or name.columns:
            raise ctx.located(ShiftError("column names after a WITH query name are not supported",
                                         FEATURE_NOT_SUPPORTED, hint="alias the columns inside the query"), cte)
        define(ctx, NamedQuery(this=name.this, expression=cte.this))


def add_cte(ctx, cte, built):
    """The built query as the body of CTE `cte`; a set operation with its own LIMIT is wrapped to keep it."""
    body = built.query.this if isinstance(built.query, exp.Subquery) else built.query
    if not built.block and built.key is not None and isinstance(body, exp.SetOperation) \
            and any(body.args.get(k) for k in ("limit", "offset")):
        body = exp.Select(expressions=[exp.Star()], from_=exp.From(this=exp.Subquery(
            this=body, alias=exp.TableAlias(this=ident("u")))))
    ctx.ctes.append((cte, body))


def _definition(ctx, query, label):
    """What a named query is: a SHiFT-QL query when it reads models or readers, plain SQL otherwise."""
    if isinstance(query, exp.Select) and not _reads_subject(ctx, query) and not is_view_query(query):
        return ctx.plain(ctx, query, Scope([]))
    return ctx.query(ctx, query, label)


def _reads_subject(ctx, select):
    """Whether a SELECT reads Models, DataReaders, a named query or a view (directly, in FROM or JOIN)."""
    tables = [select.args["from_"].this] if select.args.get("from_") else []
    tables += [j.this for j in select.args.get("joins") or []]
    for t in tables:
        if isinstance(t, exp.Table) and isinstance(t.this, exp.Identifier):
            if t.args.get("db"):
                if ctx.view(folded(t.args["db"]), folded(t.this)) is not None:
                    return True
            elif catalog.find_relation(t.name) is not None or t.name.lower() in ctx.names or \
                    ctx.view(ctx.catalog.default_schema, folded(t.this)) is not None:
                return True
    return False


def named_view(ctx, info):
    """A persisted view, read by name like a named query."""
    key = (info.schema, info.name)
    if key not in ctx.view_named:
        columns = [c for c, _ in info.columns]
        order = [exp.Ordered(this=col("score"), desc=info.descending, nulls_first=False),
                 exp.Ordered(this=col(info.key), nulls_first=False)] if "score" in columns else \
            [exp.Ordered(this=col(info.key), nulls_first=False)]
        built = Built(None, columns, dict(info.columns),
                      PlanNode("%s view" % info.kind, info.qualified,
                               lines=["defined as: %s" % " ".join(info.definition.split())]),
                      order, key=info.key, first=info.key, descending=info.descending)
        ctx.view_named[key] = Named(ctx.view_display(info), exp.Table(this=ident(info.name), db=ident(info.schema)),
                                    built, view=info)
    return ctx.view_named[key]


def lookup(ctx, ref):
    """The named query or persisted view a QueryRef names."""
    name_ident, schema_ident = ref.this, ref.args.get("schema")
    if schema_ident is None:
        named = ctx.names.get(name_ident.name.lower())
        if named is not None:
            return named
        info = ctx.view(ctx.catalog.default_schema, folded(name_ident))
    else:
        info = ctx.view(folded(schema_ident), folded(name_ident))
    if info is not None:
        return named_view(ctx, info)
    written = name_ident.name if schema_ident is None else "%s.%s" % (schema_ident.name, name_ident.name)
    known = [n.display for n in ctx.names.values()] + [ctx.view_display(v) for v in ctx.views()]
    raise ctx.located(unknown("query", written, known), name_ident)


def read_named(named):
    """`SELECT * FROM` a named query or view, as a query that keeps its columns and order."""
    built = named.built
    select = exp.Select(expressions=[exp.Star()], from_=exp.From(this=named.table.copy()))
    return Built(select, list(built.columns), dict(built.types), built.plan,
                 [o.copy() for o in built.order], key=built.key, first=built.first,
                 descending=built.descending, opaque=built.opaque)


def uses_named(ctx, *nodes):
    """Plans of the named queries and views a block reads (its children in the query tree of §3.3)."""
    by_table = {(None, n.cte): n for n in [*ctx.names.values(), *ctx.implicit.values()]}
    by_table.update({(k[0], k[1]): n for k, n in ctx.view_named.items()})
    out = []
    for node in nodes:
        for part in ([] if node is None else node if isinstance(node, list) else [node]):
            for t in part.find_all(exp.Table):
                named = by_table.get((t.args["db"].name if t.args.get("db") else None, t.name))
                if named is not None and named.built.plan not in out:
                    out.append(named.built.plan)
    return out
