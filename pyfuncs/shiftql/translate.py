"""SHiFT-QL → plain PostgreSQL (seed 000 §3.3 "Query Parser and Translator").

`translate(text, catalog)` parses a SHiFT-QL text (dialect.py) and rewrites its
tree, AST to AST, into PostgreSQL statements; sqlglot's PostgreSQL generator
prints them. User input reaches the SQL only as sqlglot nodes (string
literals, identifiers), never as pasted text. The catalog (catalog.py) says
which persisted views, user tables, readers and models exist; without one,
nothing beyond Models and DataReaders is checked.

What a query returns: one row per model, first `model_id` (text) and `score`
(double precision), then whatever else the query selected. Inside a query, a
block over DataReaders returns one row per reader, `reader_id` and `score`.

- A block ordered by metadata (Q1 of §3.2) is the SELECT itself; `score` is its
  first ORDER BY expression (as double precision; NULL when not a number).
- A proxy scoring view (Q2, Q3 of §3.2; §3.1 "Lazily Materialized top-K Scoring
  Views") becomes a pool (its FROM, JOINs, WHERE and GROUP BY, selecting the
  model id and the other selected columns, as a CTE) and one call of the
  set-returning function `shift.score(scorer, params, model_ids, test_reader,
  train_reader[, top_k, descending])` over the pool's model ids; `score` is that
  function's value. The scorer's name is the registry's (pyfuncs.scorers), its
  parameters are checked and completed by `Scorer.resolve` and passed as one
  JSON literal; the readers are string literals exactly as written. A constant
  LIMIT (plus OFFSET) is passed as top_k, so that the engine may find the top
  K by successive halving (§4.1). Ties are broken by the id, NULL scores come
  last, in a metadata ORDER BY too unless NULLS FIRST is written.
- FineTune with TESTED ON / TRAINED ON is a scorer like a proxy. Without them
  it is meta-learned (Q5 of §3.2): the block's models are paired with the data
  readers in scope (Q5 writes `Readers.ReaderId IN ...` over `FROM Models`, so
  a missing DataReaders relation is joined implicitly) and ranked by their
  recorded benchmark results, `shift.benchmark_scores(...)`.
- A dataset similarity view (§3.1; the inner query of Q5) is a block over
  DataReaders ordered by a DataSimMetric: a pool of readers and one call of
  `shift.dataset_similarity(metric, params, reader_ids, target_reader)`.
- Named queries (`Q1 := ...`, `(...) Q1`, `WITH Q1 AS (...)`) become CTEs; `NOT
  IN Q1` becomes `NOT model_id IN (SELECT model_id FROM q1)`. A scoring or
  dataset similarity view nested in a condition or in FROM becomes a CTE too
  (the implicit scoring views of §3.1); any other sub-query is plain SQL.
- UNION, INTERSECT and EXCEPT keep their SQL meaning. Each block keeps its own
  ORDER BY and LIMIT; a result that combines blocks is ordered by model_id,
  then score, since the blocks' scores are not comparable.
- `CREATE SCORING VIEW v AS query` (or DATASET SIMILARITY) becomes `CREATE VIEW
  schema.v WITH (security_invoker = true) AS <its translation>` and a COMMENT
  that marks the view as SHiFT-QL's (catalog.view_comment); later queries read
  it by name like a named query, plain SQL reads it as any view. `DROP SCORING
  VIEW v` becomes `DROP VIEW schema.v`.
- In a script, only the named queries each statement uses are kept.

§3.3 evaluates the query tree bottom-up; here PostgreSQL does, since each
scoring view is a CTE it reads before the views that use it. `explain_tree`
shows that tree.

The stages are modules over one shared Context (context.py), in the manner of
sqlglot's optimizer: parse (dialect.py) → resolve names against the catalog
(expressions.py, clauses.py) → expand named queries and views (named.py,
views.py) → turn scoring and similarity blocks into calls (ranking.py,
scoring.py; queries.py dispatches a query to them) → generate (generate.py).
Unlike the optimizer's passes, which each walk a whole tree in turn, the
stages run block by block, since a block's names decide what its ORDER BY
means; a nested query goes through them again by `Context.query`.
"""

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from ..errors import FEATURE_NOT_SUPPORTED, STATEMENT_TOO_COMPLEX, SYNTAX_ERROR, ShiftError
from .catalog import Catalog
from .context import Context
from .dialect import CreateView, DropView, NamedQuery, QueryRef, SyntaxProblem, WithQuery, parse_script
from .expressions import plain
from .generate import finish, sql, translation_of
from .limits import Interrupted, Interrupts
from .named import check_new_name, define
from .plan import PlanNode, ScoringRequest, ScoringUse, SimilarityUse, Statement, Translation
from .positions import SYNOPSIS, offset_of, syntax_error
from .queries import query
from .views import create_view, drop_view

__all__ = ["PlanNode", "ScoringRequest", "ScoringUse", "SimilarityUse", "Statement", "Translation", "explain_tree",
           "translate"]

_READERS_HINT = ("rank data readers in a view: CREATE DATASET SIMILARITY VIEW name AS SELECT "
                 "DataReaderId FROM DataReaders ORDER BY Task2Vec LIMIT k TESTED AGAINST reader, "
                 "then SELECT * FROM name; or use it in a condition: ReaderId IN (...)")


def translate(text, catalog=None, pretty=False):
    """The PostgreSQL of a SHiFT-QL text; every failure is a ShiftError."""
    if not isinstance(text, str):
        raise ShiftError("a SHiFT-QL query must be text, not %s" % type(text).__name__, SYNTAX_ERROR)
    catalog = catalog if catalog is not None else Catalog()
    interrupts = Interrupts(catalog.check_interrupts)
    try:
        script = parse_script(text, interrupts)
        return _script(Context(text, catalog, query=query, plain=plain, interrupts=interrupts), script, pretty)
    except ShiftError:
        raise
    except Interrupted as interrupted:  # a cancel: PostgreSQL's own error, not a bad query
        raise interrupted.error from None
    except SyntaxProblem as problem:
        raise syntax_error(text, problem.start, problem.end, problem.at_end, problem.expected) from None
    except ParseError as error:
        first = (error.errors or [{}])[0]
        raise syntax_error(text, *offset_of(text, first.get("line"), first.get("col")),
                           first.get("description") or str(error)) from None
    except TokenError as error:
        start = error.start if error.start is not None else 0
        raise syntax_error(text, start, start, False, "valid SHiFT-QL text") from None
    except RecursionError:  # PostgreSQL's stack depth limit has this SQLSTATE too
        raise ShiftError("the query is nested too deeply", STATEMENT_TOO_COMPLEX,
                         hint="write fewer nested parentheses or sub-queries") from None
    except Exception as error:  # SqlglotError or a gap here: still reported as a bad query, never raw
        raise ShiftError("could not translate the query: %s" % (str(error).splitlines() or [""])[0][:200],
                         SYNTAX_ERROR, hint=SYNOPSIS) from None


def _script(ctx, script, pretty):
    """Each statement in order: definitions, CREATE / DROP VIEW, and the final query."""
    statements = script.expressions
    if not statements:
        raise ShiftError("empty query", SYNTAX_ERROR, hint=SYNOPSIS)
    out = []
    plan = None
    for i, statement in enumerate(statements):
        ctx.interrupts.check()
        last = i == len(statements) - 1
        if isinstance(statement, NamedQuery) and not statement.args.get("inline") and not last:
            define(ctx, statement)
        elif isinstance(statement, CreateView):
            made, plan = create_view(ctx, statement, pretty)
            out += made
        elif isinstance(statement, DropView):
            made, plan = drop_view(ctx, statement, pretty)
            out += made
        elif not last:
            raise ctx.located(ShiftError(
                "only the last statement of a SHiFT-QL script may be an unnamed query", SYNTAX_ERROR,
                hint="name the earlier ones: Q1 := SELECT ...;"), statement)
        else:
            built = _final_query(ctx, statement)
            if built.key != "model_id":
                raise ctx.located(ShiftError(
                    "a SHiFT-QL query returns models; this one returns %s"
                    % ("data readers" if built.key == "reader_id" else "no model ids"), FEATURE_NOT_SUPPORTED,
                    hint=_READERS_HINT if built.key == "reader_id" else SYNOPSIS), statement)
            final = finish(ctx, built)
            ctx.interrupts.check()
            out.append(Statement("query", sql(final, pretty)))
            plan = built.plan
    ctx.interrupts.check()
    return translation_of(ctx, script, out, plan)


def _final_query(ctx, statement):
    if isinstance(statement, NamedQuery) and not statement.args.get("inline"):
        check_new_name(ctx, statement.this)
        return query(ctx, statement.expression, ctx.fresh(statement.this.name.lower()))
    if isinstance(statement, (exp.Query, QueryRef, NamedQuery, exp.Subquery, WithQuery)):
        return query(ctx, statement, None)
    raise ctx.located(ShiftError("a SHiFT-QL text must end with a query", FEATURE_NOT_SUPPORTED,
                                 hint=SYNOPSIS), statement)


def explain_tree(translation):
    """A readable, indented tree of the scoring views and their pools (seed 000 §3.3)."""
    out = []
    seen = set()

    def walk(node, depth):
        pad = "  " * depth
        title = node.kind if node.name is None else "%s %s" % (node.kind, node.name)
        if node.kind == "named query" and node.name in seen:
            out.append("%s%s (see above)" % (pad, title))
            return
        if node.kind == "named query":
            seen.add(node.name)
        out.append(pad + title)
        for line in node.lines:
            out.append("%s  %s" % (pad, line))
        for child in node.children:
            walk(child, depth + 1)

    walk(translation.plan, 0)
    return "\n".join(out)
