"""SHiFT-QL: the model-search query language of seed 000 §3.1–§3.3, translated to PostgreSQL.

    translate(text) -> Translation   # .sql (plain PostgreSQL), .tree, .scoring, .plan
    explain_tree(translation) -> str  # the query tree: scoring views and their pools

dialect.py parses (a sqlglot dialect), translate.py rewrites the tree into SQL,
catalog.py names the relations a query may read.
"""

from .dialect import ShiftQL, parse_script, to_shiftql
from .translate import PlanNode, ScoringUse, Translation, explain_tree, translate

__all__ = ["ShiftQL", "PlanNode", "ScoringUse", "Translation", "explain_tree", "parse_script", "to_shiftql",
           "translate"]
