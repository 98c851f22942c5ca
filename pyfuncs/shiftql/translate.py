"""SHiFT-QL → plain PostgreSQL (seed 000 §3.3 "Query Parser and Translator").

`translate(text)` parses a SHiFT-QL text (dialect.py) and rewrites its tree,
AST to AST, into one PostgreSQL statement; sqlglot's PostgreSQL generator
prints it once. User input reaches the SQL only as sqlglot nodes (string
literals, identifiers), never as pasted text.

What the statement returns: one row per model, first `model_id` (text) and
`score` (double precision), then whatever else the query selected.

- A block ordered by metadata (Q1 of §3.2) is the SELECT itself over
  shift.models; `score` is its first ORDER BY expression.
- A proxy scoring view (Q2, Q3 of §3.2; §3.1 "Lazily Materialized top-K Scoring
  Views") becomes a pool (its FROM/WHERE, as a CTE) and one call of the
  set-returning function `shift.score(scorer, params, model_ids, test_reader,
  train_reader)` over the pool's model ids; `score` is that function's value.
  The scorer's name is the registry's, its parameters are checked and
  completed by `Scorer.resolve` and passed as one JSON literal; the readers
  are string literals exactly as written (identifier or 'string'), the
  function resolves them. Ties are broken by model_id, NULL scores come last,
  in a metadata ORDER BY too unless NULLS FIRST is written.
- Named queries (`Q1 := ...`, `(...) Q1`) become CTEs; `NOT IN Q1` becomes
  `NOT model_id IN (SELECT model_id FROM q1)`; UNION, INTERSECT and EXCEPT keep
  their SQL meaning (UNION removes duplicate rows, UNION ALL keeps them). Each
  block keeps its own ORDER BY and LIMIT; a result that combines blocks is
  ordered by model_id, then score, since the blocks' scores are not comparable.
- In a script, only the named queries the last statement uses are kept.

§3.3 evaluates the query tree bottom-up; here PostgreSQL does, since each
scoring view is a CTE it reads before the views that use it. `explain_tree`
shows that tree.
"""

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from .. import scorers
from ..errors import DUPLICATE_OBJECT, SYNTAX_ERROR, ShiftError, unknown
from . import catalog
from .dialect import NamedQuery, QueryRef, ScoringClause, Script, SyntaxProblem, parse_script

FEATURE_NOT_SUPPORTED = "0A000"
AMBIGUOUS_COLUMN = "42702"
DUPLICATE_COLUMN = "42701"

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

# readers each proxy reads (seed 000 Fig. 6: a proxy task depends on two readers)
_PROXY_READERS = {"nn": ("tested_on", "trained_on"), "linear": ("tested_on", "trained_on")}


class ScoringUse(NamedTuple):
    """One proxy scoring view of the query, for the planner."""

    scorer: str        # canonical registry name
    params: dict       # complete, checked parameters (Scorer.resolve)
    test_reader: str   # as the user wrote it
    train_reader: str


@dataclass
class PlanNode:
    """A node of the query tree of seed 000 §3.3: a view, a named query or a set operation."""

    kind: str
    name: str | None = None
    lines: list = field(default_factory=list)
    children: list = field(default_factory=list)


@dataclass
class Translation:
    sql: str                # one plain PostgreSQL statement
    tree: Script            # the parsed SHiFT-QL
    scoring: list           # ScoringUse of every scoring view the statement runs
    plan: PlanNode          # the query tree, for explain_tree


def translate(text, pretty=False):
    """The PostgreSQL statement of a SHiFT-QL text; every failure is a ShiftError."""
    if not isinstance(text, str):
        raise ShiftError("a SHiFT-QL query must be text, not %s" % type(text).__name__, SYNTAX_ERROR)
    try:
        script = parse_script(text)
        return _Translator(text).run(script, pretty)
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
    """An identifier for a name from the query; quoted where PostgreSQL would misread it."""
    ident = exp.to_identifier(name, quoted=quoted or None)
    if name.lower() in _PG_RESERVED:
        ident.set("quoted", True)
    return ident


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
    """A relation in a FROM clause: a view of seed 000 §3.1, a named query, or a user's table."""

    sql_alias: str              # the name the generated SQL uses for it
    written: set                # lower-case names the query may qualify columns with
    columns: tuple = ()         # output columns
    types: dict = field(default_factory=dict)
    relation: catalog.Relation | None = None
    external: bool = False      # schema-qualified table of the user's: columns unknown here

    @property
    def key(self):
        if self.relation is not None:
            return self.relation.key
        return "model_id" if "model_id" in self.columns else None

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
            hits = [(s, c) for s in scope.sources for c in [s.find(name)] if c is not None]
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


@dataclass
class _Named:
    display: str
    cte: str
    built: _Built


# --------------------------------------------------------------------------
# The translator
# --------------------------------------------------------------------------


class _Translator:
    def __init__(self, text):
        self.text = text
        self.names = {}         # lower-case query name -> _Named
        self.ctes = []          # (name, body) in definition order
        self.used = set()       # every CTE name taken
        self.uses = []          # (pool cte, ScoringUse)

    # -- the script

    def run(self, script, pretty):
        statements = script.expressions
        if not statements:
            raise ShiftError("empty query", SYNTAX_ERROR, hint=SYNOPSIS)
        for statement in statements[:-1]:
            if not isinstance(statement, NamedQuery):
                raise _located(ShiftError(
                    "only the last statement of a SHiFT-QL script may be an unnamed query", SYNTAX_ERROR,
                    hint="name the earlier ones: Q1 := SELECT ...;"), self.text, statement)
            self._define(statement)

        last = statements[-1]
        if isinstance(last, NamedQuery) and not last.args.get("inline"):
            self._check_new_name(last.this)
            built = self._query(last.expression, self._fresh(last.this.name.lower()))
        elif isinstance(last, exp.Query) or isinstance(last, (QueryRef, NamedQuery, exp.Subquery)):
            built = self._query(last, None)
        else:
            raise _located(ShiftError("a SHiFT-QL text must end with a query", FEATURE_NOT_SUPPORTED,
                                      hint=SYNOPSIS), self.text, last)

        final = built.query
        if isinstance(final, exp.Subquery):
            final = final.this
        if not built.block:
            final.set("order", exp.Order(expressions=[o.copy() for o in built.order]))

        reachable = self._reachable(final)
        ctes = [exp.CTE(this=body, alias=exp.TableAlias(this=_ident(name)))
                for name, body in self.ctes if name in reachable]
        if ctes:
            final.set("with_", exp.With(expressions=ctes))
        for node in final.walk():
            if isinstance(node, (exp.Placeholder, exp.Parameter)):
                raise _located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                          hint="write the value itself"), self.text, node)
            if isinstance(node, (ScoringClause, NamedQuery, QueryRef, Script)):
                raise ShiftError("could not translate %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS)
        sql = final.sql(dialect="postgres", pretty=pretty, normalize_functions=False)
        scoring = [use for pool, use in self.uses if pool in reachable]
        return Translation(sql=sql, tree=script, scoring=scoring, plan=built.plan)

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

    def _check_new_name(self, ident):
        name = ident.name
        if name.lower() in self.names:
            raise _located(ShiftError("query %s is defined twice" % name, DUPLICATE_OBJECT,
                                      hint="give the second one another name"), self.text, ident)
        if catalog.find_relation(name) is not None:
            raise _located(ShiftError("query name %s is the name of a relation" % name, DUPLICATE_OBJECT,
                                      hint="name the query otherwise, e.g. Q1"), self.text, ident)

    def _define(self, named):
        """Q1 := query, or (query) Q1: the query becomes a CTE (seed 000 §3.2)."""
        self._check_new_name(named.this)
        display = named.this.name
        cte = self._fresh(display.lower())
        built = self._query(named.expression, cte)
        body = built.query.this if isinstance(built.query, exp.Subquery) else built.query
        self.ctes.append((cte, body))
        plan = PlanNode("named query", display, children=[built.plan])
        self.names[display.lower()] = _Named(display, cte, replace(built, plan=plan))
        return self.names[display.lower()]

    def _uses_named(self, *nodes):
        """Plans of the named queries a block reads (its children in the query tree of §3.3)."""
        by_cte = {n.cte: n for n in self.names.values()}
        out = []
        for node in nodes:
            for table in ([] if node is None else node if isinstance(node, list) else [node]):
                for t in table.find_all(exp.Table):
                    named = by_cte.get(t.name) if not t.args.get("db") else None
                    if named is not None and named.built.plan not in out:
                        out.append(named.built.plan)
        return out

    def _named(self, ident):
        named = self.names.get(ident.name.lower())
        if named is None:
            raise _located(unknown("query", ident.name, [n.display for n in self.names.values()]),
                           self.text, ident)
        return named

    # -- queries

    def _query(self, node, label):
        if isinstance(node, exp.Subquery) and not node.alias:
            return self._query(node.this, label)
        if isinstance(node, exp.Select):
            return self._block(node, label)
        if isinstance(node, QueryRef):
            return self._read_named(self._named(node.this))
        if isinstance(node, NamedQuery):
            return self._read_named(self._define(node))
        if isinstance(node, exp.SetOperation):
            return self._set_operation(node, label)
        raise _located(ShiftError("expected a query, found %s" % node.key, SYNTAX_ERROR, hint=SYNOPSIS),
                       self.text, node)

    def _read_named(self, named):
        built = named.built
        select = exp.Select(expressions=[exp.Star()], from_=exp.From(this=exp.Table(this=_ident(named.cte))))
        return _Built(select, list(built.columns), dict(built.types), built.plan,
                      [o.copy() for o in built.order])

    def _set_operation(self, node, label):
        left = self._query(node.this, label)
        right = self._query(node.expression, label)
        word = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}[type(node)]
        if len(left.columns) != len(right.columns):
            raise _located(ShiftError(
                "each %s query must select the same number of columns" % word, SYNTAX_ERROR,
                detail="left: %s; right: %s" % (", ".join(map(str, left.columns)),
                                                 ", ".join(map(str, right.columns))),
                hint="select the same extra columns in every block"), self.text, node)

        def operand(built):
            q = built.query
            if isinstance(q, exp.SetOperation) or (isinstance(q, exp.Select) and any(
                    q.args.get(k) for k in ("order", "limit", "offset", "with_"))):
                return exp.Subquery(this=q)
            return q

        distinct = node.args.get("distinct") is not False
        query = type(node)(this=operand(left), expression=operand(right), distinct=distinct)
        kind = word.lower() + ("" if distinct else " all")
        order = [exp.Ordered(this=_col("model_id"), nulls_first=False),
                 exp.Ordered(this=_col("score"), nulls_first=False)]
        return _Built(query, left.columns, left.types, PlanNode(kind, children=[left.plan, right.plan]), order)

    # -- one SELECT block

    def _block(self, select, label):
        for key, words in (("with_", "WITH"), ("group", "GROUP BY"), ("having", "HAVING"),
                           ("distinct", "DISTINCT"), ("windows", "WINDOW"), ("qualify", "QUALIFY"),
                           ("into", "INTO"), ("locks", "FOR UPDATE"), ("laterals", "LATERAL"),
                           ("sample", "TABLESAMPLE")):
            if select.args.get(key):
                hint = ("name queries with Q1 := SELECT ...;" if key == "with_"
                        else "a query block returns one row per model; use %s in a sub-query" % words)
                raise _located(ShiftError("%s is not supported in a SHiFT-QL query block" % words,
                                          FEATURE_NOT_SUPPORTED, hint=hint), self.text, select.args[key])
        if not select.args.get("from_"):
            raise _located(ShiftError("a SHiFT-QL query block must read FROM Models", SYNTAX_ERROR,
                                      hint=SYNOPSIS), self.text, select)
        sources, from_, joins = self._sources(select, None)
        scope = _Scope(sources)
        models = next((s for s in sources if s.key == "model_id"), None)
        if models is None:
            raise _located(ShiftError("a SHiFT-QL query block returns models: it must read Models or a named query",
                                      FEATURE_NOT_SUPPORTED, hint=SYNOPSIS), self.text, select.args["from_"])
        where = select.args.get("where")
        where = exp.Where(this=self._expr(where.this, scope)) if where is not None else None

        keys = list(select.args["order"].expressions) if select.args.get("order") else []
        scoring = select.args.get("scoring")
        found = [(k, s) for k in keys for s in [self._scorer_of(k.this, scope, select, scoring)] if s]
        if found:
            if len(keys) != 1:
                raise _located(ShiftError("a scoring view orders by its scorer alone", SYNTAX_ERROR,
                                          hint="write ORDER BY %s [ASC | DESC]" % found[0][1][0].name),
                               self.text, select.args["order"])
            return self._scoring_view(select, label, scope, models, from_, joins, where, keys[0], found[0][1])
        if scoring is not None:
            raise _located(ShiftError("TESTED ON and TRAINED ON need a scorer in ORDER BY", SYNTAX_ERROR,
                                      hint="e.g. ORDER BY CosineNN ASC LIMIT 1 TESTED ON TestReader "
                                           "TRAINED ON TrainReader; scorers: %s" % _scorer_names()),
                           self.text, scoring)
        return self._metadata_view(select, label, scope, models, from_, joins, where, keys)

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
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise _located(ShiftError("only named relations may follow FROM or JOIN here", FEATURE_NOT_SUPPORTED,
                                      hint="write FROM Models, FROM DataReaders or FROM a named query"),
                           self.text, node)
        if node.args.get("catalog"):
            raise _located(ShiftError("relation %s has too many qualifiers" % node.sql(), SYNTAX_ERROR),
                           self.text, node)
        alias_ident = node.args.get("alias").this if node.args.get("alias") else None
        if alias_ident is not None and node.args["alias"].columns:
            raise _located(ShiftError("column aliases after a relation are not supported", FEATURE_NOT_SUPPORTED),
                           self.text, node)
        alias = alias_ident.name if alias_ident is not None else None
        if node.args.get("db"):  # the user's own table, passed through
            table = exp.Table(this=node.this.copy(), db=node.args["db"].copy(),
                              alias=exp.TableAlias(this=alias_ident.copy()) if alias_ident else None)
            sql_alias = alias or node.name
            return table, _Source(sql_alias, {sql_alias.lower()}, external=True)
        name = node.name
        relation = catalog.find_relation(name)
        named = self.names.get(name.lower())
        if relation is not None:
            sql_alias = alias or relation.table
            written = {sql_alias.lower()} if alias else {relation.table, *catalog.spellings(relation)}
            table = exp.Table(this=_ident(relation.table), db=_ident(relation.schema),
                              alias=exp.TableAlias(this=_ident(sql_alias)))
            return table, _Source(sql_alias, written, tuple(relation.column_names()), dict(relation.columns),
                                  relation=relation)
        if named is not None:
            sql_alias = alias or named.cte
            table = exp.Table(this=_ident(named.cte),
                              alias=exp.TableAlias(this=_ident(alias)) if alias else None)
            return table, _Source(sql_alias, {sql_alias.lower(), name.lower()}, tuple(named.built.columns),
                                  dict(named.built.types))
        known = [r.name for r in catalog.RELATIONS] + [n.display for n in self.names.values()]
        raise _located(unknown("table", name, known), self.text, node)

    # -- expressions

    def _expr(self, node, scope):
        """A user's expression with every name resolved in scope (AST → AST)."""

        def rewrite(n):
            if isinstance(n, exp.Column):
                try:
                    return scope.resolve(n)
                except ShiftError as error:
                    raise _located(error, self.text, n) from None
            if isinstance(n, exp.In) and isinstance(n.args.get("field"), QueryRef):
                named = self._named(n.args["field"].this)
                ids = exp.Select(expressions=[_col("model_id")],
                                 from_=exp.From(this=exp.Table(this=_ident(named.cte))))
                return exp.In(this=self._expr(n.this, scope), query=exp.Subquery(this=ids))
            if isinstance(n, exp.Select):
                return self._subselect(n, scope)
            if isinstance(n, exp.SetOperation):
                return type(n)(this=self._expr(n.this, scope), expression=self._expr(n.expression, scope),
                               distinct=n.args.get("distinct") is not False)
            if isinstance(n, (QueryRef, NamedQuery)):
                raise _located(ShiftError("a query name may only follow IN, NOT IN or UNION", SYNTAX_ERROR,
                                          hint="write ModelId NOT IN Q1, or Q1 UNION SELECT ..."),
                               self.text, n)
            if isinstance(n, (exp.Placeholder, exp.Parameter)):
                raise _located(ShiftError("parameters are not supported in SHiFT-QL", SYNTAX_ERROR,
                                          hint="write the value itself"), self.text, n)
            return n

        return node.transform(rewrite, copy=True)

    def _subselect(self, select, scope):
        """A sub-query in a condition: plain SQL over the same relations."""
        if select.args.get("scoring") is not None:
            raise _located(ShiftError("a scoring view inside a condition is not supported yet",
                                      FEATURE_NOT_SUPPORTED,
                                      hint="name it first: Q1 := SELECT ...; then write ModelId IN Q1"),
                           self.text, select.args["scoring"])
        if select.args.get("with_"):
            raise _located(ShiftError("WITH is not supported in SHiFT-QL", FEATURE_NOT_SUPPORTED,
                                      hint="name queries with Q1 := SELECT ...;"), self.text, select)
        out = select.copy()
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

    def _constant_clause(self, select, key):
        """LIMIT / OFFSET of a block: constants only, checked like any expression."""
        node = select.args.get(key)
        return self._expr(node, _Scope([])) if node is not None else None

    # -- ORDER BY: a column expression or a scorer

    def _scorer_of(self, node, scope, select, scoring):
        """(Scorer, params node list) if this ORDER BY key names a scoring algorithm (seed 000 §3.1)."""
        if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
            name = node.name
            if any(s.find(name) for s in scope.sources) or name.lower() in _select_aliases(select):
                return None
            if any(s.external for s in scope.sources) and scoring is None:
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
                                              "22023", hint="e.g. %s(lr=0.1)" % scorer.name),
                                   self.text, arg.expression)
                if key.lower() in {k.lower() for k in given}:
                    raise _located(ShiftError("parameter %s of %s is given twice" % (key, scorer.name), "22023"),
                                   self.text, arg)
                given[key] = value
            else:
                raise _located(ShiftError("scorer parameters are written name=value", SYNTAX_ERROR,
                                          hint="e.g. %s(%s)" % (scorer.name, ", ".join(
                                              "%s=%r" % (p.name, p.default) for p in scorer.params[:2]))),
                               self.text, arg)
        try:
            return scorer.resolve(given)
        except ShiftError as error:
            raise _located(error, self.text, args[0] if args else None) from None

    def _order_expr(self, node, scope, select):
        """An ORDER BY key: a select-list alias, a position, or an expression over the relations."""
        projections = select.expressions
        if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
            n = int(node.this)
            if not 1 <= n <= len(projections) or isinstance(projections[n - 1], exp.Star):
                raise _located(ShiftError("ORDER BY position %d is not in the select list" % n, SYNTAX_ERROR),
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

    # -- the two kinds of view

    def _metadata_view(self, select, label, scope, models, from_, joins, where, keys):
        """Q1 of seed 000 §3.2: plain SQL; score is the first ORDER BY expression."""
        key_col = _col(models.key, models.sql_alias)
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
        else:
            score = exp.Cast(this=exp.Null(), to=exp.DataType.build("double precision"))
        if not any(o.this == key_col for o in ordered):
            ordered.append(exp.Ordered(this=key_col.copy(), nulls_first=False))
        extras, columns, types = self._extras(select, scope, models, score)
        query = exp.Select(
            expressions=[_alias(key_col.copy(), "model_id"), _alias(score, "score"), *extras],
            from_=from_, joins=joins or None, where=where,
            order=exp.Order(expressions=ordered),
            limit=self._constant_clause(select, "limit"), offset=self._constant_clause(select, "offset"))
        lines = ["order by: %s" % ", ".join(o.sql(dialect="postgres") for o in ordered)]
        lines += _limit_lines(select)
        lines.append("rows: %s" % exp.Select(expressions=[exp.Star()], from_=from_.copy(),
                                             joins=[j.copy() for j in joins] or None,
                                             where=_copy(where)).sql(dialect="postgres"))
        desc = bool(keys and keys[0].args.get("desc"))
        order = [exp.Ordered(this=_col("score"), desc=desc, nulls_first=False),
                 exp.Ordered(this=_col("model_id"), nulls_first=False)] if keys else \
            [exp.Ordered(this=_col("model_id"), nulls_first=False)]
        return _Built(query, ["model_id", "score", *columns], {"model_id": "text", "score": "double precision",
                                                               **types},
                      PlanNode("metadata view", None, lines, self._uses_named(from_, joins, where)), order,
                      block=True)

    def _scoring_view(self, select, label, scope, models, from_, joins, where, key, found):
        """Q2/Q3 of seed 000 §3.2: a pool CTE and one shift.score call over its model ids."""
        scorer, args = found
        if joins:
            raise _located(ShiftError("a scoring view reads one relation", FEATURE_NOT_SUPPORTED,
                                      hint="filter with WHERE ... IN (SELECT ...) instead of JOIN"),
                           self.text, select.args["joins"][0])
        params = self._params(scorer, args)
        clause = select.args.get("scoring")
        needed = _PROXY_READERS.get(scorer.proxy, ("tested_on", "trained_on"))
        missing = [k for k in needed if clause is None or clause.args.get(k) is None]
        if missing:
            words = " and ".join({"tested_on": "TESTED ON <test reader>",
                                  "trained_on": "TRAINED ON <train reader>"}[k] for k in missing)
            raise _located(ShiftError("scorer %s needs %s" % (scorer.name, words), SYNTAX_ERROR,
                                      hint="%s scores a model on a test reader after training on a train reader: "
                                           "ORDER BY %s ... TESTED ON TestReader TRAINED ON TrainReader"
                                           % (scorer.name, scorer.name)), self.text, key)
        readers = {k: _reader_name(clause.args[k]) for k in ("tested_on", "trained_on") if clause.args.get(k)}

        pool = self._fresh("%s_pool" % label if label else "pool")
        self.ctes.append((pool, exp.Select(expressions=[exp.Star()], from_=from_, where=where)))
        p = replace(models, sql_alias="p")
        outer = _Scope([p])
        params_json = scorers.canonical_json(params)
        ids = exp.Array(expressions=[exp.Select(expressions=[_col("model_id")],
                                                from_=exp.From(this=exp.Table(this=_ident(pool))))])
        call = exp.Anonymous(this="score", expressions=[
            exp.Literal.string(scorer.name),
            exp.Cast(this=exp.Literal.string(params_json), to=exp.DataType.build("jsonb")),
            ids,
            exp.Literal.string(readers.get("tested_on", "")),
            exp.Literal.string(readers.get("trained_on", "")),
        ])
        scored = exp.Table(this=call, db=_ident("shift"), alias=exp.TableAlias(this=_ident("s")))
        desc = bool(key.args.get("desc"))
        extras, columns, types = self._extras(select, outer, p)
        query = exp.Select(
            expressions=[_alias(_col("model_id", "p"), "model_id"), _alias(_col("score", "s"), "score"), *extras],
            from_=exp.From(this=exp.Table(this=_ident(pool), alias=exp.TableAlias(this=_ident("p")))),
            joins=[exp.Join(this=scored, on=exp.EQ(this=_col("model_id", "s"), expression=_col("model_id", "p")))],
            order=exp.Order(expressions=[exp.Ordered(this=_col("score", "s"), desc=desc, nulls_first=False),
                                         exp.Ordered(this=_col("model_id", "p"), nulls_first=False)]),
            limit=self._constant_clause(select, "limit"), offset=self._constant_clause(select, "offset"))
        use = ScoringUse(scorer.name, params, readers.get("tested_on"), readers.get("trained_on"))
        self.uses.append((pool, use))
        lines = ["scorer: %s %s %s" % (scorer.name, params_json, "DESC" if desc else "ASC")]
        lines += _limit_lines(select)
        lines.append("tested on: %s, trained on: %s" % (use.test_reader, use.train_reader))
        lines.append("pool (%s): %s" % (pool, self.ctes[-1][1].sql(dialect="postgres")))
        order = [exp.Ordered(this=_col("score"), desc=desc, nulls_first=False),
                 exp.Ordered(this=_col("model_id"), nulls_first=False)]
        return _Built(query, ["model_id", "score", *columns], {"model_id": "text", "score": "double precision",
                                                               **types},
                      PlanNode("scoring view", None, lines, self._uses_named(from_, joins, where)), order,
                      block=True)

    def _extras(self, select, scope, models, score=None):
        """The selected columns after model_id and score (a plain repeat of either is left out)."""
        out, names, types = [], [], {}

        def add(expression, name, kind):
            if name in ("model_id", "score"):
                raise _located(ShiftError("column name %s is taken by the result's %s column" % (name, name),
                                          DUPLICATE_COLUMN, hint="give the selected expression another alias"),
                               self.text, expression)
            out.append(expression)
            names.append(name)
            types[name] = kind

        for projection in select.expressions:
            star = projection if isinstance(projection, exp.Star) else (
                projection if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
                else None)
            if star is not None:
                if isinstance(star, exp.Column):
                    target = scope.source(star.table)
                    if target is None:
                        raise _located(unknown("table", star.table, scope._aliases()), self.text, star)
                    targets = [target]
                else:
                    targets = scope.sources
                for src in targets:
                    if src.external:
                        out.append(exp.Column(this=exp.Star(), table=_ident(src.sql_alias)))
                        names.append("*")
                        continue
                    for column in src.columns:
                        if src is models and column in ("model_id", "score"):
                            continue
                        add(_col(column, src.sql_alias), column, src.types.get(column))
                continue
            alias = projection.args["alias"] if isinstance(projection, exp.Alias) else None
            if alias is not None and not isinstance(alias, exp.Identifier):
                raise _located(ShiftError("expected a column name after AS", SYNTAX_ERROR, hint=SYNOPSIS),
                               self.text, projection)
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            resolved = self._expr(inner, scope)
            if alias is None and isinstance(resolved, exp.Column) and resolved.name == models.key \
                    and resolved.table == models.sql_alias:
                continue  # already the first column
            if alias is None and score is not None and resolved == score:
                continue  # already the second column
            if alias is not None:
                name = alias.name if alias.quoted else alias.name.lower()
                add(exp.Alias(this=resolved, alias=alias.copy()), name, _type_of(resolved, scope))
            else:
                add(resolved, _output_name(resolved) or "?column?", _type_of(resolved, scope))
        return out, names, types


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


def _scorer_names():
    return ", ".join(s.name for s in scorers.REGISTRY.values())
