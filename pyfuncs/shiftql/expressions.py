"""Names resolved against the catalog: expressions, FROM and JOIN sources, sub-queries (seed 000 §3.1).

A user's expression is rewritten AST → AST: every column becomes the table
column it means, `IN Q1` reads the named query, a nested scoring view becomes
an implicit view (named.py), any other sub-query stays plain SQL.
"""

from sqlglot import exp

from ..errors import FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, ShiftError, unknown
from . import catalog
from .context import Built
from .names import Scope, Source, col, folded, ident, is_star, output_name, type_of
from .named import define, define_implicit, define_with, lookup, named_view
from .nodes import NamedQuery, QueryRef
from .plan import PlanNode
from .ranking import is_view_query


def expr(ctx, node, scope):
    """A user's expression with every name resolved in scope (AST → AST)."""

    def rewrite(n):
        if isinstance(n, exp.Column):
            try:
                return scope.resolve(n)
            except ShiftError as error:
                raise ctx.located(error, n) from None
        if isinstance(n, exp.In) and isinstance(n.args.get("field"), (QueryRef, NamedQuery)):
            return _in_named(ctx, n, scope)
        if isinstance(n, exp.Select):
            return subselect(ctx, n, scope)
        if isinstance(n, exp.SetOperation):
            if is_view_query(n):
                named = define_implicit(ctx, n, "nested")
                return exp.Select(expressions=[col(named.built.first)], from_=exp.From(this=named.table.copy()))
            return type(n)(this=expr(ctx, n.this, scope), expression=expr(ctx, n.expression, scope),
                           distinct=n.args.get("distinct") is not False)
        if isinstance(n, (QueryRef, NamedQuery)):
            raise ctx.located(ShiftError("a query name may only follow IN, NOT IN or UNION", SYNTAX_ERROR,
                                         hint="write ModelId NOT IN Q1, or Q1 UNION SELECT ..."), n)
        if isinstance(n, (exp.Placeholder, exp.Parameter)):
            raise ctx.located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                         hint="write the value itself"), n)
        if isinstance(n, exp.Dot):
            raise ctx.located(ShiftError("unexpected . in %s" % n.sql(dialect="postgres")[:60], SYNTAX_ERROR,
                                         hint="a column is written column or relation.column"), n)
        return n

    return node.transform(rewrite, copy=True)


def _in_named(ctx, node, scope):
    """`x IN Q1`, `x IN (query) Q1`: x IN (SELECT the named query's id or first column FROM it)."""
    field_ = node.args["field"]
    if isinstance(field_, QueryRef):
        named = lookup(ctx, field_)
        column = named.built.key or named.built.first
    else:
        named = define(ctx, field_)
        column = named.built.first
    if column is None:
        raise ctx.located(ShiftError("query %s has no column to compare with" % named.display, SYNTAX_ERROR),
                          field_)
    ids = exp.Select(expressions=[col(column)], from_=exp.From(this=named.table.copy()))
    return exp.In(this=expr(ctx, node.this, scope), query=exp.Subquery(this=ids))


def subselect(ctx, select, scope):
    """A sub-query in a condition or in FROM: plain SQL over the same relations, or an implicit view."""
    if is_view_query(select):
        named = define_implicit(ctx, select, "nested")
        return exp.Select(expressions=[col(named.built.first)], from_=exp.From(this=named.table.copy()))
    if select.args.get("with_"):
        define_with(ctx, select.args["with_"])
    if select.args.get("joins") and not select.args.get("from_"):
        raise ctx.located(ShiftError("JOIN without FROM", SYNTAX_ERROR, hint="write FROM relation JOIN relation ON ..."),
                          select.args["joins"][0])
    out = select.copy()
    out.set("with_", None)
    inner = scope
    if select.args.get("from_"):
        sources_, from_, joins = sources(ctx, select, scope)
        inner = Scope(sources_, scope)
        out.set("from_", from_)
        out.set("joins", joins or None)
    aliases = {output_name(p) for p in select.expressions if isinstance(p, exp.Alias)}
    for key in ("expressions", "where", "group", "having", "qualify", "windows", "distinct", "limit", "offset"):
        value = select.args.get(key)
        if isinstance(value, list):
            out.set(key, [expr(ctx, v, inner) for v in value])
        elif value is not None:
            out.set(key, expr(ctx, value, inner))
    if select.args.get("order"):
        keys = []
        for key in select.args["order"].expressions:
            this = key.this
            if isinstance(this, exp.Column) and not this.table and this.name.lower() in aliases:
                keys.append(key.copy())
            else:
                new = key.copy()
                new.set("this", expr(ctx, this, inner))
                keys.append(new)
        out.set("order", exp.Order(expressions=keys))
    return out


def plain(ctx, select, scope):
    """Plain SQL over the user's tables, as a named query or a sub-query in FROM."""
    node = subselect(ctx, select, scope)
    columns, types, opaque = [], {}, False
    for p in node.expressions:
        name = output_name(p)
        if is_star(p):
            opaque = True
        elif name is None:
            columns.append("?column?")
        else:
            columns.append(name)
            types[name] = type_of(p.this if isinstance(p, exp.Alias) else p, scope)
    plan = PlanNode("plain query", lines=[node.sql(dialect="postgres")])
    return Built(node, columns, types, plan, [], block=True, key=None,
                 first=columns[0] if columns else None, opaque=opaque)


def sources(ctx, select, parent):
    """The FROM and JOIN relations of a SELECT, and their generated forms."""
    found = []
    table, src = _source(ctx, select.args.get("from_").this, parent)
    found.append(src)
    new_from = exp.From(this=table)
    joins = []
    for join in select.args.get("joins") or []:
        table, src = _source(ctx, join.this, parent)
        found.append(src)
        new = join.copy()
        new.set("this", table)
        joins.append((new, join))
    scope = Scope(found, parent)
    out = []
    for new, join in joins:
        if join.args.get("on") is not None:
            new.set("on", expr(ctx, join.args["on"], scope))
        if join.args.get("using"):
            joined = found[1 + len(out)]
            new.set("using", [ident(joined.find(u.name) or u.name) if isinstance(u, exp.Identifier)
                              else u.copy() for u in join.args["using"]])
        out.append(new)
    return found, new_from, out


def _source(ctx, node, parent):
    """One relation after FROM or JOIN: (its generated table, its Source)."""
    if isinstance(node, exp.Subquery):
        return _derived_source(ctx, node, parent)
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise ctx.located(ShiftError("only relations and sub-queries may follow FROM or JOIN here",
                                     FEATURE_NOT_SUPPORTED,
                                     hint="write FROM Models, FROM DataReaders, FROM a named query, a view "
                                          "or a table of yours with its schema (public.licences)"), node)
    if node.args.get("catalog"):
        raise ctx.located(ShiftError("relation %s has too many qualifiers" % node.sql(), SYNTAX_ERROR), node)
    alias_ident = node.args.get("alias").this if node.args.get("alias") else None
    if alias_ident is not None and node.args["alias"].columns:
        raise ctx.located(ShiftError("column aliases after a relation are not supported", FEATURE_NOT_SUPPORTED),
                          node)
    alias = folded(alias_ident)
    if node.args.get("db"):
        return _schema_source(ctx, node, alias)
    name = node.name
    relation = catalog.find_relation(name)
    if relation is not None:
        sql_alias = alias or relation.table
        written = {sql_alias.lower()} if alias else {relation.table, *catalog.spellings(relation)}
        table = exp.Table(this=ident(relation.table), db=ident(relation.schema),
                          alias=exp.TableAlias(this=ident(sql_alias)))
        return table, Source(sql_alias, written, tuple(relation.column_names()), dict(relation.columns),
                             relation=relation)
    named = ctx.names.get(name.lower())
    if named is None:
        info = ctx.view(ctx.catalog.default_schema, folded(node.this))
        named = named_view(ctx, info) if info is not None else None
    if named is not None:
        sql_alias = alias or named.table.name
        return _aliased(named.table.copy(), alias), Source(
            sql_alias, {sql_alias.lower(), name.lower()}, tuple(named.built.columns), dict(named.built.types),
            key_column=named.built.key, external=named.built.opaque, descending=named.built.descending)
    known = [r.name for r in catalog.RELATIONS] + [n.display for n in ctx.names.values()] + [
        v.name for v in ctx.views() if v.schema == ctx.catalog.default_schema]
    error = unknown("table", name, known)
    error.hint += "; a table of yours is written with its schema, e.g. public.%s" % name.lower()
    raise ctx.located(error, node)


def _aliased(table, alias):
    if alias is not None:
        table.set("alias", exp.TableAlias(this=ident(alias)))
    return table


def _schema_source(ctx, node, alias):
    """`schema.name`: a persisted view, or the user's own table."""
    schema, name = folded(node.args["db"]), folded(node.this)
    sql_alias = alias or name
    info = ctx.view(schema, name)
    if info is not None:
        named = named_view(ctx, info)
        return (_aliased(named.table.copy(), alias),
                Source(sql_alias, {sql_alias.lower()}, tuple(named.built.columns), dict(named.built.types),
                       key_column=info.key, descending=info.descending))
    columns = ctx.catalog.table_columns(schema, name)
    if columns is not None and not columns:
        raise ctx.located(unknown("table", "%s.%s" % (schema, name),
                                  ["%s.%s" % (schema, t) for t in ctx.catalog.table_names(schema)]), node)
    table = _aliased(exp.Table(this=node.this.copy(), db=node.args["db"].copy()), alias)
    return table, Source(sql_alias, {sql_alias.lower()}, tuple(c for c, _ in columns or ()),
                         dict(columns or ()), external=columns is None)


def _derived_source(ctx, node, parent):
    """`(SELECT ...) AS t` in FROM: an implicit view if it ranks by a scorer, plain SQL otherwise."""
    alias_node = node.args.get("alias")
    if alias_node is None or alias_node.this is None:
        raise ctx.located(ShiftError("a sub-query in FROM needs a name", SYNTAX_ERROR,
                                     hint="write (SELECT ...) AS name"), node)
    if alias_node.columns:
        raise ctx.located(ShiftError("column aliases after a sub-query are not supported",
                                     FEATURE_NOT_SUPPORTED, hint="alias the columns inside the sub-query"), node)
    alias = folded(alias_node.this)
    inner = node.this
    if is_view_query(inner) or not isinstance(inner, exp.Select):
        named = define_implicit(ctx, inner, alias.lower())
        table = exp.Table(this=ident(named.cte), alias=exp.TableAlias(this=ident(alias)))
        return table, Source(alias, {alias.lower()}, tuple(named.built.columns), dict(named.built.types),
                             key_column=named.built.key, external=named.built.opaque,
                             descending=named.built.descending)
    built = plain(ctx, inner, parent or Scope([]))
    table = exp.Subquery(this=built.query, alias=exp.TableAlias(this=ident(alias)))
    return table, Source(alias, {alias.lower()}, tuple(built.columns), dict(built.types), external=built.opaque)
