"""The generator: the statement of a built query, with the CTEs it reads, as PostgreSQL text (printed once)."""

import sqlglot
from sqlglot import exp

from ..errors import SYNTAX_ERROR, ShiftError
from .names import col, ident
from .nodes import CreateView, DropView, NamedQuery, QueryRef, ScoringClause, Script, WithQuery
from .plan import PlanNode, ScoringRequest, Translation
from .positions import SYNOPSIS

_SHIFTQL_ONLY = (ScoringClause, NamedQuery, QueryRef, Script, WithQuery, CreateView, DropView)


def sql(node, pretty=False):
    """PostgreSQL text of a statement (function names as written: shift.score, not SHIFT.SCORE)."""
    return node.sql(dialect="postgres", pretty=pretty, normalize_functions=False)


def finish(ctx, built):
    """The statement of a built query: its ORDER BY and the CTEs it reads."""
    final = built.query.copy()
    if isinstance(final, exp.Subquery):
        final = final.this
    if not built.block:
        final.set("order", exp.Order(expressions=[o.copy() for o in built.order]))
    reachable = _reachable(ctx, final)
    ctes = [exp.CTE(this=body.copy(), alias=exp.TableAlias(this=ident(name)))
            for name, body in ctx.ctes if name in reachable]
    if ctes:
        final.set("with_", exp.With(expressions=ctes))
    for node in final.walk():
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            raise ctx.located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                         hint="write the value itself"), node)
        if isinstance(node, _SHIFTQL_ONLY):
            raise ShiftError("could not translate %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS)
    ctx.emitted |= reachable
    return final


def _reachable(ctx, final):
    """The CTEs a statement reads, directly or through other CTEs."""
    bodies = dict(ctx.ctes)

    def refs(node):
        return {t.name for t in node.find_all(exp.Table)
                if not t.args.get("db") and isinstance(t.this, exp.Identifier) and t.name in bodies}

    todo = list(refs(final))
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += refs(bodies[name])
    return seen


def pool_ids_sql(ctx, pool):
    """SELECT DISTINCT model_id FROM pool, with the CTEs it reads; None if those call a scoring function."""
    ids = exp.Select(expressions=[col("model_id")], from_=exp.From(this=exp.Table(this=ident(pool))),
                     distinct=exp.Distinct())
    reachable = _reachable(ctx, ids)
    bodies = [body for name, body in ctx.ctes if name in reachable]
    if any(isinstance(f, exp.Anonymous) for body in bodies for f in body.find_all(exp.Anonymous)
           if isinstance(f.parent, exp.Table)):
        return None
    ids.set("with_", exp.With(expressions=[exp.CTE(this=body.copy(), alias=exp.TableAlias(this=ident(name)))
                                           for name, body in ctx.ctes if name in reachable]))
    return sql(ids)


def translation_of(ctx, script, statements, plan):
    """The Translation of a script: its statements, read back as PostgreSQL, and the views they run."""
    for statement in statements:  # the generator's output must read back as what it is, whatever the input was
        try:
            parsed = sqlglot.parse(statement.sql, read="postgres")
        except sqlglot.errors.SqlglotError:
            parsed = []
        if len(parsed) != 1:
            raise ShiftError("could not translate the query into valid PostgreSQL", SYNTAX_ERROR,
                             detail=statement.sql[:200], hint=SYNOPSIS)
    scoring = [use for pool, use in ctx.uses if pool in ctx.emitted]
    similarity = [use for pool, use in ctx.similar if pool in ctx.emitted]
    requests = [ScoringRequest(use, pool_ids_sql(ctx, pool), top_k, desc)
                for pool, use, top_k, desc in ctx.requests if pool in ctx.emitted]
    return Translation(sql=";\n".join(s.sql for s in statements), tree=script, scoring=scoring,
                       plan=plan or PlanNode("nothing"), statements=statements, similarity=similarity,
                       requests=requests)
