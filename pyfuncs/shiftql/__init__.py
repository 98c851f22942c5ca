"""SHiFT-QL: the model-search query language of seed 000 §3.1–§3.3, translated to PostgreSQL.

    translate(text, catalog=None) -> Translation   # .sql (plain PostgreSQL), .statements, .tree, .plan
    explain_tree(translation) -> str                # the query tree: scoring views and their pools

The modules, in the order a text goes through them:

- dialect.py parses (a sqlglot dialect; its nodes in nodes.py, its token
  passes in tokens.py); catalog.py names what a query may read (Models,
  DataReaders, persisted views, the user's tables);
- translate.py is the driver: translate() runs the passes over one shared
  Context (context.py) and returns the public results of plan.py;
- the passes, each one entry point: expressions.py resolves names against the
  catalog (and clauses.py the clauses of a block), named.py expands named
  queries and implicit views, views.py persisted views (CREATE / DROP),
  ranking.py reads ORDER BY and the reader clause, scoring.py turns a block
  into a metadata view or a call of shift.score / benchmark_scores /
  dataset_similarity, queries.py dispatches a query to them and combines set
  operations, generate.py prints the PostgreSQL once and reads it back;
- names.py (identifiers, scopes) and positions.py (syntax errors, carets) are
  shared helpers; run.py runs a translation inside PostgreSQL.

docs/shiftql.md is the language's reference.
"""

from .catalog import Catalog, DatabaseCatalog, StaticCatalog, ViewInfo
from .dialect import ShiftQL, parse_script, to_shiftql
from .translate import (PlanNode, ScoringRequest, ScoringUse, SimilarityUse, Statement, Translation, explain_tree,
                        translate)

__all__ = ["Catalog", "DatabaseCatalog", "PlanNode", "ScoringRequest", "ScoringUse", "ShiftQL", "SimilarityUse",
           "StaticCatalog", "Statement", "Translation", "ViewInfo", "explain_tree", "parse_script", "to_shiftql",
           "translate"]
