"""Queries: dispatch on the kind of query, set operations (seed 000 §3.2 Q4), and one SELECT block."""

from sqlglot import exp

from ..errors import FEATURE_NOT_SUPPORTED, SYNTAX_ERROR, WRONG_OBJECT_TYPE, ShiftError
from .context import Built
from .expressions import sources
from .named import add_cte, define, define_with, lookup, read_named
from .names import Scope, alias, col, ident
from .nodes import NamedQuery, QueryRef, WithQuery
from .plan import PlanNode
from .positions import SYNOPSIS
from .ranking import CLAUSE_WORDS, names_of, ranking_of
from .scoring import metadata_view, ranked_view

_UNSUPPORTED = (("windows", "WINDOW"), ("qualify", "QUALIFY"), ("into", "INTO"), ("locks", "FOR UPDATE"),
                ("laterals", "LATERAL"), ("sample", "TABLESAMPLE"))


def query(ctx, node, label):
    """The Built of any SHiFT-QL query; label names the CTEs it adds (its pool, its parts)."""
    ctx.interrupts.step()
    if isinstance(node, exp.Subquery) and not node.alias:
        return query(ctx, node.this, label)
    if isinstance(node, WithQuery):
        for definition in node.expressions:
            define(ctx, definition)
        return query(ctx, node.this, label)
    if isinstance(node, exp.Select):
        return block(ctx, node, label)
    if isinstance(node, QueryRef):
        return read_named(lookup(ctx, node))
    if isinstance(node, NamedQuery):
        return read_named(define(ctx, node))
    if isinstance(node, exp.SetOperation):
        return set_operation(ctx, node, label)
    raise ctx.located(ShiftError("expected a query, found %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS), node)


def set_operation(ctx, node, label):
    """UNION, INTERSECT, EXCEPT of queries (seed 000 §3.1 hybrid example, §3.2 Q4).

    Rows are compared by id and the selected columns, not by score, since the
    blocks' scores are not comparable: `A INTERSECT B` keeps the models in both.
    Each row keeps the score it has in the first operand that returns it (its
    best there). UNION ALL keeps every row of both as it is.
    """
    left = query(ctx, node.this, label)
    right = query(ctx, node.expression, label)
    word = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}[type(node)]
    if len(left.columns) != len(right.columns) or left.opaque or right.opaque:
        raise ctx.located(ShiftError(
            "each %s query must select the same number of columns" % word, SYNTAX_ERROR,
            detail="left: %s; right: %s" % (", ".join(map(str, left.columns)), ", ".join(map(str, right.columns))),
            hint="select the same extra columns in every block"), node)
    if left.key != right.key:
        raise ctx.located(ShiftError("%s of a query over %s and one over %s" % (
            word, _rows_of(left.key), _rows_of(right.key)), WRONG_OBJECT_TYPE,
            hint="combine queries that return the same kind of rows"), node)
    distinct = node.args.get("distinct") is not False
    plan = PlanNode(word.lower() + ("" if distinct else " all"), children=[left.plan, right.plan])
    order = [exp.Ordered(this=col(left.key or left.columns[0]), nulls_first=False)]
    if "score" in left.columns:
        order.append(exp.Ordered(this=col("score"), nulls_first=False))
    scored = left.columns[1:2] == ["score"] and right.columns[1:2] == ["score"]
    if (isinstance(node, exp.Union) and not distinct) or not scored:
        combined = type(node)(this=_operand(left), expression=_operand(right), distinct=distinct)
    else:
        combined = _rescored(ctx, node, label, left, right, distinct)
    return Built(combined, left.columns, left.types, plan, order, key=left.key, first=left.first)


def _rescored(ctx, node, label, left, right, distinct):
    """The set operation over the rows without their scores; each row's score looked up again."""
    operands = [(_operand_table(ctx, left, label), left), (_operand_table(ctx, right, label), right)]

    def without_score(table, built):
        return exp.Select(expressions=[col(c) for i, c in enumerate(built.columns) if i != 1],
                          from_=exp.From(this=table.copy()))

    combined = type(node)(this=without_score(*operands[0]), expression=without_score(*operands[1]),
                          distinct=distinct)
    names = [c for i, c in enumerate(left.columns) if i != 1]
    lookups = []
    for table, built in (operands[:1] if isinstance(node, (exp.Except, exp.Intersect)) else operands):
        other = [c for i, c in enumerate(built.columns) if i != 1]
        same = [exp.EQ(this=col(other[0], "x"), expression=col(names[0], "c"))] + [
            exp.NullSafeEQ(this=col(o, "x"), expression=col(n, "c")) for o, n in zip(other[1:], names[1:])]
        aliased = table.copy()
        aliased.set("alias", exp.TableAlias(this=ident("x")))
        lookups.append(exp.Subquery(this=exp.Select(
            expressions=[col("score", "x")], from_=exp.From(this=aliased), where=exp.Where(this=exp.and_(*same)),
            order=exp.Order(expressions=[exp.Ordered(this=col("score", "x"), desc=built.descending,
                                                     nulls_first=False)]),
            limit=exp.Limit(expression=exp.Literal.number(1)))))
    score = lookups[0] if len(lookups) == 1 else exp.Coalesce(this=lookups[0], expressions=lookups[1:])
    return exp.Select(
        expressions=[alias(col(names[0], "c"), names[0]), alias(score, "score"), *[col(n, "c") for n in names[1:]]],
        from_=exp.From(this=exp.Subquery(this=combined, alias=exp.TableAlias(this=ident("c")))))


def _operand_table(ctx, built, label):
    """A name to read an operand of a set operation by: its named query or view, or a new CTE."""
    q = built.query
    if isinstance(q, exp.Select) and isinstance(q.args.get("from_").this if q.args.get("from_") else None,
                                                exp.Table) \
            and len(q.expressions) == 1 and isinstance(q.expressions[0], exp.Star) and not any(
                q.args.get(k) for k in ("where", "joins", "order", "limit", "offset", "with_")):
        return q.args["from_"].this.copy()
    cte = ctx.fresh("%s_part" % label if label else "part")
    add_cte(ctx, cte, built)
    return exp.Table(this=ident(cte))


def _operand(built):
    """A set operation's operand: a sub-query where it has its own ORDER BY, LIMIT or set operation."""
    q = built.query
    if isinstance(q, exp.SetOperation) or (isinstance(q, exp.Select) and any(
            q.args.get(k) for k in ("order", "limit", "offset", "with_"))):
        return exp.Subquery(this=q)
    return q


def _rows_of(key):
    return {"model_id": "models", "reader_id": "data readers"}.get(key, "other rows")


def block(ctx, select, label):
    """One SELECT block: a metadata view, or a view ranked by the scorer or metric of its ORDER BY."""
    for key, words in _UNSUPPORTED:
        if select.args.get(key):
            raise ctx.located(ShiftError("%s is not supported in a SHiFT-QL query block" % words,
                                         FEATURE_NOT_SUPPORTED, hint="use %s in a sub-query" % words),
                              select.args[key])
    if select.args.get("with_"):
        define_with(ctx, select.args["with_"])
    if not select.args.get("from_"):
        raise ctx.located(ShiftError("a SHiFT-QL query block must read FROM Models", SYNTAX_ERROR,
                                     hint=SYNOPSIS), select)
    found, from_, joins = sources(ctx, select, None)
    subject = next((s for s in found if s.key), None)
    if subject is None:
        raise ctx.located(ShiftError(
            "a SHiFT-QL query block returns models or data readers: it must read Models, DataReaders, "
            "a named query or a view", FEATURE_NOT_SUPPORTED, hint=SYNOPSIS), select.args["from_"])
    scope = Scope(found)
    keys = list(select.args["order"].expressions) if select.args.get("order") else []
    clause = select.args.get("scoring")
    ranked = [(k, r) for k in keys for r in [ranking_of(ctx, k.this, scope, select, clause)] if r]
    if ranked:
        if len(keys) != 1:
            raise ctx.located(ShiftError("a scoring view orders by its scorer alone", SYNTAX_ERROR,
                                         hint="write ORDER BY %s [ASC | DESC]" % ranked[0][1][0].name),
                              select.args["order"])
        key, (scorer, args) = ranked[0]
        return ranked_view(ctx, select, label, scope, subject, from_, joins, key, scorer, args)
    if clause is not None:
        if subject.key == "reader_id":
            hint = "e.g. ORDER BY Task2Vec LIMIT 3 TESTED AGAINST TargetReader; metrics: %s" % names_of("readers")
        else:
            hint = ("e.g. ORDER BY CosineNN ASC LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader; "
                    "scorers: %s" % names_of("models"))
        raise ctx.located(ShiftError("%s needs a scorer in ORDER BY" % " and ".join(
            CLAUSE_WORDS[k] for k in CLAUSE_WORDS if clause.args.get(k) is not None), SYNTAX_ERROR,
            hint=hint), clause)
    return metadata_view(ctx, select, scope, subject, from_, joins, keys)
