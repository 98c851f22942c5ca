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
"""

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from .. import scorers
from ..errors import DUPLICATE_OBJECT, SYNTAX_ERROR, ShiftError, unknown
from . import catalog
from .dialect import (CreateView, DropView, NamedQuery, QueryRef, ScoringClause, Script, SyntaxProblem, WithQuery,
                      parse_script, to_shiftql)

FEATURE_NOT_SUPPORTED = "0A000"
AMBIGUOUS_COLUMN = "42702"
DUPLICATE_COLUMN = "42701"
DUPLICATE_TABLE = "42P07"
WRONG_OBJECT_TYPE = "42809"

SYNOPSIS = ("a SHiFT-QL query reads: [Name :=] SELECT ... FROM Models [WHERE ...] "
            "[ORDER BY column | Scorer[(name=value, ...)] [ASC | DESC]] [LIMIT k] "
            "[TESTED ON reader TRAINED ON reader]")

# PostgreSQL's reserved key words: a name the user gives that is one of them is quoted
_PG_RESERVED = frozenset("""
all analyse analyze and any array as asc asymmetric authorization binary both case cast check
collate collation column concurrently constraint create cross current_catalog current_date
current_role current_schema current_time current_timestamp current_user default deferrable desc
distinct do else end except false fetch for foreign freeze from full grant group having ilike in
initially inner intersect into is isnull join lateral leading left like limit localtime
localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
references returning right select session_user similar some symmetric system_user table
tablesample then to trailing true union unique user using variadic verbose when where window with
""".split())

_CLAUSE_WORDS = {"tested_on": "TESTED ON", "trained_on": "TRAINED ON", "tested_against": "TESTED AGAINST"}


class ScoringUse(NamedTuple):
    """One scoring view of models in the query, for the planner (readers None: benchmark results)."""

    scorer: str        # canonical registry name
    params: dict       # complete, checked parameters (Scorer.resolve)
    test_reader: str   # as the user wrote it
    train_reader: str


class ScoringRequest(NamedTuple):
    """A task-aware scoring view as the engine will see it: for shift.explain's plan of the cost model."""

    use: ScoringUse
    pool_sql: str | None    # the pool's model ids, when no other scoring view is needed to know them
    top_k: int | None
    descending: bool


class SimilarityUse(NamedTuple):
    """One dataset similarity view of the query."""

    metric: str
    params: dict
    target_reader: str


@dataclass
class PlanNode:
    """A node of the query tree of seed 000 §3.3: a view, a named query or a set operation."""

    kind: str
    name: str | None = None
    lines: list = field(default_factory=list)
    children: list = field(default_factory=list)


@dataclass
class Statement:
    """One PostgreSQL statement of a translation: 'query', 'create view', 'comment' or 'drop view'."""

    kind: str
    sql: str
    view: catalog.ViewInfo | None = None


@dataclass
class Translation:
    sql: str                # the PostgreSQL statements, separated by ";\n" (one for a query)
    tree: Script            # the parsed SHiFT-QL
    scoring: list           # ScoringUse of every scoring view of models the statements run
    plan: PlanNode          # the query tree of the last statement, for explain_tree
    statements: list = field(default_factory=list)
    similarity: list = field(default_factory=list)
    requests: list = field(default_factory=list)    # ScoringRequest of every task-aware scoring view

    @property
    def query(self):
        """The SQL of the final query, or None when the text ends with CREATE or DROP."""
        last = self.statements[-1] if self.statements else None
        return last.sql if last is not None and last.kind == "query" else None


def translate(text, catalog=None, pretty=False):
    """The PostgreSQL of a SHiFT-QL text; every failure is a ShiftError."""
    if not isinstance(text, str):
        raise ShiftError("a SHiFT-QL query must be text, not %s" % type(text).__name__, SYNTAX_ERROR)
    try:
        script = parse_script(text)
        return _Translator(text, catalog).run(script, pretty)
    except ShiftError:
        raise
    except SyntaxProblem as problem:
        raise _syntax_error(text, problem.start, problem.end, problem.at_end, problem.expected) from None
    except ParseError as error:
        first = (error.errors or [{}])[0]
        raise _syntax_error(text, *_offset_of(text, first.get("line"), first.get("col")),
                            expected=first.get("description") or str(error)) from None
    except TokenError as error:
        start = error.start if error.start is not None else 0
        raise _syntax_error(text, start, start, False, "valid SHiFT-QL text") from None
    except RecursionError:
        raise ShiftError("the query is nested too deeply", SYNTAX_ERROR,
                         hint="write fewer nested parentheses or sub-queries") from None
    except Exception as error:  # SqlglotError or a gap here: still reported as a bad query, never raw
        raise ShiftError("could not translate the query: %s" % (str(error).splitlines() or [""])[0][:200],
                         SYNTAX_ERROR, hint=SYNOPSIS) from None


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


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _offset_of(text, line, col):
    if not line:
        return 0, 0, False
    lines = text.split("\n")
    line = min(max(int(line), 1), len(lines))
    start = sum(len(x) + 1 for x in lines[:line - 1]) + max(int(col or 1) - 1, 0)
    start = min(start, len(text))
    return start, start, start >= len(text)


def _caret(text, start):
    """`line L, column C:` then the line and a caret under the column (PostgreSQL's LINE n: style)."""
    start = min(max(start, 0), len(text))
    line_no = text.count("\n", 0, start) + 1
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    col = start - line_start + 1
    pad = "".join("\t" if ch == "\t" else " " for ch in line[:col - 1])
    return line_no, col, "line %d, column %d:\n%s\n%s^" % (line_no, col, line, pad)


def _expected(description):
    d = (description or "").strip()
    if d.startswith("Expecting "):
        return "expected " + d[len("Expecting "):]
    if d.startswith("Required keyword") or d.startswith("Expected an expression"):
        return "expected an expression here"
    if d.startswith("Invalid expression / Unexpected token"):
        return "unexpected word here; the statement should end or go on with UNION, ORDER BY, LIMIT, TESTED ON"
    m = re.match(r"Found multiple '(.+)' clauses", d)
    if m:
        return "%s is written twice" % m.group(1)
    if not d:
        return "valid SHiFT-QL"
    return d[:1].lower() + d[1:] if d[1:2].islower() else d


def _syntax_error(text, start, end, at_end, expected):
    line_no, col, detail = _caret(text, start)
    if at_end or start >= len(text):
        message = "syntax error at end of input"
    else:
        near = text[start:end + 1].split("\n")[0][:40] or text[start]
        message = 'syntax error at or near "%s"' % near
    hint = _expected(expected)
    if SYNOPSIS not in hint:
        hint = "%s; %s" % (hint, SYNOPSIS)
    return ShiftError(message, SYNTAX_ERROR, detail=detail, hint=hint)


def _located(error, text, node):
    """The error with a caret under the node's place in the text, where the parser recorded it."""
    if error.detail is None and node is not None:
        for n in (node, *node.find_all(exp.Identifier)):
            start = n.meta.get("start") if n.meta else None
            if start is not None:
                error.detail = _caret(text, start)[2]
                break
    return error



# --------------------------------------------------------------------------
# Names and scopes
# --------------------------------------------------------------------------


def _ident(name, quoted=False):
    """An identifier for a name PostgreSQL should see exactly: quoted where it would misread or fold it."""
    ident = exp.to_identifier(name, quoted=quoted or None)
    if name.lower() in _PG_RESERVED or name != name.lower():
        ident.set("quoted", True)
    return ident


def _folded(ident):
    """The name PostgreSQL gives an identifier as written: lower-cased unless quoted."""
    if ident is None:
        return None
    if isinstance(ident, str):
        return ident.lower()
    if not isinstance(ident, exp.Identifier):
        raise ShiftError("expected a name, not %s" % ident.sql(dialect="postgres")[:40], SYNTAX_ERROR,
                         hint="names are words or \"quoted identifiers\"")
    return ident.name if ident.quoted else ident.name.lower()


def _col(name, table=None):
    return exp.Column(this=_ident(name), table=_ident(table) if table is not None else None)


def _alias(expression, name):
    return exp.Alias(this=expression, alias=_ident(name))


def _output_name(node):
    """The name PostgreSQL gives a select-list item (lower-cased unless quoted)."""
    if isinstance(node, exp.Alias):
        ident = node.args["alias"]
    elif isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        ident = node.this
    else:
        return None
    return ident.name if ident.quoted else ident.name.lower()


@dataclass
class _Source:
    """A relation in a FROM clause: a view of seed 000 §3.1, a named query, a persisted view, a user's table."""

    sql_alias: str              # the name the generated SQL uses for it
    written: set                # lower-case names the query may qualify columns with
    columns: tuple = ()         # output columns
    types: dict = field(default_factory=dict)
    relation: catalog.Relation | None = None
    external: bool = False      # a user's table whose columns are unknown here: names pass through
    key_column: str | None = None   # model_id or reader_id of a named query or a view
    implicit: bool = False      # joined by the translator (the readers of a FineTune benchmark view)
    descending: bool = False    # how the score of a named query or view ranks

    @property
    def key(self):
        if self.relation is not None:
            return self.relation.key
        return self.key_column

    def find(self, written):
        if self.relation is not None:
            return self.relation.find_column(written)
        want = catalog.normalise(written)
        for column in self.columns:
            if catalog.normalise(column) == want:
                return column
        return None


class _Scope:
    def __init__(self, sources, parent=None):
        self.sources = sources
        self.parent = parent

    def source(self, qualifier):
        q = qualifier.lower()
        scope = self
        while scope is not None:
            for s in scope.sources:
                if q in s.written:
                    return s
            scope = scope.parent
        return None

    def by_alias(self, alias):
        scope = self
        while scope is not None:
            for s in scope.sources:
                if s.sql_alias == alias:
                    return s
            scope = scope.parent
        return None

    def known_columns(self):
        names = []
        scope = self
        while scope is not None:
            for s in scope.sources:
                names += [c for c in s.columns if c not in names]
            scope = scope.parent
        return names

    def resolve(self, column):
        """The generated column for a column the user wrote (seed 000 §3.1 spelling → table spelling)."""
        if column.args.get("db") or column.args.get("catalog"):
            raise ShiftError("column reference %s has too many qualifiers" % column.sql(), SYNTAX_ERROR,
                             hint="write column or relation.column")
        qualifier = column.table
        if isinstance(column.this, exp.Star):
            src = self.source(qualifier)
            if src is None:
                raise unknown("table", qualifier, self._aliases())
            return exp.Column(this=exp.Star(), table=_ident(src.sql_alias))
        name = column.name
        if qualifier:
            src = self.source(qualifier)
            if src is None:
                raise unknown("table", qualifier, self._aliases())
            if src.external:
                return exp.Column(this=column.this.copy(), table=_ident(src.sql_alias))
            found = src.find(name)
            if found is None:
                raise unknown("column", name, list(src.columns))
            return _col(found, src.sql_alias)
        scope = self
        while scope is not None:
            # a relation joined implicitly answers only to its name: Readers.ReaderId, not ReaderId
            hits = [(s, c) for s in scope.sources if not s.implicit for c in [s.find(name)] if c is not None]
            ours = [(s, c) for s, c in hits if s.relation is not None]
            if len(hits) > 1 and len(ours) == 1:
                hits = ours  # Models and DataReaders win over a user's table: `ModelId` of a join on model_id
            if len(hits) > 1:
                raise ShiftError("column reference %r is ambiguous" % name, AMBIGUOUS_COLUMN,
                                 hint="qualify it: %s" % " or ".join(
                                     "%s.%s" % (s.sql_alias, c) for s, c in hits))
            if hits:
                src, found = hits[0]
                return _col(found, src.sql_alias)
            if any(s.external for s in scope.sources):
                return column.copy()
            scope = scope.parent
        raise unknown("column", name, self.known_columns())

    def _aliases(self):
        return sorted({w for s in self.sources for w in s.written})


@dataclass
class _Built:
    """A translated query: its SQL node, output columns and the plan below it."""

    query: exp.Expression
    columns: list
    types: dict
    plan: PlanNode
    order: list                 # how to order a result that reads this query by name
    block: bool = False         # a single SELECT block (its ORDER BY / LIMIT are its own)
    key: str | None = None      # model_id or reader_id: what one row is; None for plain SQL
    first: str | None = None    # the output column of the first item the user selected
    descending: bool = False    # the score ranks DESC (higher is better)
    opaque: bool = False        # plain SQL whose columns are not all known


@dataclass
class _Named:
    """A query that others read by name: a CTE of this statement, or a persisted view."""

    display: str
    table: exp.Table            # how the SQL reads it (no alias)
    built: _Built
    cte: str | None = None
    view: catalog.ViewInfo | None = None


# --------------------------------------------------------------------------
# The translator
# --------------------------------------------------------------------------


class _Translator:
    def __init__(self, text, catalog_=None):
        self.text = text
        self.catalog = catalog_ if catalog_ is not None else catalog.Catalog()
        self.names = {}         # lower-case query name -> _Named
        self.ctes = []          # (name, body) in definition order
        self.used = set()       # every CTE name taken
        self.uses = []          # (pool cte, ScoringUse)
        self.requests = []      # (pool cte, ScoringUse, top_k, descending) of task-aware scoring views
        self.similar = []       # (pool cte, SimilarityUse)
        self.emitted = set()    # CTEs some statement reads
        self.view_changes = {}  # (schema, name) -> ViewInfo created by this script, or None once dropped
        self.view_named = {}    # (schema, name) -> _Named
        self.implicit = {}      # CTE name -> _Named of a view nested in a query

    # -- the script

    def run(self, script, pretty):
        statements = script.expressions
        if not statements:
            raise ShiftError("empty query", SYNTAX_ERROR, hint=SYNOPSIS)
        out = []
        plan = None
        for i, statement in enumerate(statements):
            last = i == len(statements) - 1
            if isinstance(statement, NamedQuery) and not statement.args.get("inline") and not last:
                self._define(statement)
            elif isinstance(statement, CreateView):
                plan = self._create_view(statement, out, pretty)
            elif isinstance(statement, DropView):
                plan = self._drop_view(statement, out, pretty)
            elif not last:
                raise _located(ShiftError(
                    "only the last statement of a SHiFT-QL script may be an unnamed query", SYNTAX_ERROR,
                    hint="name the earlier ones: Q1 := SELECT ...;"), self.text, statement)
            else:
                built = self._final_query(statement)
                if built.key != "model_id":
                    raise _located(ShiftError(
                        "a SHiFT-QL query returns models; this one returns %s"
                        % ("data readers" if built.key == "reader_id" else "no model ids"),
                        FEATURE_NOT_SUPPORTED,
                        hint="rank data readers in a view: CREATE DATASET SIMILARITY VIEW name AS SELECT "
                             "DataReaderId FROM DataReaders ORDER BY Task2Vec LIMIT k TESTED AGAINST reader, "
                             "then SELECT * FROM name; or use it in a condition: ReaderId IN (...)"
                        if built.key == "reader_id" else SYNOPSIS), self.text, statement)
                out.append(Statement("query", self._sql(self._finish(built), pretty)))
                plan = built.plan
        for statement in out:  # the generator's output must read back as what it is, whatever the input was
            try:
                parsed = sqlglot.parse(statement.sql, read="postgres")
            except sqlglot.errors.SqlglotError:
                parsed = []
            if len(parsed) != 1:
                raise ShiftError("could not translate the query into valid PostgreSQL", SYNTAX_ERROR,
                                 detail=statement.sql[:200], hint=SYNOPSIS)
        scoring = [use for pool, use in self.uses if pool in self.emitted]
        similarity = [use for pool, use in self.similar if pool in self.emitted]
        requests = [ScoringRequest(use, self._pool_ids_sql(pool), top_k, desc)
                    for pool, use, top_k, desc in self.requests if pool in self.emitted]
        return Translation(sql=";\n".join(s.sql for s in out), tree=script, scoring=scoring,
                           plan=plan or PlanNode("nothing"), statements=out, similarity=similarity,
                           requests=requests)

    def _pool_ids_sql(self, pool):
        """SELECT DISTINCT model_id FROM pool, with the CTEs it reads; None if those call a scoring function."""
        ids = exp.Select(expressions=[_col("model_id")], from_=exp.From(this=exp.Table(this=_ident(pool))),
                         distinct=exp.Distinct())
        reachable = self._reachable(ids)
        bodies = [body for name, body in self.ctes if name in reachable]
        if any(isinstance(f, exp.Anonymous) for body in bodies for f in body.find_all(exp.Anonymous)
               if isinstance(f.parent, exp.Table)):
            return None
        ids.set("with_", exp.With(expressions=[exp.CTE(this=body.copy(), alias=exp.TableAlias(this=_ident(name)))
                                               for name, body in self.ctes if name in reachable]))
        return self._sql(ids, False)

    def _final_query(self, statement):
        if isinstance(statement, NamedQuery) and not statement.args.get("inline"):
            self._check_new_name(statement.this)
            return self._query(statement.expression, self._fresh(statement.this.name.lower()))
        if isinstance(statement, (exp.Query, QueryRef, NamedQuery, exp.Subquery, WithQuery)):
            return self._query(statement, None)
        raise _located(ShiftError("a SHiFT-QL text must end with a query", FEATURE_NOT_SUPPORTED,
                                  hint=SYNOPSIS), self.text, statement)

    def _finish(self, built):
        """The statement of a built query: its ORDER BY and the CTEs it reads."""
        final = built.query.copy()
        if isinstance(final, exp.Subquery):
            final = final.this
        if not built.block:
            final.set("order", exp.Order(expressions=[o.copy() for o in built.order]))
        reachable = self._reachable(final)
        ctes = [exp.CTE(this=body.copy(), alias=exp.TableAlias(this=_ident(name)))
                for name, body in self.ctes if name in reachable]
        if ctes:
            final.set("with_", exp.With(expressions=ctes))
        for node in final.walk():
            if isinstance(node, (exp.Placeholder, exp.Parameter)):
                raise _located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                          hint="write the value itself"), self.text, node)
            if isinstance(node, (ScoringClause, NamedQuery, QueryRef, Script, WithQuery, CreateView, DropView)):
                raise ShiftError("could not translate %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS)
        self.emitted |= reachable
        return final

    @staticmethod
    def _sql(node, pretty):
        return node.sql(dialect="postgres", pretty=pretty, normalize_functions=False)

    def _reachable(self, final):
        bodies = dict(self.ctes)

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

    def _fresh(self, base):
        name = base
        n = 2
        while name in self.used:
            name = "%s_%d" % (base, n)
            n += 1
        self.used.add(name)
        return name

    # -- persisted views: CREATE / DROP ... VIEW (seed 000 §3.1)

    def _view(self, schema, name):
        key = (schema, name)
        if key in self.view_changes:
            return self.view_changes[key]
        return self.catalog.view(schema, name)

    def _views(self):
        found = {(v.schema, v.name): v for v in self.catalog.views()}
        found.update(self.view_changes)
        return [v for v in found.values() if v is not None]

    def _view_names(self, ident):
        """(schema, name) of a view name as written in CREATE / DROP."""
        schema = _folded(ident.args.get("db")) or self.catalog.default_schema
        return schema, _folded(ident.this)

    def _create_view(self, statement, out, pretty):
        kind = statement.args["kind"]
        target = statement.this
        schema, name = self._view_names(target)
        if not target.args.get("db") and catalog.find_relation(name) is not None:
            raise _located(ShiftError("view name %s is the name of a relation" % name, DUPLICATE_OBJECT,
                                      hint="name the view otherwise"), self.text, target.this)
        existing = self._view(schema, name)
        replacing = bool(statement.args.get("replace"))
        if existing is not None and not replacing:
            raise _located(ShiftError("view %s.%s already exists" % (schema, name), DUPLICATE_TABLE,
                                      hint="drop it first with DROP %s VIEW %s, or write CREATE OR REPLACE"
                                           % (existing.kind.upper(), name)), self.text, target.this)
        if existing is not None and existing.kind != kind:
            raise _located(ShiftError("%s.%s is a %s view" % (schema, name, existing.kind), WRONG_OBJECT_TYPE,
                                      hint="drop it with DROP %s VIEW %s first" % (existing.kind.upper(), name)),
                           self.text, target.this)
        built = self._query(statement.expression, self._fresh(name.lower()))
        want = "model_id" if kind == "scoring" else "reader_id"
        if built.key != want:
            raise _located(ShiftError(
                "a %s view returns %s" % (kind, "models" if want == "model_id" else "data readers"),
                WRONG_OBJECT_TYPE,
                hint="a scoring view reads Models (CREATE SCORING VIEW), a dataset similarity view reads "
                     "DataReaders (CREATE DATASET SIMILARITY VIEW)"), self.text, statement.expression)
        final = self._finish(built)
        table = exp.Table(this=_ident(name), db=_ident(schema))
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
        out.append(Statement("create view", self._sql(create, pretty), info))
        out.append(Statement("comment", self._sql(comment, False), info))
        self.view_changes[(schema, name)] = info
        self.view_named.pop((schema, name), None)
        return PlanNode("create %s view" % kind, info.qualified, children=[built.plan])

    def _drop_view(self, statement, out, pretty):
        kind = statement.args["kind"]
        schema, name = self._view_names(statement.this)
        info = self._view(schema, name)
        if info is None:
            if statement.args.get("exists"):
                return PlanNode("drop %s view" % kind, "%s.%s (absent)" % (schema, name))
            raise _located(unknown("%s view" % kind, name if statement.this.args.get("db") is None
                                   else "%s.%s" % (schema, name),
                                   [v.name if v.schema == self.catalog.default_schema else v.qualified
                                    for v in self._views() if v.kind == kind]),
                           self.text, statement.this.this)
        if info.kind != kind:
            raise _located(ShiftError("%s is a %s view" % (info.qualified, info.kind), WRONG_OBJECT_TYPE,
                                      hint="DROP %s VIEW %s" % (info.kind.upper(), name)),
                           self.text, statement.this.this)
        drop = exp.Drop(tables=[exp.Table(this=_ident(name), db=_ident(schema))], kind="VIEW",
                        cascade=bool(statement.args.get("cascade")))
        out.append(Statement("drop view", self._sql(drop, pretty), info))
        self.view_changes[(schema, name)] = None
        self.view_named.pop((schema, name), None)
        return PlanNode("drop %s view" % kind, info.qualified)

    def _named_view(self, info):
        """A persisted view, read by name like a named query."""
        key = (info.schema, info.name)
        if key not in self.view_named:
            columns = [c for c, _ in info.columns]
            order = [exp.Ordered(this=_col("score"), desc=info.descending, nulls_first=False),
                     exp.Ordered(this=_col(info.key), nulls_first=False)] if "score" in columns else \
                [exp.Ordered(this=_col(info.key), nulls_first=False)]
            built = _Built(None, columns, dict(info.columns),
                           PlanNode("%s view" % info.kind, info.qualified,
                                    lines=["defined as: %s" % " ".join(info.definition.split())]),
                           order, key=info.key, first=info.key, descending=info.descending)
            display = info.name if info.schema == self.catalog.default_schema else info.qualified
            self.view_named[key] = _Named(display, exp.Table(this=_ident(info.name), db=_ident(info.schema)),
                                          built, view=info)
        return self.view_named[key]

    # -- named queries

    def _check_new_name(self, ident):
        name = ident.name
        if name.lower() in self.names:
            raise _located(ShiftError("query %s is defined twice" % name, DUPLICATE_OBJECT,
                                      hint="give the second one another name"), self.text, ident)
        if catalog.find_relation(name) is not None:
            raise _located(ShiftError("query name %s is the name of a relation" % name, DUPLICATE_OBJECT,
                                      hint="name the query otherwise, e.g. Q1"), self.text, ident)

    def _define(self, named):
        """Q1 := query, (query) Q1, WITH Q1 AS (query): the query becomes a CTE (seed 000 §3.2)."""
        self._check_new_name(named.this)
        display = named.this.name
        cte = self._fresh(display.lower())
        built = self._definition(named.expression, cte)
        self._add_cte(cte, built)
        plan = PlanNode("named query", display, children=[built.plan])
        self.names[display.lower()] = _Named(display, exp.Table(this=_ident(cte)), replace(built, plan=plan), cte)
        return self.names[display.lower()]

    def _define_implicit(self, query, base):
        """A scoring or dataset similarity view nested in a query: an implicit view (seed 000 §3.1), a CTE."""
        cte = self._fresh(base)
        built = self._query(query, cte)
        self._add_cte(cte, built)
        plan = PlanNode("implicit view", cte, children=[built.plan])
        self.implicit[cte] = _Named(cte, exp.Table(this=_ident(cte)), replace(built, plan=plan), cte)
        return self.implicit[cte]

    def _add_cte(self, cte, built):
        body = built.query.this if isinstance(built.query, exp.Subquery) else built.query
        if not built.block and built.key is not None and isinstance(body, exp.SetOperation) \
                and any(body.args.get(k) for k in ("limit", "offset")):
            body = exp.Select(expressions=[exp.Star()], from_=exp.From(this=exp.Subquery(
                this=body, alias=exp.TableAlias(this=_ident("u")))))
        self.ctes.append((cte, body))

    def _define_with(self, with_):
        """A WITH clause: its queries are named queries."""
        if with_.args.get("recursive"):
            raise _located(ShiftError("WITH RECURSIVE is not supported in SHiFT-QL", FEATURE_NOT_SUPPORTED),
                           self.text, with_)
        for cte in with_.expressions:
            alias = cte.args.get("alias")
            if alias is None or alias.columns:
                raise _located(ShiftError("column names after a WITH query name are not supported",
                                          FEATURE_NOT_SUPPORTED, hint="alias the columns inside the query"),
                               self.text, cte)
            self._define(NamedQuery(this=alias.this, expression=cte.this))

    def _definition(self, query, label):
        """What a named query is: a SHiFT-QL query when it reads models or readers, plain SQL otherwise."""
        if isinstance(query, exp.Select) and not self._reads_subject(query) and not self._is_view_query(query):
            return self._plain(query, _Scope([]))
        return self._query(query, label)

    def _plain(self, select, scope):
        """Plain SQL over the user's tables, as a named query or a sub-query in FROM."""
        node = self._subselect(select, scope)
        columns, types, opaque = [], {}, False
        for p in node.expressions:
            name = _output_name(p)
            if isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)):
                opaque = True
            elif name is None:
                columns.append("?column?")
            else:
                columns.append(name)
                types[name] = _type_of(p.this if isinstance(p, exp.Alias) else p, scope)
        plan = PlanNode("plain query", lines=[node.sql(dialect="postgres")])
        return _Built(node, columns, types, plan, [], block=True, key=None,
                      first=columns[0] if columns else None, opaque=opaque)

    def _lookup(self, ref):
        """The named query or persisted view a QueryRef names."""
        ident, schema_ident = ref.this, ref.args.get("schema")
        if schema_ident is None:
            named = self.names.get(ident.name.lower())
            if named is not None:
                return named
            info = self._view(self.catalog.default_schema, _folded(ident))
        else:
            info = self._view(_folded(schema_ident), _folded(ident))
        if info is not None:
            return self._named_view(info)
        written = ident.name if schema_ident is None else "%s.%s" % (schema_ident.name, ident.name)
        known = [n.display for n in self.names.values()] + [
            v.name if v.schema == self.catalog.default_schema else v.qualified for v in self._views()]
        raise _located(unknown("query", written, known), self.text, ident)

    def _uses_named(self, *nodes):
        """Plans of the named queries and views a block reads (its children in the query tree of §3.3)."""
        by_table = {(None, n.cte): n for n in [*self.names.values(), *self.implicit.values()]}
        by_table.update({(k[0], k[1]): n for k, n in self.view_named.items()})
        out = []
        for node in nodes:
            for part in ([] if node is None else node if isinstance(node, list) else [node]):
                for t in part.find_all(exp.Table):
                    named = by_table.get((t.args["db"].name if t.args.get("db") else None, t.name))
                    if named is not None and named.built.plan not in out:
                        out.append(named.built.plan)
        return out

    # -- queries

    def _query(self, node, label):
        if isinstance(node, exp.Subquery) and not node.alias:
            return self._query(node.this, label)
        if isinstance(node, WithQuery):
            for definition in node.expressions:
                self._define(definition)
            return self._query(node.this, label)
        if isinstance(node, exp.Select):
            return self._block(node, label)
        if isinstance(node, QueryRef):
            return self._read_named(self._lookup(node))
        if isinstance(node, NamedQuery):
            return self._read_named(self._define(node))
        if isinstance(node, exp.SetOperation):
            return self._set_operation(node, label)
        raise _located(ShiftError("expected a query, found %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS),
                       self.text, node)

    def _read_named(self, named):
        built = named.built
        select = exp.Select(expressions=[exp.Star()], from_=exp.From(this=named.table.copy()))
        return _Built(select, list(built.columns), dict(built.types), built.plan,
                      [o.copy() for o in built.order], key=built.key, first=built.first,
                      descending=built.descending, opaque=built.opaque)

    def _set_operation(self, node, label):
        """UNION, INTERSECT, EXCEPT of queries (seed 000 §3.1 hybrid example, §3.2 Q4).

        Rows are compared by id and the selected columns, not by score, since the
        blocks' scores are not comparable: `A INTERSECT B` keeps the models in both.
        Each row keeps the score it has in the first operand that returns it (its
        best there). UNION ALL keeps every row of both as it is.
        """
        left = self._query(node.this, label)
        right = self._query(node.expression, label)
        word = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}[type(node)]
        if len(left.columns) != len(right.columns) or left.opaque or right.opaque:
            raise _located(ShiftError(
                "each %s query must select the same number of columns" % word, SYNTAX_ERROR,
                detail="left: %s; right: %s" % (", ".join(map(str, left.columns)),
                                                 ", ".join(map(str, right.columns))),
                hint="select the same extra columns in every block"), self.text, node)
        if left.key != right.key:
            raise _located(ShiftError("%s of a query over %s and one over %s" % (
                word, _rows_of(left.key), _rows_of(right.key)), WRONG_OBJECT_TYPE,
                hint="combine queries that return the same kind of rows"), self.text, node)
        distinct = node.args.get("distinct") is not False
        kind = word.lower() + ("" if distinct else " all")
        plan = PlanNode(kind, children=[left.plan, right.plan])
        key = left.key or left.columns[0]
        order = [exp.Ordered(this=_col(key), nulls_first=False)]
        if "score" in left.columns:
            order.append(exp.Ordered(this=_col("score"), nulls_first=False))
        scored = left.columns[1:2] == ["score"] and right.columns[1:2] == ["score"]
        if (isinstance(node, exp.Union) and not distinct) or not scored:
            query = type(node)(this=_operand(left), expression=_operand(right), distinct=distinct)
            return _Built(query, left.columns, left.types, plan, order, key=left.key, first=left.first)

        operands = [(self._operand_table(left, label), left), (self._operand_table(right, label), right)]

        def without_score(table, built):
            return exp.Select(expressions=[_col(c) for i, c in enumerate(built.columns) if i != 1],
                              from_=exp.From(this=table.copy()))

        combined = type(node)(this=without_score(*operands[0]), expression=without_score(*operands[1]),
                              distinct=distinct)
        names = [c for i, c in enumerate(left.columns) if i != 1]
        lookups = []
        for table, built in (operands[:1] if isinstance(node, (exp.Except, exp.Intersect)) else operands):
            other = [c for i, c in enumerate(built.columns) if i != 1]
            same = [exp.EQ(this=_col(other[0], "x"), expression=_col(names[0], "c"))] + [
                exp.NullSafeEQ(this=_col(o, "x"), expression=_col(n, "c")) for o, n in zip(other[1:], names[1:])]
            aliased = table.copy()
            aliased.set("alias", exp.TableAlias(this=_ident("x")))
            lookups.append(exp.Subquery(this=exp.Select(
                expressions=[_col("score", "x")], from_=exp.From(this=aliased), where=exp.Where(this=exp.and_(*same)),
                order=exp.Order(expressions=[exp.Ordered(this=_col("score", "x"), desc=built.descending,
                                                         nulls_first=False)]),
                limit=exp.Limit(expression=exp.Literal.number(1)))))
        score = lookups[0] if len(lookups) == 1 else exp.Coalesce(this=lookups[0], expressions=lookups[1:])
        query = exp.Select(
            expressions=[_alias(_col(names[0], "c"), names[0]), _alias(score, "score"),
                         *[_col(n, "c") for n in names[1:]]],
            from_=exp.From(this=exp.Subquery(this=combined, alias=exp.TableAlias(this=_ident("c")))))
        return _Built(query, left.columns, left.types, plan, order, key=left.key, first=left.first)

    def _operand_table(self, built, label):
        """A name to read an operand of a set operation by: its named query or view, or a new CTE."""
        q = built.query
        if isinstance(q, exp.Select) and isinstance(q.args.get("from_").this if q.args.get("from_") else None,
                                                    exp.Table) \
                and len(q.expressions) == 1 and isinstance(q.expressions[0], exp.Star) and not any(
                    q.args.get(k) for k in ("where", "joins", "order", "limit", "offset", "with_")):
            return q.args["from_"].this.copy()
        cte = self._fresh("%s_part" % label if label else "part")
        self._add_cte(cte, built)
        return exp.Table(this=_ident(cte))

    # -- one SELECT block

    def _block(self, select, label):
        for key, words in (("windows", "WINDOW"), ("qualify", "QUALIFY"), ("into", "INTO"),
                           ("locks", "FOR UPDATE"), ("laterals", "LATERAL"), ("sample", "TABLESAMPLE")):
            if select.args.get(key):
                raise _located(ShiftError("%s is not supported in a SHiFT-QL query block" % words,
                                          FEATURE_NOT_SUPPORTED, hint="use %s in a sub-query" % words),
                               self.text, select.args[key])
        if select.args.get("with_"):
            self._define_with(select.args["with_"])
        if not select.args.get("from_"):
            raise _located(ShiftError("a SHiFT-QL query block must read FROM Models", SYNTAX_ERROR,
                                      hint=SYNOPSIS), self.text, select)
        sources, from_, joins = self._sources(select, None)
        subject = next((s for s in sources if s.key), None)
        if subject is None:
            raise _located(ShiftError(
                "a SHiFT-QL query block returns models or data readers: it must read Models, DataReaders, "
                "a named query or a view", FEATURE_NOT_SUPPORTED, hint=SYNOPSIS), self.text, select.args["from_"])
        scope = _Scope(sources)
        keys = list(select.args["order"].expressions) if select.args.get("order") else []
        clause = select.args.get("scoring")
        found = [(k, r) for k in keys for r in [self._ranking_of(k.this, scope, select, clause)] if r]
        if found:
            if len(keys) != 1:
                raise _located(ShiftError("a scoring view orders by its scorer alone", SYNTAX_ERROR,
                                          hint="write ORDER BY %s [ASC | DESC]" % found[0][1][0].name),
                               self.text, select.args["order"])
            key, (scorer, args) = found[0]
            return self._ranked_view(select, label, scope, subject, from_, joins, key, scorer, args)
        if clause is not None:
            if subject.key == "reader_id":
                hint = "e.g. ORDER BY Task2Vec LIMIT 3 TESTED AGAINST TargetReader; metrics: %s" % _names_of("readers")
            else:
                hint = ("e.g. ORDER BY CosineNN ASC LIMIT 1 TESTED ON TestReader TRAINED ON TrainReader; "
                        "scorers: %s" % _names_of("models"))
            raise _located(ShiftError("%s needs a scorer in ORDER BY" % " and ".join(
                _CLAUSE_WORDS[k] for k in _CLAUSE_WORDS if clause.args.get(k) is not None), SYNTAX_ERROR,
                hint=hint), self.text, clause)
        return self._metadata_view(select, label, scope, subject, from_, joins, keys)

    def _sources(self, select, parent):
        """The FROM and JOIN relations of a SELECT, and their generated forms."""
        sources = []
        from_ = select.args.get("from_")
        table, src = self._source(from_.this, parent, sources)
        sources.append(src)
        new_from = exp.From(this=table)
        joins = []
        for join in select.args.get("joins") or []:
            table, src = self._source(join.this, parent, sources)
            sources.append(src)
            new = join.copy()
            new.set("this", table)
            joins.append((new, join))
        scope = _Scope(sources, parent)
        out = []
        for new, join in joins:
            if join.args.get("on") is not None:
                new.set("on", self._expr(join.args["on"], scope))
            if join.args.get("using"):
                joined = sources[1 + len(out)]
                new.set("using", [_ident(joined.find(u.name) or u.name) if isinstance(u, exp.Identifier)
                                  else u.copy() for u in join.args["using"]])
            out.append(new)
        return sources, new_from, out

    def _source(self, node, parent, sources):
        if isinstance(node, exp.Subquery):
            return self._derived_source(node, parent)
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise _located(ShiftError("only relations and sub-queries may follow FROM or JOIN here",
                                      FEATURE_NOT_SUPPORTED,
                                      hint="write FROM Models, FROM DataReaders, FROM a named query, a view "
                                           "or a table of yours with its schema (public.licences)"),
                           self.text, node)
        if node.args.get("catalog"):
            raise _located(ShiftError("relation %s has too many qualifiers" % node.sql(), SYNTAX_ERROR),
                           self.text, node)
        alias_ident = node.args.get("alias").this if node.args.get("alias") else None
        if alias_ident is not None and node.args["alias"].columns:
            raise _located(ShiftError("column aliases after a relation are not supported", FEATURE_NOT_SUPPORTED),
                           self.text, node)
        alias = _folded(alias_ident)

        def aliased(table, default):
            if alias is not None:
                table.set("alias", exp.TableAlias(this=_ident(alias)))
            elif default is not None:
                table.set("alias", exp.TableAlias(this=_ident(default)))
            return table

        if node.args.get("db"):  # a persisted view, or the user's own table
            schema, name = _folded(node.args["db"]), _folded(node.this)
            info = self._view(schema, name)
            if info is not None:
                named = self._named_view(info)
                sql_alias = alias or name
                return (aliased(named.table.copy(), None),
                        _Source(sql_alias, {sql_alias.lower()}, tuple(named.built.columns), dict(named.built.types),
                                key_column=info.key, descending=info.descending))
            columns = self.catalog.table_columns(schema, name)
            if columns is not None and not columns:
                raise _located(unknown("table", "%s.%s" % (schema, name),
                                       ["%s.%s" % (schema, t) for t in self.catalog.table_names(schema)]),
                               self.text, node)
            table = aliased(exp.Table(this=node.this.copy(), db=node.args["db"].copy()), None)
            sql_alias = alias or name
            return table, _Source(sql_alias, {sql_alias.lower()}, tuple(c for c, _ in columns or ()),
                                  dict(columns or ()), external=columns is None)
        name = node.name
        relation = catalog.find_relation(name)
        if relation is not None:
            sql_alias = alias or relation.table
            written = {sql_alias.lower()} if alias else {relation.table, *catalog.spellings(relation)}
            table = exp.Table(this=_ident(relation.table), db=_ident(relation.schema),
                              alias=exp.TableAlias(this=_ident(sql_alias)))
            return table, _Source(sql_alias, written, tuple(relation.column_names()), dict(relation.columns),
                                  relation=relation)
        named = self.names.get(name.lower())
        if named is None:
            info = self._view(self.catalog.default_schema, _folded(node.this))
            named = self._named_view(info) if info is not None else None
        if named is not None:
            sql_alias = alias or named.table.name
            table = aliased(named.table.copy(), None)
            return table, _Source(sql_alias, {sql_alias.lower(), name.lower()}, tuple(named.built.columns),
                                  dict(named.built.types), key_column=named.built.key,
                                  external=named.built.opaque, descending=named.built.descending)
        known = [r.name for r in catalog.RELATIONS] + [n.display for n in self.names.values()] + [
            v.name for v in self._views() if v.schema == self.catalog.default_schema]
        error = unknown("table", name, known)
        error.hint += "; a table of yours is written with its schema, e.g. public.%s" % name.lower()
        raise _located(error, self.text, node)

    def _derived_source(self, node, parent):
        """`(SELECT ...) AS t` in FROM: an implicit view if it ranks by a scorer, plain SQL otherwise."""
        alias_node = node.args.get("alias")
        if alias_node is None or alias_node.this is None:
            raise _located(ShiftError("a sub-query in FROM needs a name", SYNTAX_ERROR,
                                      hint="write (SELECT ...) AS name"), self.text, node)
        if alias_node.columns:
            raise _located(ShiftError("column aliases after a sub-query are not supported",
                                      FEATURE_NOT_SUPPORTED, hint="alias the columns inside the sub-query"),
                           self.text, node)
        alias = _folded(alias_node.this)
        inner = node.this
        if self._is_view_query(inner) or not isinstance(inner, exp.Select):
            named = self._define_implicit(inner, alias.lower())
            table = exp.Table(this=_ident(named.cte), alias=exp.TableAlias(this=_ident(alias)))
            return table, _Source(alias, {alias.lower()}, tuple(named.built.columns), dict(named.built.types),
                                  key_column=named.built.key, external=named.built.opaque,
                                  descending=named.built.descending)
        built = self._plain(inner, parent or _Scope([]))
        table = exp.Subquery(this=built.query, alias=exp.TableAlias(this=_ident(alias)))
        return table, _Source(alias, {alias.lower()}, tuple(built.columns), dict(built.types),
                              external=built.opaque)

    def _reads_subject(self, select):
        """Whether a SELECT reads Models, DataReaders, a named query or a view (directly, in FROM or JOIN)."""
        tables = [select.args["from_"].this] if select.args.get("from_") else []
        tables += [j.this for j in select.args.get("joins") or []]
        for t in tables:
            if isinstance(t, exp.Table) and isinstance(t.this, exp.Identifier):
                if t.args.get("db"):
                    if self._view(_folded(t.args["db"]), _folded(t.this)) is not None:
                        return True
                elif catalog.find_relation(t.name) is not None or t.name.lower() in self.names or \
                        self._view(self.catalog.default_schema, _folded(t.this)) is not None:
                    return True
        return False

    def _is_view_query(self, query):
        """Whether a query ranks by a registered scorer or metric: a scoring or dataset similarity view."""
        if isinstance(query, exp.Subquery):
            return self._is_view_query(query.this)
        if isinstance(query, exp.SetOperation):
            return self._is_view_query(query.this) or self._is_view_query(query.expression)
        if not isinstance(query, exp.Select):
            return False
        if query.args.get("scoring") is not None:
            return True
        relations = [catalog.find_relation(t.name) for t in query.find_all(exp.Table) if not t.args.get("db")]
        for key in (query.args["order"].expressions if query.args.get("order") else []):
            node = key.this
            if isinstance(node, exp.Anonymous) and isinstance(node.this, str) \
                    and node.this.lower() in scorers.REGISTRY:
                return True
            if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier) \
                    and node.name.lower() in scorers.REGISTRY \
                    and not any(r.find_column(node.name) for r in relations if r is not None) \
                    and node.name.lower() not in _select_aliases(query):
                return True
        return False

    # -- expressions

    def _expr(self, node, scope):
        """A user's expression with every name resolved in scope (AST → AST)."""

        def rewrite(n):
            if isinstance(n, exp.Column):
                try:
                    return scope.resolve(n)
                except ShiftError as error:
                    raise _located(error, self.text, n) from None
            if isinstance(n, exp.In) and isinstance(n.args.get("field"), (QueryRef, NamedQuery)):
                field_ = n.args["field"]
                if isinstance(field_, QueryRef):
                    named = self._lookup(field_)
                    column = named.built.key or named.built.first
                else:
                    named = self._define(field_)
                    column = named.built.first
                if column is None:
                    raise _located(ShiftError("query %s has no column to compare with" % named.display,
                                              SYNTAX_ERROR), self.text, field_)
                ids = exp.Select(expressions=[_col(column)], from_=exp.From(this=named.table.copy()))
                return exp.In(this=self._expr(n.this, scope), query=exp.Subquery(this=ids))
            if isinstance(n, exp.Select):
                return self._subselect(n, scope)
            if isinstance(n, exp.SetOperation):
                if self._is_view_query(n):
                    named = self._define_implicit(n, "nested")
                    return exp.Select(expressions=[_col(named.built.first)], from_=exp.From(this=named.table.copy()))
                return type(n)(this=self._expr(n.this, scope), expression=self._expr(n.expression, scope),
                               distinct=n.args.get("distinct") is not False)
            if isinstance(n, (QueryRef, NamedQuery)):
                raise _located(ShiftError("a query name may only follow IN, NOT IN or UNION", SYNTAX_ERROR,
                                          hint="write ModelId NOT IN Q1, or Q1 UNION SELECT ..."),
                               self.text, n)
            if isinstance(n, (exp.Placeholder, exp.Parameter)):
                raise _located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                          hint="write the value itself"), self.text, n)
            if isinstance(n, exp.Dot):
                raise _located(ShiftError("unexpected . in %s" % n.sql(dialect="postgres")[:60], SYNTAX_ERROR,
                                          hint="a column is written column or relation.column"), self.text, n)
            return n

        return node.transform(rewrite, copy=True)

    def _subselect(self, select, scope):
        """A sub-query in a condition or in FROM: plain SQL over the same relations, or an implicit view."""
        if self._is_view_query(select):
            named = self._define_implicit(select, "nested")
            return exp.Select(expressions=[_col(named.built.first)], from_=exp.From(this=named.table.copy()))
        if select.args.get("with_"):
            self._define_with(select.args["with_"])
        if select.args.get("joins") and not select.args.get("from_"):
            raise _located(ShiftError("JOIN without FROM", SYNTAX_ERROR, hint="write FROM relation JOIN relation ON ..."),
                           self.text, select.args["joins"][0])
        out = select.copy()
        out.set("with_", None)
        inner = scope
        if select.args.get("from_"):
            sources, from_, joins = self._sources(select, scope)
            inner = _Scope(sources, scope)
            out.set("from_", from_)
            out.set("joins", joins or None)
        aliases = {_output_name(p) for p in select.expressions if isinstance(p, exp.Alias)}
        for key in ("expressions", "where", "group", "having", "qualify", "windows", "distinct", "limit", "offset"):
            value = select.args.get(key)
            if isinstance(value, list):
                out.set(key, [self._expr(v, inner) for v in value])
            elif value is not None:
                out.set(key, self._expr(value, inner))
        if select.args.get("order"):
            keys = []
            for key in select.args["order"].expressions:
                this = key.this
                if isinstance(this, exp.Column) and not this.table and this.name.lower() in aliases:
                    keys.append(key.copy())
                else:
                    new = key.copy()
                    new.set("this", self._expr(this, inner))
                    keys.append(new)
            out.set("order", exp.Order(expressions=keys))
        return out

    def _where(self, select, scope):
        where = select.args.get("where")
        if where is None:
            return None
        condition = self._expr(where.this, scope)
        self._check_ids(condition, scope)
        return exp.Where(this=condition)

    def _check_ids(self, condition, scope):
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
            known = self.catalog.reader_ids()
            if known is not None and value not in known:
                raise _located(unknown("reader", value, known), self.text, node)
        models = wanted.get("model_id", [])
        if models:
            missing = set(self.catalog.missing_model_ids(sorted({v for v, _ in models})))
            for value, node in models:
                if value in missing:
                    raise _located(unknown("model", value, self.catalog.model_ids()), self.text, node)

    def _grouping(self, select, scope):
        group = select.args.get("group")
        if group is not None:
            if any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets", "totals", "all")) or any(
                    isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions):
                raise _located(ShiftError("GROUP BY ROLLUP, CUBE and GROUPING SETS are not supported here",
                                          FEATURE_NOT_SUPPORTED, hint="use them in a sub-query"), self.text, group)
            group = exp.Group(expressions=[self._projection_ref(e, scope, select) for e in group.expressions])
        having = select.args.get("having")
        if having is not None:
            having = exp.Having(this=self._expr(having.this, scope))
        distinct = select.args.get("distinct")
        if distinct is not None:
            distinct = distinct.copy()
            if distinct.args.get("on") is not None:
                distinct.set("on", exp.Tuple(expressions=[
                    self._projection_ref(e, scope, select) for e in distinct.args["on"].expressions]))
        return group, having, distinct

    def _projection_ref(self, node, scope, select):
        """A GROUP BY or ORDER BY key: a select-list alias, a position, or an expression over the relations."""
        projections = select.expressions
        if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
            n = int(node.this)
            if not 1 <= n <= len(projections) or isinstance(projections[n - 1], exp.Star):
                raise _located(ShiftError("position %d is not in the select list" % n, SYNTAX_ERROR),
                               self.text, node)
            node = projections[n - 1]
        if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier) \
                and not any(s.find(node.name) for s in scope.sources):
            for p in projections:
                if isinstance(p, exp.Alias) and p.alias.lower() == node.name.lower():
                    node = p
                    break
        if isinstance(node, exp.Alias):
            node = node.this
        return self._expr(node, scope)

    def _constant_clause(self, select, key):
        """LIMIT / OFFSET of a block: constants only, checked like any expression."""
        node = select.args.get(key)
        return self._expr(node, _Scope([])) if node is not None else None

    @staticmethod
    def _top_k(select):
        """LIMIT + OFFSET when both are integer constants: how many best models the block keeps."""
        total = 0
        for key in ("limit", "offset"):
            node = select.args.get(key)
            value = node.args.get("expression") if node is not None else None
            if node is None:
                if key == "limit":
                    return None
                continue
            if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
                return None
            total += int(value.this)
        return total if 0 < total < 2 ** 31 else None

    # -- ORDER BY: a column expression, a scorer or a metric

    def _ranking_of(self, node, scope, select, scoring):
        """(Scorer, params node list) if this ORDER BY key names a registered scorer or metric (seed 000 §3.1)."""
        if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
            name = node.name
            # a registered name followed by TESTED ON / AGAINST is the scorer, even where a column has the
            # name (DataReaders has a column task2vec, the embedding that the metric Task2Vec compares)
            registered = name.lower() in scorers.REGISTRY and (scoring is not None or any(
                s.types.get(s.find(name)) == "vector" for s in scope.sources if s.find(name)))
            if not registered and (any(s.find(name) for s in scope.sources)
                                   or name.lower() in _select_aliases(select)):
                return None
            if any(s.external for s in scope.sources) and scoring is None \
                    and name.lower() not in scorers.REGISTRY:
                return None
            args = []
        elif isinstance(node, exp.Anonymous) and isinstance(node.this, str):
            name = node.this
            args = list(node.expressions)
        else:
            return None
        if name.lower() in scorers.REGISTRY:
            return scorers.get(name), args
        # an unknown word: a misspelt scorer if TESTED ON follows or a scorer is its closest name
        nearest_scorer = _likeness(name, [s.name for s in scorers.REGISTRY.values()])
        if scoring is not None or (nearest_scorer >= 0.6 and (
                isinstance(node, exp.Anonymous) or nearest_scorer > _likeness(name, scope.known_columns()))):
            raise _located(_unknown_scorer(name), self.text, node)
        return None

    def _params(self, scorer, args):
        given = {}
        for arg in args:
            if isinstance(arg, (exp.EQ, exp.PropertyEQ, exp.Kwarg)) and isinstance(
                    arg.this, (exp.Column, exp.Identifier, exp.Var)):
                key = arg.this.name
                value = _constant(arg.expression)
                if value is _NOT_CONSTANT:
                    raise _located(ShiftError("parameter %s of %s must be a constant" % (key, scorer.name),
                                              "22023", hint="e.g. %s" % _example_call(scorer)),
                                   self.text, arg.expression)
                if key.lower() in {k.lower() for k in given}:
                    raise _located(ShiftError("parameter %s of %s is given twice" % (key, scorer.name), "22023"),
                                   self.text, arg)
                given[key] = value
            else:
                raise _located(ShiftError("scorer parameters are written name=value", SYNTAX_ERROR,
                                          hint="e.g. %s" % _example_call(scorer)), self.text, arg)
        try:
            return scorer.resolve(given)
        except ShiftError as error:
            raise _located(error, self.text, args[0] if args else None) from None

    def _order_expr(self, node, scope, select):
        return self._projection_ref(node, scope, select)

    def _check_reader(self, node):
        """A reader named in TESTED ON / TRAINED ON / TESTED AGAINST must be registered (case aside)."""
        known = self.catalog.reader_ids()
        name = _reader_name(node)
        if known is None or name in known or sum(k.lower() == name.lower() for k in known) == 1:
            return name
        raise _located(unknown("reader", name, known), self.text, node)

    # -- the kinds of view

    def _metadata_view(self, select, label, scope, subject, from_, joins, keys):
        """Q1 of seed 000 §3.2: plain SQL; score is the first ORDER BY expression."""
        where = self._where(select, scope)
        group, having, distinct = self._grouping(select, scope)
        key_col = _col(subject.key, subject.sql_alias)
        if not keys and "score" in subject.columns and subject.relation is None:
            # a block over a named query or a view keeps its scores and their order
            keys = [exp.Ordered(this=_col("score", subject.sql_alias), desc=subject.descending)]
        ordered = []
        for key in keys:
            expression = self._order_expr(key.this, scope, select)
            desc = bool(key.args.get("desc"))
            nulls_first = bool(key.args.get("nulls_first")) if key.meta.get("explicit_nulls") else False
            ordered.append(exp.Ordered(this=expression, desc=desc, nulls_first=nulls_first))
        if ordered:
            first = ordered[0].this
            kind = _type_of(first, scope)
            if kind == "double precision":
                score = first.copy()
            elif kind is not None and kind not in catalog.NUMERIC_TYPES:
                score = exp.Cast(this=exp.Null(), to=exp.DataType.build("double precision"))
            else:
                score = exp.Cast(this=first.copy(), to=exp.DataType.build("double precision"))
            if distinct is not None and isinstance(score, exp.Cast) and score.this == first:
                ordered[0].set("this", score.copy())  # SELECT DISTINCT orders by what it selects
        else:
            score = exp.Cast(this=exp.Null(), to=exp.DataType.build("double precision"))
        if not any(o.this == key_col for o in ordered):
            ordered.append(exp.Ordered(this=key_col.copy(), nulls_first=False))
        extras, columns, types, first_name = self._extras(select, scope, subject, score)
        query = exp.Select(
            expressions=[_alias(key_col.copy(), subject.key), _alias(score, "score"), *extras],
            from_=from_, joins=joins or None, where=where, group=group, having=having, distinct=distinct,
            order=exp.Order(expressions=ordered),
            limit=self._constant_clause(select, "limit"), offset=self._constant_clause(select, "offset"))
        lines = ["order by: %s" % ", ".join(o.sql(dialect="postgres") for o in ordered)]
        lines += _limit_lines(select)
        lines.append("rows: %s" % exp.Select(expressions=[exp.Star()], from_=from_.copy(),
                                             joins=[j.copy() for j in joins] or None,
                                             where=_copy(where), group=_copy(group),
                                             having=_copy(having)).sql(dialect="postgres"))
        desc = bool(keys and keys[0].args.get("desc"))
        order = [exp.Ordered(this=_col("score"), desc=desc, nulls_first=False),
                 exp.Ordered(this=_col(subject.key), nulls_first=False)] if keys else \
            [exp.Ordered(this=_col(subject.key), nulls_first=False)]
        kind = "metadata view" if subject.key == "model_id" else "reader metadata view"
        return _Built(query, [subject.key, "score", *columns],
                      {subject.key: "text", "score": "double precision", **types},
                      PlanNode(kind, None, lines, self._uses_named(from_, joins, where)), order,
                      block=True, key=subject.key, first=first_name, descending=desc)

    def _ranked_view(self, select, label, scope, subject, from_, joins, key, scorer, args):
        """A proxy scoring view (Q2/Q3), a FineTune view (Q5) or a dataset similarity view (§3.1).

        The block's rows become a pool CTE; one call of a set-returning function
        ranks the pool's ids, and the outer SELECT joins the two and keeps the top K.
        """
        ranks = "readers" if subject.key == "reader_id" else "models"
        if scorer.ranks != ranks:
            if scorer.ranks == "readers":
                error = ShiftError("%s ranks data readers, not models" % scorer.name, WRONG_OBJECT_TYPE,
                                   hint="use it in a query over DataReaders: SELECT DataReaderId FROM DataReaders "
                                        "ORDER BY %s LIMIT k TESTED AGAINST reader" % scorer.name)
            else:
                error = ShiftError("%s ranks models, not data readers" % scorer.name, WRONG_OBJECT_TYPE,
                                   hint="dataset similarity metrics: %s" % _names_of("readers"))
            raise _located(error, self.text, key.this)
        params = self._params(scorer, args)
        clause = select.args.get("scoring")
        given = {k for k in _CLAUSE_WORDS if clause is not None and clause.args.get(k) is not None}
        form, readers = self._reader_form(scorer, clause, given, key)
        sources = scope.sources
        if form == "benchmark" and not any(s.relation is catalog.READERS for s in sources):
            # Q5 of §3.2 names Readers.ReaderId over FROM Models: the readers with benchmark results
            sources.append(_Source("readers", {"readers", *catalog.spellings(catalog.READERS)},
                                   tuple(catalog.READERS.column_names()), dict(catalog.READERS.columns),
                                   relation=catalog.READERS, implicit=True))
            joins = [*joins, exp.Join(this=exp.Table(this=_ident("readers"), db=_ident("shift"),
                                                     alias=exp.TableAlias(this=_ident("readers"))), kind="CROSS")]
        where = self._where(select, scope)
        group, having, distinct = self._grouping(select, scope)
        extras, names, types, first_name = self._extras(select, scope, subject)

        # the pool: the block's rows, with the id and everything selected besides
        hidden = {subject.key: _col(subject.key, subject.sql_alias)}
        if form == "benchmark":
            readers_src = next(s for s in sources if s.relation is catalog.READERS)
            hidden["reader_id"] = _col("reader_id", readers_src.sql_alias)
        pool_columns = [_alias(c.copy(), name) for name, c in hidden.items()]
        pool_names = set(hidden)
        for expression, name in zip(extras, names):
            if name == "*":
                raise _located(ShiftError("the columns of %s are unknown here" % expression.table,
                                          FEATURE_NOT_SUPPORTED, hint="select its columns by name"),
                               self.text, select)
            inner = expression.this if isinstance(expression, exp.Alias) else expression
            if name in hidden and inner == hidden[name]:
                continue
            if name in pool_names:
                raise _located(ShiftError("column %s is selected twice" % name, DUPLICATE_COLUMN,
                                          hint="give the selected expressions distinct aliases"),
                               self.text, select)
            pool_names.add(name)
            pool_columns.append(inner if _output_name(inner) == name else _alias(inner, name))
        pool = self._fresh("%s_pool" % label if label else "pool")
        self.ctes.append((pool, exp.Select(expressions=pool_columns, from_=from_, joins=joins or None, where=where,
                                           group=group, having=having, distinct=distinct)))

        desc = bool(key.args.get("desc"))
        params_json = scorers.canonical_json(params)
        params_node = exp.Cast(this=exp.Literal.string(params_json), to=exp.DataType.build("jsonb"))

        def ids(column, distinct_=False):
            return exp.Array(expressions=[exp.Select(
                expressions=[_col(column)], from_=exp.From(this=exp.Table(this=_ident(pool))),
                distinct=exp.Distinct() if distinct_ else None)])

        on = exp.EQ(this=_col(subject.key, "s"), expression=_col(subject.key, "p"))
        if form == "task":
            call_args = [exp.Literal.string(scorer.name), params_node, ids("model_id"),
                         exp.Literal.string(readers["tested_on"]), exp.Literal.string(readers["trained_on"])]
            top_k = self._top_k(select)
            if top_k is not None:
                call_args += [exp.Literal.number(top_k), exp.Boolean(this=desc)]
            call = exp.Anonymous(this="score", expressions=call_args)
            self.uses.append((pool, ScoringUse(scorer.name, params, readers["tested_on"], readers["trained_on"])))
            self.requests.append((pool, self.uses[-1][1], top_k, desc))
            what = "tested on: %s, trained on: %s" % (readers["tested_on"], readers["trained_on"])
            kind = "scoring view"
        elif form == "benchmark":
            call = exp.Anonymous(this="benchmark_scores", expressions=[
                exp.Literal.string(scorer.name), params_node, ids("model_id", True), ids("reader_id", True)])
            on = exp.and_(on, exp.EQ(this=_col("reader_id", "s"), expression=_col("reader_id", "p")))
            self.uses.append((pool, ScoringUse(scorer.name, params, None, None)))
            what = "benchmark results on the readers of the pool"
            kind = "benchmark view"
        else:
            call = exp.Anonymous(this="dataset_similarity", expressions=[
                exp.Literal.string(scorer.name), params_node, ids("reader_id"),
                exp.Literal.string(readers["tested_against"])])
            self.similar.append((pool, SimilarityUse(scorer.name, params, readers["tested_against"])))
            what = "tested against: %s" % readers["tested_against"]
            kind = "dataset similarity view"
        scored = exp.Table(this=call, db=_ident("shift"), alias=exp.TableAlias(this=_ident("s")))
        order = [exp.Ordered(this=_col("score", "s"), desc=desc, nulls_first=False),
                 exp.Ordered(this=_col(subject.key, "p"), nulls_first=False)]
        if form == "benchmark":
            order.append(exp.Ordered(this=_col("reader_id", "p"), nulls_first=False))
        query = exp.Select(
            expressions=[_alias(_col(subject.key, "p"), subject.key), _alias(_col("score", "s"), "score"),
                         *[_col(n, "p") for n in names]],
            from_=exp.From(this=exp.Table(this=_ident(pool), alias=exp.TableAlias(this=_ident("p")))),
            joins=[exp.Join(this=scored, on=on)],
            order=exp.Order(expressions=order),
            limit=self._constant_clause(select, "limit"), offset=self._constant_clause(select, "offset"))
        lines = ["%s: %s %s %s" % ("metric" if scorer.kind == "datasim" else "scorer", scorer.name, params_json,
                                   "DESC" if desc else "ASC")]
        lines += _limit_lines(select)
        lines.append(what)
        lines.append("pool (%s): %s" % (pool, self.ctes[-1][1].sql(dialect="postgres")))
        return _Built(query, [subject.key, "score", *names],
                      {subject.key: "text", "score": "double precision", **types},
                      PlanNode(kind, None, lines, self._uses_named(from_, joins, where)),
                      [exp.Ordered(this=_col("score"), desc=desc, nulls_first=False),
                       exp.Ordered(this=_col(subject.key), nulls_first=False)],
                      block=True, key=subject.key, first=first_name, descending=desc)

    def _reader_form(self, scorer, clause, given, key):
        """('task', readers), ('benchmark', {}) or ('similarity', readers): how a scorer reads readers."""
        name = scorer.name
        if scorer.kind == "datasim":
            if "trained_on" in given:
                raise _located(ShiftError("TRAINED ON does not apply to dataset similarity metric %s" % name,
                                          SYNTAX_ERROR, hint="write TESTED AGAINST target_reader"),
                               self.text, clause.args["trained_on"])
            if given == {"tested_on", "tested_against"}:
                raise _located(ShiftError("write TESTED AGAINST or TESTED ON, not both", SYNTAX_ERROR,
                                          hint="TESTED AGAINST target_reader"), self.text, clause)
            if not given:
                raise _located(ShiftError("dataset similarity metric %s needs TESTED AGAINST <target reader>" % name,
                                          SYNTAX_ERROR,
                                          hint="%s ranks readers by their similarity to a target reader: ORDER BY "
                                               "%s LIMIT k TESTED AGAINST TargetReader" % (name, name)),
                               self.text, key)
            node = clause.args.get("tested_against") or clause.args.get("tested_on")
            return "similarity", {"tested_against": self._check_reader(node)}
        if "tested_against" in given:
            raise _located(ShiftError("TESTED AGAINST names the target of a dataset similarity metric", SYNTAX_ERROR,
                                      hint="scorer %s is written ... TESTED ON test_reader TRAINED ON train_reader"
                                           % name), self.text, clause.args["tested_against"])
        if given == {"tested_on", "trained_on"}:
            return "task", {k: self._check_reader(clause.args[k]) for k in ("tested_on", "trained_on")}
        if not given and scorer.kind == "finetune":
            return "benchmark", {}
        missing = [k for k in ("tested_on", "trained_on") if k not in given]
        words = " and ".join({"tested_on": "TESTED ON <test reader>",
                              "trained_on": "TRAINED ON <train reader>"}[k] for k in missing)
        raise _located(ShiftError("scorer %s needs %s" % (name, words), SYNTAX_ERROR,
                                  hint="%s scores a model on a test reader after training on a train reader: "
                                       "ORDER BY %s ... TESTED ON TestReader TRAINED ON TrainReader"
                                       % (name, name)), self.text, key)

    def _extras(self, select, scope, subject, score=None):
        """The selected columns after the id and score (a plain repeat of either is left out).

        Returns (expressions, names, types, the output name of the first selected item).
        """
        out, names, types = [], [], {}
        taken = (subject.key, "score")
        first = None

        def add(expression, name, kind):
            if name in taken:
                raise _located(ShiftError("column name %s is taken by the result's %s column" % (name, name),
                                          DUPLICATE_COLUMN, hint="give the selected expression another alias"),
                               self.text, expression)
            out.append(expression)
            names.append(name)
            types[name] = kind

        for position, projection in enumerate(select.expressions):
            star = projection if isinstance(projection, exp.Star) else (
                projection if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
                else None)
            if star is not None:
                if position == 0:
                    first = subject.key
                if isinstance(star, exp.Column):
                    target = scope.source(star.table)
                    if target is None:
                        raise _located(unknown("table", star.table, scope._aliases()), self.text, star)
                    targets = [target]
                else:
                    targets = [s for s in scope.sources if not s.implicit]
                for src in targets:
                    if src.external:
                        out.append(exp.Column(this=exp.Star(), table=_ident(src.sql_alias)))
                        names.append("*")
                        continue
                    for column in src.columns:
                        if column in taken or column in names:
                            continue
                        add(_col(column, src.sql_alias), column, src.types.get(column))
                continue
            alias = projection.args["alias"] if isinstance(projection, exp.Alias) else None
            if alias is not None and not isinstance(alias, exp.Identifier):
                raise _located(ShiftError("expected a column name after AS", SYNTAX_ERROR, hint=SYNOPSIS),
                               self.text, projection)
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            resolved = self._expr(inner, scope)
            if alias is None and isinstance(resolved, exp.Column) and resolved.name == subject.key \
                    and resolved.table == subject.sql_alias:
                first = first or (subject.key if position == 0 else None)
                continue  # already the first column
            if alias is None and score is not None and resolved == score:
                first = first or ("score" if position == 0 else None)
                continue  # already the second column
            if alias is not None:
                name = _folded(alias)
                add(exp.Alias(this=resolved, alias=_ident(name)), name, _type_of(resolved, scope))
            else:
                name = _output_name(resolved) or "?column?"
                add(resolved, name, _type_of(resolved, scope))
            if position == 0:
                first = name
        return out, names, types, first or subject.key


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

_NOT_CONSTANT = object()


def _constant(node):
    """The Python value of a scorer parameter (a literal, possibly negated), or _NOT_CONSTANT."""
    if isinstance(node, exp.Paren):
        return _constant(node.this)
    if isinstance(node, exp.Neg):
        value = _constant(node.this)
        return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else _NOT_CONSTANT
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text) if re.fullmatch(r"[0-9]+", text) else float(text)
        except ValueError:
            return _NOT_CONSTANT
    if isinstance(node, (exp.Column, exp.Var)) and isinstance(node.this, (exp.Identifier, str)):
        return node.name  # a bare word, e.g. metric=cosine
    return _NOT_CONSTANT


def _likeness(name, candidates):
    """How close name is to the closest candidate, 0 to 1 (case and underscores ignored)."""
    want = catalog.normalise(name)
    return max((difflib.SequenceMatcher(None, want, catalog.normalise(c)).ratio() for c in candidates), default=0.0)


def _unknown_scorer(name):
    try:
        scorers.get(name)
    except ShiftError as error:
        return error
    return ShiftError("unknown scorer %r" % name, "42704")


def _reader_name(node):
    return node.this if isinstance(node, exp.Literal) else node.name


def _select_aliases(select):
    return {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}


def _type_of(node, scope):
    """The PostgreSQL type of a resolved plain column; None for anything else."""
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier) and node.table:
        while scope is not None:
            for src in scope.sources:
                if src.sql_alias == node.table:
                    return src.types.get(node.name)
            scope = scope.parent
    return None


def _copy(node):
    return node.copy() if node is not None else None


def _limit_lines(select):
    lines = []
    for key in ("limit", "offset"):
        node = select.args.get(key)
        if node is not None:
            lines.append(node.sql(dialect="postgres").strip().lower())
    return lines


def _operand(built):
    """A set operation's operand: a sub-query where it has its own ORDER BY, LIMIT or set operation."""
    q = built.query
    if isinstance(q, exp.SetOperation) or (isinstance(q, exp.Select) and any(
            q.args.get(k) for k in ("order", "limit", "offset", "with_"))):
        return exp.Subquery(this=q)
    return q


def _names_of(ranks):
    """The registered names that rank models or readers, for hints."""
    return ", ".join(s.name for s in scorers.REGISTRY.values() if s.ranks == ranks)


def _rows_of(key):
    return {"model_id": "models", "reader_id": "data readers"}.get(key, "other rows")


def _example_call(scorer):
    shown = ", ".join("%s=%r" % (p.name, p.default) for p in scorer.params[:2])
    return "%s(%s)" % (scorer.name, shown) if shown else scorer.name
