"""Small trees for the unit tests of the SHiFT-QL passes (pyfuncs/shiftql/*.py): a Context and parsed nodes."""

from pyfuncs.shiftql import catalog, parse_script
from pyfuncs.shiftql.context import Context
from pyfuncs.shiftql.expressions import plain
from pyfuncs.shiftql.generate import sql
from pyfuncs.shiftql.queries import query

CAT = catalog.StaticCatalog(
    views=[catalog.ViewInfo("public", "best", "scoring", (("model_id", "text"), ("score", "double precision")),
                            True, "CREATE SCORING VIEW best AS SELECT ModelId FROM Models ORDER BY "
                                  "UpstreamAccuracy DESC LIMIT 3")],
    tables={"public.licences": [("model_id", "text"), ("licence", "text")]},
    readers=["TestReader", "TrainReader"], models=["m1", "m2"])


def context(text, cat=None):
    """A fresh Context for `text`, its passes wired as the driver wires them."""
    return Context(text, cat if cat is not None else catalog.Catalog(), query=query, plain=plain)


def statement(text, cat=None):
    """(context, the first statement of text)."""
    return context(text, cat), parse_script(text).expressions[0]


def text_of(node):
    return sql(node)
