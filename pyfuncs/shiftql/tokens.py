"""The token passes of the SHiFT-QL tokenizer: <SHIFT> tags dropped, `10M` merged, failures placed."""

from decimal import Decimal, InvalidOperation

from sqlglot.tokens import Token, TokenType

from .nodes import SyntaxProblem

# K, M, G or B, T after a number, as in `NumParams < 10M` (powers of a thousand)
NUMBER_SUFFIXES = {"K": 3, "M": 6, "G": 9, "B": 9, "T": 12}


def drop_shift_tags(tokens):
    """The tokens without `<SHIFT>` / `</SHIFT>` tags (seed 000 §3.1: the tags are optional).

    A tag is `<`, [`/`,] the word SHIFT and `>` written without spaces; tags
    must alternate, opening first.
    """
    out = []
    i = 0
    is_open = None  # the opening tag's first token while inside one
    while i < len(tokens):
        tok = tokens[i]
        if tok.token_type == TokenType.LT:
            closing = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.SLASH
            n = 4 if closing else 3
            tag = tokens[i:i + n]
            if (len(tag) == n and tag[-2].text.upper() == "SHIFT" and tag[-1].token_type == TokenType.GT
                    and tag[-2].token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
                    and all(a.end + 1 == b.start for a, b in zip(tag, tag[1:]))):
                if closing and is_open is None:
                    raise SyntaxProblem("</SHIFT> closes no <SHIFT>", tok.start, tag[-1].end)
                if not closing and is_open is not None:
                    raise SyntaxProblem("<SHIFT> inside <SHIFT>; close the first one with </SHIFT>",
                                        tok.start, tag[-1].end)
                is_open = None if closing else tok
                i += n
                continue
        out.append(tok)
        i += 1
    if is_open is not None:
        raise SyntaxProblem("<SHIFT> is not closed by </SHIFT>", is_open.start, is_open.start + 6)
    return out


def merge_number_suffixes(tokens):
    """`10M` and `1.5K` as one number token (10000000, 1500); `10 M` stays a number and a word."""
    out = []
    for tok in tokens:
        before = out[-1] if out else None
        if (before is not None and before.token_type == TokenType.NUMBER and tok.token_type == TokenType.VAR
                and tok.text.upper() in NUMBER_SUFFIXES and before.end + 1 == tok.start):
            try:
                value = Decimal(before.text).scaleb(NUMBER_SUFFIXES[tok.text.upper()])
                if not value.is_finite() or value.adjusted() > 30:
                    raise InvalidOperation
            except ArithmeticError:
                raise SyntaxProblem("a number below 1e30", before.start, tok.end) from None
            text = str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
            out[-1] = Token(TokenType.NUMBER, text, before.line, before.col, before.start, tok.end,
                            before.comments)
            continue
        out.append(tok)
    return out


def tokenize_problem(core, sql, error):
    """A SyntaxProblem at the place the tokenizer stopped."""
    cause = str(error.__cause__ or error)
    start = min(max(getattr(core, "_start", 0), 0), max(len(sql) - 1, 0))
    if cause.startswith("Missing '"):
        expected = "unterminated quoted string; close it with '"
    elif cause.startswith('Missing "'):
        expected = 'unterminated quoted identifier; close it with "'
    elif cause.startswith("Missing */"):
        expected = "unterminated /* comment; close it with */"
    elif cause.startswith("Missing $"):
        expected = "unterminated dollar-quoted string"
    elif cause.startswith("Numeric string"):
        expected = "a valid number"
    else:
        expected = "valid SHiFT-QL text"
    end = start
    while end + 1 < len(sql) and not sql[end + 1].isspace() and end - start < 30:
        end += 1
    return SyntaxProblem(expected, start, end, at_end=not sql.strip())
