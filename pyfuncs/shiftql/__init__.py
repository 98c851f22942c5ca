"""SHiFT-QL: the model-search query language of seed 000 §3.1–§3.3, translated to PostgreSQL.

    translate(text, catalog=None) -> Translation   # .sql (plain PostgreSQL), .statements, .tree, .plan
    explain_tree(translation) -> str                # the query tree: scoring views and their pools

dialect.py parses (a sqlglot dialect), translate.py rewrites the tree into SQL,
catalog.py names what a query may read (Models, DataReaders, persisted views,
the user's tables), run.py runs it inside PostgreSQL. docs/shiftql.md is the
language's reference.
"""

from .catalog import Catalog, DatabaseCatalog, StaticCatalog, ViewInfo
from .dialect import ShiftQL, parse_script, to_shiftql
from .translate import (PlanNode, ScoringRequest, ScoringUse, SimilarityUse, Statement, Translation, explain_tree,
                        translate)

__all__ = ["Catalog", "DatabaseCatalog", "PlanNode", "ScoringRequest", "ScoringUse", "ShiftQL", "SimilarityUse",
           "StaticCatalog", "Statement", "Translation", "ViewInfo", "explain_tree", "parse_script", "to_shiftql",
           "translate"]
