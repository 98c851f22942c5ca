"""Names and scopes: how a name the user wrote becomes one PostgreSQL reads (seed 000 §3.1 spellings)."""

from dataclasses import dataclass, field

from sqlglot import exp

from ..errors import AMBIGUOUS_COLUMN, SYNTAX_ERROR, ShiftError, unknown
from . import catalog

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


def ident(name, quoted=False):
    """An identifier for a name PostgreSQL should see exactly: quoted where it would misread or fold it."""
    node = exp.to_identifier(name, quoted=quoted or None)
    if name.lower() in _PG_RESERVED or name != name.lower():
        node.set("quoted", True)
    return node


def folded(node):
    """The name PostgreSQL gives an identifier as written: lower-cased unless quoted."""
    if node is None:
        return None
    if isinstance(node, str):
        return node.lower()
    if not isinstance(node, exp.Identifier):
        raise ShiftError("expected a name, not %s" % node.sql(dialect="postgres")[:40], SYNTAX_ERROR,
                         hint="names are words or \"quoted identifiers\"")
    return node.name if node.quoted else node.name.lower()


def col(name, table=None):
    return exp.Column(this=ident(name), table=ident(table) if table is not None else None)


def alias(expression, name):
    return exp.Alias(this=expression, alias=ident(name))


def output_name(node):
    """The name PostgreSQL gives a select-list item (lower-cased unless quoted)."""
    if isinstance(node, exp.Alias):
        name = node.args["alias"]
    elif isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        name = node.this
    else:
        return None
    return name.name if name.quoted else name.name.lower()


def select_aliases(select):
    return {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}


def is_star(node):
    """`*` or `t.*` in a select list."""
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


@dataclass
class Source:
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


class Scope:
    """The sources a query block reads, inside those of the blocks around it."""

    def __init__(self, sources, parent=None):
        self.sources = sources
        self.parent = parent

    def chain(self):
        scope = self
        while scope is not None:
            yield scope
            scope = scope.parent

    def source(self, qualifier):
        q = qualifier.lower()
        return next((s for scope in self.chain() for s in scope.sources if q in s.written), None)

    def by_alias(self, sql_alias):
        return next((s for scope in self.chain() for s in scope.sources if s.sql_alias == sql_alias), None)

    def known_columns(self):
        names = []
        for scope in self.chain():
            for s in scope.sources:
                names += [c for c in s.columns if c not in names]
        return names

    def aliases(self):
        return sorted({w for s in self.sources for w in s.written})

    def resolve(self, column):
        """The generated column for a column the user wrote (seed 000 §3.1 spelling → table spelling)."""
        if column.args.get("db") or column.args.get("catalog"):
            raise ShiftError("column reference %s has too many qualifiers" % column.sql(), SYNTAX_ERROR,
                             hint="write column or relation.column")
        qualifier = column.table
        if isinstance(column.this, exp.Star):
            src = self.source(qualifier)
            if src is None:
                raise unknown("table", qualifier, self.aliases())
            return exp.Column(this=exp.Star(), table=ident(src.sql_alias))
        if qualifier:
            return self._qualified(column, qualifier)
        name = column.name
        for scope in self.chain():
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
                return col(found, src.sql_alias)
            if any(s.external for s in scope.sources):
                return column.copy()
        raise unknown("column", name, self.known_columns())

    def _qualified(self, column, qualifier):
        src = self.source(qualifier)
        if src is None:
            raise unknown("table", qualifier, self.aliases())
        if src.external:
            return exp.Column(this=column.this.copy(), table=ident(src.sql_alias))
        found = src.find(column.name)
        if found is None:
            raise unknown("column", column.name, list(src.columns))
        return col(found, src.sql_alias)


def type_of(node, scope):
    """The PostgreSQL type of a resolved plain column; None for anything else."""
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier) and node.table:
        while scope is not None:
            for src in scope.sources:
                if src.sql_alias == node.table:
                    return src.types.get(node.name)
            scope = scope.parent
    return None
