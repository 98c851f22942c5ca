"""The clauses of one SELECT block: WHERE (and its id checks), GROUP BY, HAVING, DISTINCT, LIMIT, the select list."""

from sqlglot import exp

from ..errors import DUPLICATE_COLUMN, FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, ShiftError, unknown
from .expressions import expr
from .names import Scope, col, folded, ident, output_name, type_of
from .positions import SYNOPSIS


def where(ctx, select, scope):
    """The block's WHERE, resolved, with its model and reader ids checked."""
    clause = select.args.get("where")
    if clause is None:
        return None
    condition = expr(ctx, clause.this, scope)
    _check_ids(ctx, condition, scope)
    return exp.Where(this=condition)


def _check_ids(ctx, condition, scope):
    """A model or reader id compared with ModelId or ReaderId must be registered: 42704 naming the closest.

    A misspelt id would otherwise select nothing, silently.
    """
    wanted = {}  # kind -> [(id, literal node)]
    for node in condition.find_all(exp.EQ, exp.NEQ, exp.In):
        if isinstance(node, exp.In):
            pairs = [(node.this, e) for e in node.expressions]
        else:
            pairs = [(node.this, node.expression), (node.expression, node.this)]
        for column, literal in pairs:
            if not (isinstance(column, exp.Column) and isinstance(literal, exp.Literal) and literal.is_string):
                continue
            src = scope.by_alias(column.table)
            if src is None or src.relation is None or column.name != src.relation.key:
                continue
            wanted.setdefault(src.relation.key, []).append((literal.this, literal))
    for value, node in wanted.get("reader_id", []):
        known = ctx.catalog.reader_ids()
        if known is not None and value not in known:
            raise ctx.located(ctx.catalog.unknown_reader(value, known), node)
    models = wanted.get("model_id", [])
    if models:
        missing = set(ctx.catalog.missing_model_ids(sorted({v for v, _ in models})))
        for value, node in models:
            if value in missing:
                raise ctx.located(unknown("model", value, ctx.catalog.model_ids()), node)


def grouping(ctx, select, scope):
    """(GROUP BY, HAVING, DISTINCT) of the block, resolved."""
    group = select.args.get("group")
    if group is not None:
        if any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets", "totals", "all")) or any(
                isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions):
            raise ctx.located(ShiftError("GROUP BY ROLLUP, CUBE and GROUPING SETS are not supported here",
                                         FEATURE_NOT_SUPPORTED, hint="use them in a sub-query"), group)
        group = exp.Group(expressions=[projection_ref(ctx, e, scope, select) for e in group.expressions])
    having = select.args.get("having")
    if having is not None:
        having = exp.Having(this=expr(ctx, having.this, scope))
    distinct = select.args.get("distinct")
    if distinct is not None:
        distinct = distinct.copy()
        if distinct.args.get("on") is not None:
            distinct.set("on", exp.Tuple(expressions=[
                projection_ref(ctx, e, scope, select) for e in distinct.args["on"].expressions]))
    return group, having, distinct


def projection_ref(ctx, node, scope, select):
    """A GROUP BY or ORDER BY key: a select-list alias, a position, or an expression over the relations."""
    projections = select.expressions
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        n = int(node.this)
        if not 1 <= n <= len(projections) or isinstance(projections[n - 1], exp.Star):
            raise ctx.located(ShiftError("position %d is not in the select list" % n, SYNTAX_ERROR), node)
        node = projections[n - 1]
    if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier) \
            and not any(s.find(node.name) for s in scope.sources):
        for p in projections:
            if isinstance(p, exp.Alias) and p.alias.lower() == node.name.lower():
                node = p
                break
    if isinstance(node, exp.Alias):
        node = node.this
    return expr(ctx, node, scope)


def constant_clause(ctx, select, key):
    """LIMIT / OFFSET of a block: constants only, checked like any expression."""
    node = select.args.get(key)
    return expr(ctx, node, Scope([])) if node is not None else None


def limit_lines(select):
    """The block's LIMIT and OFFSET as the query tree shows them."""
    lines = []
    for key in ("limit", "offset"):
        node = select.args.get(key)
        if node is not None:
            lines.append(node.sql(dialect="postgres").strip().lower())
    return lines


def extras(ctx, select, scope, subject, score=None):
    """The selected columns after the id and score (a plain repeat of either is left out).

    Returns (expressions, names, types, the output name of the first selected item).
    """
    out, names, types = [], [], {}
    taken = (subject.key, "score")
    first = None

    def add(expression, name, kind):
        if name in taken:
            raise ctx.located(ShiftError("column name %s is taken by the result's %s column" % (name, name),
                                         DUPLICATE_COLUMN, hint="give the selected expression another alias"),
                              expression)
        out.append(expression)
        names.append(name)
        types[name] = kind

    for position, projection in enumerate(select.expressions):
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                and isinstance(projection.this, exp.Star)):
            if position == 0:
                first = subject.key
            for src in _star_sources(ctx, projection, scope):
                if src.external:
                    out.append(exp.Column(this=exp.Star(), table=ident(src.sql_alias)))
                    names.append("*")
                    continue
                for column in src.columns:
                    if column not in taken and column not in names:
                        add(col(column, src.sql_alias), column, src.types.get(column))
            continue
        alias = projection.args["alias"] if isinstance(projection, exp.Alias) else None
        if alias is not None and not isinstance(alias, exp.Identifier):
            raise ctx.located(ShiftError("expected a column name after AS", SYNTAX_ERROR, hint=SYNOPSIS), projection)
        resolved = expr(ctx, projection.this if isinstance(projection, exp.Alias) else projection, scope)
        if alias is None and isinstance(resolved, exp.Column) and resolved.name == subject.key \
                and resolved.table == subject.sql_alias:
            first = first or (subject.key if position == 0 else None)
            continue  # already the first column
        if alias is None and score is not None and resolved == score:
            first = first or ("score" if position == 0 else None)
            continue  # already the second column
        name = folded(alias) if alias is not None else output_name(resolved) or "?column?"
        add(exp.Alias(this=resolved, alias=ident(name)) if alias is not None else resolved, name,
            type_of(resolved, scope))
        if position == 0:
            first = name
    return out, names, types, first or subject.key


def _star_sources(ctx, star, scope):
    """The sources `*` or `t.*` selects from."""
    if isinstance(star, exp.Column):
        target = scope.source(star.table)
        if target is None:
            raise ctx.located(unknown("table", star.table, scope.aliases()), star)
        return [target]
    return [s for s in scope.sources if not s.implicit]
