"""What a translation returns (seed 000 §3.3): the statements, the query tree and the scoring views it runs."""

from dataclasses import dataclass, field
from typing import NamedTuple

from . import catalog
from .nodes import Script


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
