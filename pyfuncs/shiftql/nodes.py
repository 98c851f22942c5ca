"""The nodes SHiFT-QL adds to sqlglot's syntax tree (seed 000 §3.1–§3.2), and its syntax error."""

from sqlglot import exp
from sqlglot.errors import ParseError



class ScoringClause(exp.Expression):
    """`TESTED ON r TRAINED ON r` of a proxy scoring view, `TESTED AGAINST r` of a
    dataset similarity view (seed 000 §3.1).

    Attached to its SELECT as the arg ``scoring``; each reader is an
    Identifier or a string Literal, as the user wrote it.
    """

    arg_types = {"tested_on": False, "trained_on": False, "tested_against": False}


class NamedQuery(exp.Expression):
    """A query with a name (seed 000 §3.2): `Q1 := query` or, inline, `(query) Q1`."""

    arg_types = {"this": True, "expression": True, "inline": False}


class QueryRef(exp.Expression):
    """A named query or a persisted view used by name: `Q1 UNION ...`, `ModelId NOT IN Q1` (seed 000 §3.2 Q4).

    ``schema`` is set when the name is written `schema.view`.
    """

    arg_types = {"this": True, "schema": False}


class WithQuery(exp.Expression):
    """`WITH name AS (query), ... query`: the named queries, then the query that reads them."""

    arg_types = {"this": True, "expressions": True}


class CreateView(exp.Expression):
    """`CREATE [OR REPLACE] SCORING VIEW name [AS] query` or `CREATE DATASET SIMILARITY VIEW ...` (§3.1).

    ``this`` is a Table (name, optional schema), ``kind`` is 'scoring' or
    'dataset similarity'; meta["text"] keeps the statement as the user wrote it.
    """

    arg_types = {"this": True, "kind": True, "expression": True, "replace": False}


class DropView(exp.Expression):
    """`DROP SCORING VIEW [IF EXISTS] name [CASCADE]` or `DROP DATASET SIMILARITY VIEW ...`."""

    arg_types = {"this": True, "kind": True, "exists": False, "cascade": False}


class Script(exp.Expression):
    """The statements of one SHiFT-QL text, in order; the last one is the result."""

    arg_types = {"expressions": True}


class SyntaxProblem(ParseError):
    """A parse or tokenize failure at a known place of the text.

    ``start``/``end`` are 0-based offsets (end inclusive) of the offending
    token, ``at_end`` says the text ended too early, ``expected`` says what
    would have been valid there.
    """

    def __init__(self, expected, start, end, at_end=False):
        super().__init__(expected)
        self.expected = expected
        self.start = start
        self.end = end
        self.at_end = at_end
