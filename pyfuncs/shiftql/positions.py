"""Where in the text a SHiFT-QL error is: syntax errors and carets in PostgreSQL's `LINE n:` style."""

import re

from sqlglot import exp

from ..errors import SYNTAX_ERROR, ShiftError

SYNOPSIS = ("a SHiFT-QL query reads: [Name :=] SELECT ... FROM Models [WHERE ...] "
            "[ORDER BY column | Scorer[(name=value, ...)] [ASC | DESC]] [LIMIT k] "
            "[TESTED ON reader TRAINED ON reader]")


def offset_of(text, line, col):
    """(start, end, at_end) of a 1-based line and column, as sqlglot reports them."""
    if not line:
        return 0, 0, False
    lines = text.split("\n")
    line = min(max(int(line), 1), len(lines))
    start = sum(len(x) + 1 for x in lines[:line - 1]) + max(int(col or 1) - 1, 0)
    start = min(start, len(text))
    return start, start, start >= len(text)


def caret(text, start):
    """`line L, column C:` then the line and a caret under the column (PostgreSQL's LINE n: style)."""
    start = min(max(start, 0), len(text))
    line_no = text.count("\n", 0, start) + 1
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    col = start - line_start + 1
    pad = "".join("\t" if ch == "\t" else " " for ch in line[:col - 1])
    return line_no, col, "line %d, column %d:\n%s\n%s^" % (line_no, col, line, pad)


def expected(description):
    """A parser's description of what it wanted, as a hint."""
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


def syntax_error(text, start, end, at_end, expected_):
    """PostgreSQL's `syntax error at or near "..."`, with a caret and what was expected."""
    line_no, col, detail = caret(text, start)
    if at_end or start >= len(text):
        message = "syntax error at end of input"
    else:
        near = text[start:end + 1].split("\n")[0][:40] or text[start]
        message = 'syntax error at or near "%s"' % near
    hint = expected(expected_)
    if SYNOPSIS not in hint:
        hint = "%s; %s" % (hint, SYNOPSIS)
    return ShiftError(message, SYNTAX_ERROR, detail=detail, hint=hint)


def located(error, text, node):
    """The error with a caret under the node's place in the text, where the parser recorded it."""
    if error.detail is None and node is not None:
        for n in (node, *node.find_all(exp.Identifier)):
            start = n.meta.get("start") if n.meta else None
            if start is not None:
                error.detail = caret(text, start)[2]
                break
    return error
