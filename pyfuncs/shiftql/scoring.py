"""The kinds of view (seed 000 §3.1–§3.2): a block ordered by metadata, or ranked by a scorer or metric.

A ranked block becomes a pool CTE (its rows) and one call of a set-returning
function over the pool's ids: shift.score (a proxy, or FineTune with readers),
shift.benchmark_scores (FineTune without them, Q5) or shift.dataset_similarity.
"""

from sqlglot import exp

from .. import datasim, embeddings, scorers
from ..errors import DUPLICATE_COLUMN, FEATURE_NOT_SUPPORTED, WRONG_OBJECT_TYPE, ShiftError
from . import catalog
from .clauses import constant_clause, extras, grouping, limit_lines, projection_ref, where
from .context import Built
from .names import Source, alias, col, ident, output_name, type_of
from .named import uses_named
from .plan import PlanNode, ScoringUse, SimilarityUse
from .ranking import names_of, params, reader_form, top_k

_DOUBLE = "double precision"


def metadata_view(ctx, select, scope, subject, from_, joins, keys):
    """Q1 of seed 000 §3.2: plain SQL; score is the first ORDER BY expression."""
    where_ = where(ctx, select, scope)
    group, having, distinct = grouping(ctx, select, scope)
    key_col = col(subject.key, subject.sql_alias)
    if not keys and "score" in subject.columns and subject.relation is None:
        # a block over a named query or a view keeps its scores and their order
        keys = [exp.Ordered(this=col("score", subject.sql_alias), desc=subject.descending)]
    ordered = []
    for key in keys:
        nulls_first = bool(key.args.get("nulls_first")) if key.meta.get("explicit_nulls") else False
        ordered.append(exp.Ordered(this=projection_ref(ctx, key.this, scope, select), desc=bool(key.args.get("desc")),
                                   nulls_first=nulls_first))
    score = _metadata_score(scope, ordered, distinct)
    if not any(o.this == key_col for o in ordered):
        ordered.append(exp.Ordered(this=key_col.copy(), nulls_first=False))
    extra, columns, types, first_name = extras(ctx, select, scope, subject, score)
    query = exp.Select(
        expressions=[alias(key_col.copy(), subject.key), alias(score, "score"), *extra],
        from_=from_, joins=joins or None, where=where_, group=group, having=having, distinct=distinct,
        order=exp.Order(expressions=ordered),
        limit=constant_clause(ctx, select, "limit"), offset=constant_clause(ctx, select, "offset"))
    lines = ["order by: %s" % ", ".join(o.sql(dialect="postgres") for o in ordered)]
    lines += limit_lines(select)
    lines.append("rows: %s" % exp.Select(expressions=[exp.Star()], from_=from_.copy(),
                                         joins=[j.copy() for j in joins] or None,
                                         where=_copy(where_), group=_copy(group),
                                         having=_copy(having)).sql(dialect="postgres"))
    desc = bool(keys and keys[0].args.get("desc"))
    kind = "metadata view" if subject.key == "model_id" else "reader metadata view"
    return Built(query, [subject.key, "score", *columns], {subject.key: "text", "score": _DOUBLE, **types},
                 PlanNode(kind, None, lines, uses_named(ctx, from_, joins, where_)),
                 _result_order(subject.key, desc if keys else None),
                 block=True, key=subject.key, first=first_name, descending=desc)


def _metadata_score(scope, ordered, distinct):
    """The score of a metadata view: its first ORDER BY expression as double precision (NULL if no number)."""
    if not ordered:
        return exp.Cast(this=exp.Null(), to=exp.DataType.build(_DOUBLE))
    first = ordered[0].this
    kind = type_of(first, scope)
    if kind == _DOUBLE:
        return first.copy()
    if kind is not None and kind not in catalog.NUMERIC_TYPES:
        return exp.Cast(this=exp.Null(), to=exp.DataType.build(_DOUBLE))
    score = exp.Cast(this=first.copy(), to=exp.DataType.build(_DOUBLE))
    if distinct is not None:
        ordered[0].set("this", score.copy())  # SELECT DISTINCT orders by what it selects
    return score


def _result_order(key, desc):
    """How a reader of the view by name orders it: score (when ranked, desc not None), then the id."""
    by_key = exp.Ordered(this=col(key), nulls_first=False)
    if desc is None:
        return [by_key]
    return [exp.Ordered(this=col("score"), desc=desc, nulls_first=False), by_key]


def ranked_view(ctx, select, label, scope, subject, from_, joins, key, scorer, args):
    """A proxy scoring view (Q2/Q3), a FineTune view (Q5) or a dataset similarity view (§3.1).

    The block's rows become a pool CTE; one call of a set-returning function
    ranks the pool's ids, and the outer SELECT joins the two and keeps the top K.
    """
    _check_ranks(ctx, scorer, subject, key)
    values = params(ctx, scorer, args)
    form, readers = reader_form(ctx, scorer, select.args.get("scoring"), key)
    if form == "benchmark":
        joins = _join_readers(scope.sources, joins)
    where_ = where(ctx, select, scope)
    group, having, distinct = grouping(ctx, select, scope)
    extra, names, types, first_name = extras(ctx, select, scope, subject)
    pool_columns = _pool_columns(ctx, select, scope, subject, form, extra, names)
    pool = ctx.fresh("%s_pool" % label if label else "pool")
    ctx.ctes.append((pool, exp.Select(expressions=pool_columns, from_=from_, joins=joins or None, where=where_,
                                      group=group, having=having, distinct=distinct)))
    desc = bool(key.args.get("desc"))
    call, on, what, kind = _call(ctx, form, scorer, values, readers, pool, subject.key, top_k(select), desc)
    order = [exp.Ordered(this=col("score", "s"), desc=desc, nulls_first=False),
             exp.Ordered(this=col(subject.key, "p"), nulls_first=False)]
    if form == "benchmark":
        order.append(exp.Ordered(this=col("reader_id", "p"), nulls_first=False))
    query = exp.Select(
        expressions=[alias(col(subject.key, "p"), subject.key), alias(col("score", "s"), "score"),
                     *[col(n, "p") for n in names]],
        from_=exp.From(this=exp.Table(this=ident(pool), alias=exp.TableAlias(this=ident("p")))),
        joins=[exp.Join(this=exp.Table(this=call, db=ident("shift"), alias=exp.TableAlias(this=ident("s"))),
                        on=on)],
        order=exp.Order(expressions=order),
        limit=constant_clause(ctx, select, "limit"), offset=constant_clause(ctx, select, "offset"))
    lines = ["%s: %s %s %s" % ("metric" if scorer.kind == "datasim" else "scorer", scorer.name,
                               scorers.canonical_json(values), "DESC" if desc else "ASC")]
    lines += limit_lines(select)
    lines.append(what)
    lines.append("pool (%s): %s" % (pool, ctx.ctes[-1][1].sql(dialect="postgres")))
    return Built(query, [subject.key, "score", *names], {subject.key: "text", "score": _DOUBLE, **types},
                 PlanNode(kind, None, lines, uses_named(ctx, from_, joins, where_)),
                 _result_order(subject.key, desc), block=True, key=subject.key, first=first_name,
                 descending=desc)


def _check_ranks(ctx, scorer, subject, key):
    """A scorer ranks models, a metric readers: the block must read what it ranks."""
    ranks = "readers" if subject.key == "reader_id" else "models"
    if scorer.ranks == ranks:
        return
    if scorer.ranks == "readers":
        error = ShiftError("%s ranks data readers, not models" % scorer.name, WRONG_OBJECT_TYPE,
                           hint="use it in a query over DataReaders: SELECT DataReaderId FROM DataReaders "
                                "ORDER BY %s LIMIT k TESTED AGAINST reader" % scorer.name)
    else:
        error = ShiftError("%s ranks models, not data readers" % scorer.name, WRONG_OBJECT_TYPE,
                           hint="dataset similarity metrics: %s" % names_of("readers"))
    raise ctx.located(error, key.this)


def _join_readers(sources, joins):
    """Q5 of §3.2 names Readers.ReaderId over FROM Models: the readers with benchmark results, joined."""
    if any(s.relation is catalog.READERS for s in sources):
        return joins
    sources.append(Source("readers", {"readers", *catalog.spellings(catalog.READERS)},
                          tuple(catalog.READERS.column_names()), dict(catalog.READERS.columns),
                          relation=catalog.READERS, implicit=True))
    return [*joins, exp.Join(this=exp.Table(this=ident("readers"), db=ident("shift"),
                                            alias=exp.TableAlias(this=ident("readers"))), kind="CROSS")]


def _pool_columns(ctx, select, scope, subject, form, extra, names):
    """The pool's select list: the id (and reader id of a benchmark view), then everything selected besides."""
    hidden = {subject.key: col(subject.key, subject.sql_alias)}
    if form == "benchmark":
        readers_src = next(s for s in scope.sources if s.relation is catalog.READERS)
        hidden["reader_id"] = col("reader_id", readers_src.sql_alias)
    columns = [alias(c.copy(), name) for name, c in hidden.items()]
    taken = set(hidden)
    for expression, name in zip(extra, names):
        if name == "*":
            raise ctx.located(ShiftError("the columns of %s are unknown here" % expression.table,
                                         FEATURE_NOT_SUPPORTED, hint="select its columns by name"), select)
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if name in hidden and inner == hidden[name]:
            continue
        if name in taken:
            raise ctx.located(ShiftError("column %s is selected twice" % name, DUPLICATE_COLUMN,
                                         hint="give the selected expressions distinct aliases"), select)
        taken.add(name)
        columns.append(inner if output_name(inner) == name else alias(inner, name))
    return columns


def _call(ctx, form, scorer, values, readers, pool, key, k, desc):
    """(the function call, its join condition, the plan's line, the plan's kind) of a ranked view."""
    params_node = exp.Cast(this=exp.Literal.string(scorers.canonical_json(values)), to=exp.DataType.build("jsonb"))

    def ids(column, distinct=False):
        return exp.Array(expressions=[exp.Select(
            expressions=[col(column)], from_=exp.From(this=exp.Table(this=ident(pool))),
            distinct=exp.Distinct() if distinct else None)])

    on = exp.EQ(this=col(key, "s"), expression=col(key, "p"))
    name = exp.Literal.string(scorer.name)
    if form == "task":
        test, train = readers["tested_on"], readers["trained_on"]
        args = [name, params_node, ids("model_id"), exp.Literal.string(test), exp.Literal.string(train)]
        if k is not None:
            args += [exp.Literal.number(k), exp.Boolean(this=desc)]
        ctx.uses.append((pool, ScoringUse(scorer.name, values, test, train)))
        ctx.requests.append((pool, ctx.uses[-1][1], k, desc))
        return (exp.Anonymous(this="score", expressions=args), on,
                "tested on: %s, trained on: %s" % (test, train), "scoring view")
    if form == "benchmark":
        ctx.uses.append((pool, ScoringUse(scorer.name, values, None, None)))
        on = exp.and_(on, exp.EQ(this=col("reader_id", "s"), expression=col("reader_id", "p")))
        return (exp.Anonymous(this="benchmark_scores", expressions=[
            name, params_node, ids("model_id", True), ids("reader_id", True)]), on,
            "benchmark results on the readers of the pool", "benchmark view")
    target = readers["tested_against"]
    ctx.similar.append((pool, SimilarityUse(scorer.name, values, target)))
    args = [name, params_node, ids("reader_id"), exp.Literal.string(target)]
    if k is not None:
        args += [exp.Literal.number(k), exp.Boolean(this=desc)]
    return (exp.Anonymous(this="dataset_similarity", expressions=args), on,
            "tested against: %s; %s" % (target, _similarity_access(values.get("distance"), k, desc)),
            "dataset similarity view")


def _similarity_access(distance, k, desc):
    """How shift.dataset_similarity finds the nearest readers (pyfuncs.datasim.uses_index)."""
    if distance in embeddings.INDEXED and k is not None and not desc:
        return ("index: hnsw on shift.task_embeddings.index_vector when the pool holds %d or more readers, "
                "then exact re-ranking; an exact scan below" % datasim.INDEX_MIN_POOL)
    why = ("%s is not a cosine of per-task vectors" % distance if distance not in embeddings.INDEXED
           else "no LIMIT" if k is None else "farthest first")
    return "index: none, exact distances (%s)" % why


def _copy(node):
    return node.copy() if node is not None else None
