"""The one object the passes of a translation share, and the translated queries they hand each other."""

from dataclasses import dataclass, field
from typing import Callable

from sqlglot import exp

from . import catalog
from .limits import Interrupts
from .plan import PlanNode
from .positions import located


@dataclass
class Built:
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
class Named:
    """A query that others read by name: a CTE of this statement, or a persisted view."""

    display: str
    table: exp.Table            # how the SQL reads it (no alias)
    built: Built
    cte: str | None = None
    view: catalog.ViewInfo | None = None


@dataclass
class Context:
    """What one translation has learnt so far, in the order its statements are read.

    The passes are functions of (context, node); they add CTEs, names and
    scoring views here, and the generator (generate.py) reads them at the end.
    `query` and `plain` are the query pass (queries.query) and the plain SQL
    pass (expressions.plain), set by the driver: the named-query pass needs
    them for a definition, and would otherwise import the passes that import it.
    """

    text: str                   # the SHiFT-QL text, for carets under errors
    catalog: catalog.Catalog
    query: Callable = None      # (context, node, label) -> Built
    plain: Callable = None      # (context, select, scope) -> Built
    interrupts: Interrupts = field(default_factory=Interrupts)  # where a pending cancel may stop the work
    names: dict = field(default_factory=dict)         # lower-case query name -> Named
    implicit: dict = field(default_factory=dict)      # CTE name -> Named of a view nested in a query
    ctes: list = field(default_factory=list)          # (name, body) in definition order
    used: set = field(default_factory=set)            # every CTE name taken
    emitted: set = field(default_factory=set)         # CTEs some statement reads
    uses: list = field(default_factory=list)          # (pool cte, ScoringUse)
    requests: list = field(default_factory=list)      # (pool cte, ScoringUse, top_k, descending), task-aware
    similar: list = field(default_factory=list)       # (pool cte, SimilarityUse)
    view_changes: dict = field(default_factory=dict)  # (schema, name) -> ViewInfo made here, None once dropped
    view_named: dict = field(default_factory=dict)    # (schema, name) -> Named of a persisted view

    def located(self, error, node):
        """The error with a caret under the node (positions.located)."""
        return located(error, self.text, node)

    def fresh(self, base):
        """A CTE name not taken yet: base, base_2, base_3, ..."""
        name = base
        n = 2
        while name in self.used:
            name = "%s_%d" % (base, n)
            n += 1
        self.used.add(name)
        return name

    def view(self, schema, name):
        """The persisted view schema.name as this script leaves it so far, or None."""
        key = (schema, name)
        if key in self.view_changes:
            return self.view_changes[key]
        return self.catalog.view(schema, name)

    def views(self):
        found = {(v.schema, v.name): v for v in self.catalog.views()}
        found.update(self.view_changes)
        return [v for v in found.values() if v is not None]

    def view_display(self, info):
        """How hints name a view: bare in the default schema, schema.name elsewhere."""
        return info.name if info.schema == self.catalog.default_schema else info.qualified
