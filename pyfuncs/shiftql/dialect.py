"""SHiFT-QL, the query language of seed 000 §3.1–§3.3, as a sqlglot dialect.

A SHiFT-QL query is PostgreSQL's SELECT plus what seed 000 adds to it:

- proxy scoring views (§3.1): a SELECT whose ORDER BY names a scoring algorithm,
  bare (`CosineNN`) or with keyword parameters (`Linear(lr=0.1)`), followed by
  `TESTED ON reader TRAINED ON reader`; the part from ORDER BY on may be wrapped
  in `<SHIFT> ... </SHIFT>` tags, which mean nothing more;
- named queries (§3.2): `Q1 := SELECT ...;` in a script, or `(SELECT ...) Q1`
  inside a query (the hybrid example of §3.1), used later as `Q1 UNION ...`
  and `ModelId NOT IN Q1`;
- `==` as a spelling of `=` (§3.2 writes `Input == 'Vision'`).

In SHiFT-QL the ORDER BY and LIMIT written after the last SELECT of a UNION
belong to that SELECT, not to the UNION: Q4 of §3.2 ranks only its second
block by `Linear(lr=0.1)`.

The dialect only parses (and prints SHiFT-QL back); what a query means is
decided by translate.py. New syntax is a new node below, a parser method and a
generator entry. sqlglot's token types are a closed enumeration, so the words
SHiFT-QL adds (TESTED, TRAINED, SHIFT) stay ordinary words that the parser
recognises by their text, as sqlglot's own dialects do with non-reserved
keywords.
"""

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import TokenType

# --------------------------------------------------------------------------
# Nodes SHiFT-QL adds to the syntax tree
# --------------------------------------------------------------------------


class ScoringClause(exp.Expression):
    """`TESTED ON r TRAINED ON r` of a proxy scoring view (seed 000 §3.1).

    Attached to its SELECT as the arg ``scoring``; each reader is an
    Identifier or a string Literal, as the user wrote it.
    """

    arg_types = {"tested_on": False, "trained_on": False}


class NamedQuery(exp.Expression):
    """A query with a name (seed 000 §3.2): `Q1 := query` or, inline, `(query) Q1`."""

    arg_types = {"this": True, "expression": True, "inline": False}


class QueryRef(exp.Expression):
    """A named query used by name: `Q1 UNION ...` or `ModelId NOT IN Q1` (seed 000 §3.2 Q4)."""

    arg_types = {"this": True}


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


_SCORING_WORDS = ("TESTED", "TRAINED")
# tokens that may name a query; keywords may not, so `(...) Q1 UNION` stays readable
_NAME_TOKENS = (TokenType.VAR, TokenType.IDENTIFIER)


def _drop_shift_tags(tokens):
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


def _tokenize_problem(core, sql, error):
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


class ShiftQL(Postgres):
    """PostgreSQL plus the SHiFT-QL constructs of seed 000 §3.1–§3.3."""

    class Tokenizer(Postgres.Tokenizer):
        KEYWORDS = {
            **Postgres.Tokenizer.KEYWORDS,
            "==": TokenType.EQ,  # §3.2 writes `Input == 'Vision'`
        }

        def tokenize(self, sql):
            try:
                tokens = super().tokenize(sql)
            except TokenError as error:
                raise _tokenize_problem(self._core, sql, error) from error
            return _drop_shift_tags(tokens)

    class Parser(Postgres.Parser):
        # Q4 of §3.2: ORDER BY / LIMIT after the last SELECT of a UNION are that SELECT's own
        MODIFIERS_ATTACHED_TO_SET_OP = False

        # words that PostgreSQL reserves and that shape a SHiFT-QL query are never names,
        # so `ORDER BY LIMIT` is a syntax error, not a column called "limit"
        _RESERVED = {TokenType.LIMIT, TokenType.OFFSET, TokenType.ASC, TokenType.DESC}
        ID_VAR_TOKENS = Postgres.Parser.ID_VAR_TOKENS - _RESERVED
        TABLE_ALIAS_TOKENS = Postgres.Parser.TABLE_ALIAS_TOKENS - _RESERVED
        ALIAS_TOKENS = Postgres.Parser.ALIAS_TOKENS - _RESERVED

        # -- errors: keep the offending token's offsets for a caret under it

        def raise_error(self, message, token=None):
            at_end = not token and not self._curr
            token = token or self._curr or self._prev
            if not token:
                error = SyntaxProblem(message, len(self.sql), len(self.sql), at_end=True)
            elif at_end:
                error = SyntaxProblem(message, token.end + 1, token.end + 1, at_end=True)
            else:
                error = SyntaxProblem(message, token.start, token.end)
            if self.error_level == ErrorLevel.IMMEDIATE:
                raise error
            self.errors.append(error)

        # -- statements: `Name := query` or a query

        def _parse_statement(self):
            if not self._curr:
                return None
            if self._curr.token_type in _NAME_TOKENS and self._next \
                    and self._next.token_type == TokenType.COLON_EQ:
                return self._parse_query_definition()
            if self._curr.token_type in (TokenType.SELECT, TokenType.L_PAREN, *_NAME_TOKENS):
                return self._parse_shift_query()
            if self._curr.token_type in self.STATEMENT_PARSERS or self._curr.token_type == TokenType.WITH:
                return super()._parse_statement()
            self.raise_error("expected a query: SELECT ..., (query) Name, or Name := query")

        def _parse_query_definition(self):
            name = self._parse_query_name()
            self._match(TokenType.COLON_EQ)
            query = self._parse_shift_query()
            if query is None:
                self.raise_error("expected a query after :=")
            return self.expression(NamedQuery(this=name, expression=query))

        def _parse_query_name(self):
            if not self._curr or self._curr.token_type not in _NAME_TOKENS:
                return None
            if self._curr.token_type == TokenType.IDENTIFIER:
                return self._parse_identifier()
            self._advance()
            return self.expression(exp.Identifier(this=self._prev.text, quoted=False), token=self._prev)

        # -- queries: operands joined by UNION / EXCEPT / INTERSECT (INTERSECT binds tighter)

        def _parse_shift_query(self):
            this = self._parse_shift_intersection()
            while this is not None and self._match_set((TokenType.UNION, TokenType.EXCEPT)):
                op = exp.Union if self._prev.token_type == TokenType.UNION else exp.Except
                word = self._prev.text.upper()
                distinct = self._parse_set_quantifier()
                right = self._parse_shift_intersection()
                if right is None:
                    self.raise_error("expected a query after %s" % word)
                this = self.expression(op(this=this, expression=right, distinct=distinct))
            return this

        def _parse_shift_intersection(self):
            this = self._parse_shift_operand()
            while this is not None and self._match(TokenType.INTERSECT):
                distinct = self._parse_set_quantifier()
                right = self._parse_shift_operand()
                if right is None:
                    self.raise_error("expected a query after INTERSECT")
                this = self.expression(exp.Intersect(this=this, expression=right, distinct=distinct))
            return this

        def _parse_set_quantifier(self):
            if self._match(TokenType.ALL):
                return False
            self._match(TokenType.DISTINCT)
            return True

        def _parse_shift_operand(self):
            """`SELECT ...`, `(query)`, `(query) Name` (§3.1 hybrid example) or `Name` (§3.2 Q4)."""
            if not self._curr:
                return None
            if self._match(TokenType.L_PAREN):
                inner = self._parse_shift_query()
                if inner is None:
                    self.raise_error("expected a query after (")
                self._match_r_paren()
                self._match(TokenType.ALIAS)
                name = self._parse_query_name()
                if name is not None:
                    return self.expression(NamedQuery(this=name, expression=inner, inline=True))
                return self.expression(exp.Subquery(this=inner))
            if self._curr.token_type == TokenType.SELECT:
                return self._parse_select(parse_set_operation=False)
            name = self._parse_query_name()
            if name is not None:
                return self.expression(QueryRef(this=name))
            return None

        # -- proxy scoring views: TESTED ON r TRAINED ON r after ORDER BY / LIMIT

        def _at_scoring_clause(self):
            return bool(self._curr and self._next
                    and self._curr.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
                    and self._curr.text.upper() in _SCORING_WORDS
                    and self._next.token_type == TokenType.ON)

        def _parse_query_modifiers(self, this):
            this = super()._parse_query_modifiers(this)
            if isinstance(this, exp.Select) and self._at_scoring_clause():
                this.set("scoring", self._parse_scoring_clause())
                this = super()._parse_query_modifiers(this)
            return this

        def _parse_scoring_clause(self):
            clause = ScoringClause()
            while self._at_scoring_clause():
                word = self._curr
                key = "tested_on" if word.text.upper() == "TESTED" else "trained_on"
                self._advance(2)
                if clause.args.get(key):
                    self.raise_error("%s ON is written twice" % word.text.upper(), word)
                reader = self._parse_reader_name()
                if reader is None:
                    self.raise_error("expected a reader name after %s ON" % word.text.upper())
                clause.set(key, reader)
            return self.expression(clause)

        def _parse_reader_name(self):
            if self._match(TokenType.STRING):
                return self.expression(exp.Literal.string(self._prev.text), token=self._prev)
            if self._curr and self._curr.token_type == TokenType.IDENTIFIER:
                return self._parse_identifier()
            return self._parse_id_var(any_token=False)

        def _parse_table_alias(self, alias_tokens=None):
            # `FROM Models TESTED ON r`: TESTED starts the scoring clause, it is no alias
            if self._at_scoring_clause():
                return None
            return super()._parse_table_alias(alias_tokens)

        # -- `ModelId NOT IN Q1` (§3.2 Q4)

        def _parse_in(self, this, alias=False):
            if self._curr and self._curr.token_type in _NAME_TOKENS:
                name = self._parse_query_name()
                return self.expression(exp.In(this=this, field=self.expression(QueryRef(this=name))))
            return super()._parse_in(this, alias)

        # -- remember NULLS FIRST / LAST written by the user, which sqlglot does not keep

        def _parse_ordered(self, parse_method=None):
            ordered = super()._parse_ordered(parse_method)
            if ordered is not None and self._index >= 2:
                before = self._tokens[self._index - 2]
                if before.text.upper() == "NULLS" and self._prev.text.upper() in ("FIRST", "LAST"):
                    ordered.meta["explicit_nulls"] = True
            return ordered

    class Generator(Postgres.Generator):
        """Prints SHiFT-QL back (for tests and messages); translate.py prints PostgreSQL."""

        TRANSFORMS = {
            **Postgres.Generator.TRANSFORMS,
            ScoringClause: lambda self, e: self.scoringclause_sql(e),
            NamedQuery: lambda self, e: self.namedquery_sql(e),
            QueryRef: lambda self, e: self.sql(e, "this"),
            Script: lambda self, e: ";\n".join(self.sql(s) for s in e.expressions),
        }

        def scoringclause_sql(self, expression):
            parts = []
            for key, words in (("tested_on", "TESTED ON"), ("trained_on", "TRAINED ON")):
                reader = expression.args.get(key)
                if reader is not None:
                    parts.append("%s %s" % (words, self.sql(reader)))
            return " ".join(parts)

        def namedquery_sql(self, expression):
            name = self.sql(expression, "this")
            query = self.sql(expression, "expression")
            if expression.args.get("inline"):
                return "(%s) %s" % (query, name)
            return "%s := %s" % (name, query)

        def query_modifiers(self, expression, *sqls):
            sql = super().query_modifiers(expression, *sqls)
            scoring = expression.args.get("scoring")
            return "%s%s%s" % (sql, self.sep(), self.sql(scoring)) if scoring is not None else sql


def parse_script(text):
    """The Script of a SHiFT-QL text; raises SyntaxProblem (or another sqlglot error) if it is not one."""
    dialect = ShiftQL()
    statements = dialect.parser(error_level=ErrorLevel.IMMEDIATE).parse(dialect.tokenize(text), text)
    return Script(expressions=[s for s in statements if s is not None])


def to_shiftql(expression):
    """SHiFT-QL text of a syntax tree (the inverse of parse_script, up to spelling)."""
    return ShiftQL().generate(expression, copy=True)
