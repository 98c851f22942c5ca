"""SHiFT-QL, the query language of seed 000 §3.1–§3.3, as a sqlglot dialect.

A SHiFT-QL query is PostgreSQL's SELECT plus what seed 000 adds to it:

- proxy scoring views (§3.1): a SELECT whose ORDER BY names a scoring algorithm,
  bare (`CosineNN`) or with keyword parameters (`Linear(lr=0.1)`), followed by
  `TESTED ON reader TRAINED ON reader`; the part from ORDER BY on may be wrapped
  in `<SHIFT> ... </SHIFT>` tags, which mean nothing more;
- named queries (§3.2): `Q1 := SELECT ...` in a script (the `;` after it may be
  left out, as §3.2 lays Q4 out after Q1), or `(SELECT ...) Q1`
  inside a query (the hybrid example of §3.1), used later as `Q1 UNION ...`
  and `ModelId NOT IN Q1`;
- `==` as a spelling of `=` (§3.2 writes `Input == 'Vision'`);
- numbers with a magnitude suffix, `10M` or `1.5K` (K, M, G or B, T: powers of
  a thousand), as users write model sizes;
- dataset similarity views (§3.1): a SELECT over DataReaders ordered by a
  DataSimMetric, followed by `TESTED AGAINST reader` (Q5 of §3.2 writes
  `TESTED ON reader` there, which means the same);
- `CREATE SCORING VIEW name [AS] query`, `CREATE DATASET SIMILARITY VIEW name
  [AS] query` and `DROP SCORING VIEW name` / `DROP DATASET SIMILARITY VIEW name`
  (§3.1), which persist a view in the database;
- a query named where it is used inside a condition, `x IN (SELECT ...) Q6`
  (Q5 of §3.2), and `WITH name AS (query), ... query`, which names queries as
  `name := query;` does.

In SHiFT-QL the ORDER BY and LIMIT written after the last SELECT of a UNION
belong to that SELECT, not to the UNION: Q4 of §3.2 ranks only its second
block by `Linear(lr=0.1)`.

The dialect only parses (and prints SHiFT-QL back); what a query means is
decided by translate.py. New syntax is a new node (nodes.py), a parser method
and a generator entry; tokens.py holds the passes over the token list. sqlglot's
token types are a closed enumeration, so the words SHiFT-QL adds (TESTED,
TRAINED, AGAINST, SCORING, DATASET, SIMILARITY, SHIFT) stay ordinary words that
the parser recognises by their text, as sqlglot's own dialects do with
non-reserved keywords.
"""

import re

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ErrorLevel, TokenError
from sqlglot.tokens import TokenType

from . import limits
from .nodes import CreateView, DropView, NamedQuery, QueryRef, ScoringClause, Script, SyntaxProblem, WithQuery
from .tokens import drop_shift_tags, merge_number_suffixes, tokenize_problem

__all__ = ["CreateView", "DropView", "NamedQuery", "QueryRef", "ScoringClause", "Script", "ShiftQL",
           "SyntaxProblem", "WithQuery", "parse_script", "to_shiftql"]

_SCORING_KEYS = {("TESTED", "ON"): "tested_on", ("TRAINED", "ON"): "trained_on",
                 ("TESTED", "AGAINST"): "tested_against"}
# the words between CREATE / DROP and VIEW that name a kind of SHiFT-QL view (seed 000 §3.1)
VIEW_KINDS = {("SCORING",): "scoring", ("DATASET", "SIMILARITY"): "dataset similarity"}
_CLOSING_TAGS = re.compile(r"(?:\s*</SHIFT>)*", re.I)
# tokens that may name a query; keywords may not, so `(...) Q1 UNION` stays readable
_NAME_TOKENS = (TokenType.VAR, TokenType.IDENTIFIER)


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
                raise tokenize_problem(self._core, sql, error) from error
            return merge_number_suffixes(drop_shift_tags(tokens))

    class Parser(Postgres.Parser):
        # Q4 of §3.2: ORDER BY / LIMIT after the last SELECT of a UNION are that SELECT's own
        MODIFIERS_ATTACHED_TO_SET_OP = False
        interrupts = None  # limits.Interrupts, stepped once a token

        def _advance(self, times=1):
            super()._advance(times)
            if self.interrupts is not None:
                self.interrupts.step()

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

        # -- statements: `Name := query`, CREATE / DROP ... VIEW, or a query

        def _parse_statement(self):
            if not self._curr:
                return None
            first = self._curr
            statement = self._parse_shift_statement()
            if statement is not None and self._prev is not None:
                end = self._prev.end + 1
                closing = _CLOSING_TAGS.match(self.sql, end)  # tags are not tokens, but part of the text
                statement.meta["text"] = self.sql[first.start:closing.end() if closing.group(0) else end]
            return statement

        def _at_definition(self):
            return bool(self._curr and self._next and self._curr.token_type in _NAME_TOKENS
                        and self._next.token_type == TokenType.COLON_EQ)

        def _parse_shift_statement(self):
            if self._at_definition():
                # §3.2 lays definitions out one after another without a ';' (Q4 after Q1): a name
                # followed by := cannot go on the query before it, so it starts the next definition
                definitions = [self._parse_query_definition()]
                while self._at_definition():
                    definitions.append(self._parse_query_definition())
                return definitions[0] if len(definitions) == 1 else Script(expressions=definitions)
            if self._curr.token_type == TokenType.CREATE and self._view_kind_at(1, replace=True):
                return self._parse_create_view()
            if self._curr.token_type == TokenType.DROP and self._view_kind_at(1):
                return self._parse_drop_view()
            if self._curr.token_type in (TokenType.SELECT, TokenType.L_PAREN, TokenType.WITH, *_NAME_TOKENS):
                return self._parse_shift_query()
            if self._curr.token_type in (TokenType.CREATE, TokenType.DROP):
                self.raise_error("expected SCORING VIEW or DATASET SIMILARITY VIEW after %s"
                                 % self._curr.text.upper(), self._next or self._curr)
            self.raise_error("expected a query: SELECT ..., (query) Name, Name := query, "
                             "or CREATE SCORING VIEW name AS query")

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

        # -- CREATE [OR REPLACE] SCORING VIEW / DATASET SIMILARITY VIEW, DROP ... VIEW (§3.1)

        def _view_kind_at(self, offset, replace=False):
            """The view kind whose words start `offset` tokens ahead (after OR REPLACE if allowed), or None."""
            i = self._index + offset
            if replace and i + 1 < len(self._tokens) and self._tokens[i].token_type == TokenType.OR \
                    and self._tokens[i + 1].text.upper() == "REPLACE":
                i += 2
            for words, kind in VIEW_KINDS.items():
                ahead = self._tokens[i:i + len(words) + 1]
                if len(ahead) == len(words) + 1 and ahead[-1].token_type == TokenType.VIEW and all(
                        t.token_type == TokenType.VAR and t.text.upper() == w for t, w in zip(ahead, words)):
                    return kind, i + len(words) + 1
            return None

        def _parse_create_view(self):
            kind, after = self._view_kind_at(1, replace=True)
            replace = self._tokens[self._index + 1].token_type == TokenType.OR
            self._advance(after - self._index)
            name = self._parse_view_name()
            self._match(TokenType.ALIAS)
            query = self._parse_shift_query()
            if query is None:
                self.raise_error("expected the query of view %s" % name.name)
            return self.expression(CreateView(this=name, kind=kind, expression=query, replace=replace))

        def _parse_drop_view(self):
            kind, after = self._view_kind_at(1)
            self._advance(after - self._index)
            exists = self._match_text_seq("IF", "EXISTS")
            name = self._parse_view_name()
            cascade = self._match_text_seq("CASCADE")
            if not cascade:
                self._match_text_seq("RESTRICT")
            return self.expression(DropView(this=name, kind=kind, exists=exists, cascade=cascade))

        def _parse_view_name(self):
            """`name` or `schema.name`, as a Table."""
            parts = []
            while True:
                if not self._curr or self._curr.token_type not in _NAME_TOKENS:
                    self.raise_error("expected a view name")
                    return None
                parts.append(self._parse_query_name())
                if len(parts) == 2 or not self._match(TokenType.DOT):
                    break
            return exp.Table(this=parts[-1], db=parts[0] if len(parts) == 2 else None)

        # -- queries: operands joined by UNION / EXCEPT / INTERSECT (INTERSECT binds tighter)

        def _parse_shift_query(self):
            if self._match(TokenType.WITH):
                return self._parse_with_query()
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

        def _parse_with_query(self):
            """`WITH name AS (query), ... query`: each name is a named query (seed 000 §3.2)."""
            if self._match(TokenType.RECURSIVE):
                self.raise_error("WITH RECURSIVE is not supported in SHiFT-QL", self._prev)
            definitions = []
            while True:
                name = self._parse_query_name()
                if name is None:
                    self.raise_error("expected a query name after WITH")
                    return None
                if self._curr and self._curr.token_type == TokenType.L_PAREN:
                    self.raise_error("column names after a WITH query name are not supported")
                if not self._match(TokenType.ALIAS):
                    self.raise_error("expected AS after %s" % name.name)
                self._match_text_seq("NOT")
                self._match_text_seq("MATERIALIZED")
                if not self._match(TokenType.L_PAREN):
                    self.raise_error("expected ( after AS")
                query = self._parse_shift_query()
                if query is None:
                    self.raise_error("expected a query after (")
                self._match_r_paren()
                definitions.append(self.expression(NamedQuery(this=name, expression=query)))
                if not self._match(TokenType.COMMA):
                    break
            body = self._parse_shift_query()
            if body is None:
                self.raise_error("expected the query that reads the WITH queries")
            return self.expression(WithQuery(this=body, expressions=definitions))

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
                if self._match(TokenType.DOT):  # a view in a schema: analytics.best
                    table = self._parse_query_name()
                    if table is None:
                        self.raise_error("expected a view name after %s." % name.name)
                    return self.expression(QueryRef(this=table, schema=name))
                return self.expression(QueryRef(this=name))
            return None

        # -- scoring clauses: TESTED ON r TRAINED ON r, TESTED AGAINST r, after ORDER BY / LIMIT

        def _scoring_key(self):
            if not (self._curr and self._next) or self._curr.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
                return None
            return _SCORING_KEYS.get((self._curr.text.upper(), self._next.text.upper()))

        def _at_scoring_clause(self):
            return self._scoring_key() is not None

        def _parse_query_modifiers(self, this):
            this = super()._parse_query_modifiers(this)
            if isinstance(this, exp.Select) and self._at_scoring_clause():
                this.set("scoring", self._parse_scoring_clause())
                this = super()._parse_query_modifiers(this)
            return this

        def _parse_scoring_clause(self):
            clause = ScoringClause()
            while self._at_scoring_clause():
                key = self._scoring_key()
                word = self._curr
                words = "%s %s" % (word.text.upper(), self._next.text.upper())
                self._advance(2)
                if clause.args.get(key):
                    self.raise_error("%s is written twice" % words, word)
                reader = self._parse_reader_name()
                if reader is None:
                    self.raise_error("expected a reader name after %s" % words)
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

        # -- `ModelId NOT IN Q1` (§3.2 Q4), `ReaderId IN (SELECT ...) Q6` (§3.2 Q5)

        def _parse_in(self, this, alias=False):
            if self._curr and self._curr.token_type in _NAME_TOKENS:
                name = self._parse_query_name()
                schema = None
                if self._match(TokenType.DOT):
                    schema, name = name, self._parse_query_name()
                    if name is None:
                        self.raise_error("expected a view name after %s." % schema.name)
                return self.expression(exp.In(this=this, field=self.expression(QueryRef(this=name, schema=schema))))
            in_ = super()._parse_in(this, alias)
            query = in_.args.get("query")
            if query is not None and self._curr and self._curr.token_type in _NAME_TOKENS \
                    and not self._at_scoring_clause():
                name = self._parse_query_name()
                in_.set("query", None)
                in_.set("field", self.expression(NamedQuery(this=name, expression=query.this, inline=True)))
            return in_

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
            QueryRef: lambda self, e: self.queryref_sql(e),
            WithQuery: lambda self, e: "WITH %s %s" % (", ".join(
                "%s AS (%s)" % (self.sql(d, "this"), self.sql(d, "expression")) for d in e.expressions),
                self.sql(e, "this")),
            CreateView: lambda self, e: "CREATE %sVIEW %s AS %s" % (
                "OR REPLACE " * bool(e.args.get("replace")) + e.args["kind"].upper() + " ",
                self.sql(e, "this"), self.sql(e, "expression")),
            DropView: lambda self, e: "DROP %s VIEW %s%s%s" % (
                e.args["kind"].upper(), "IF EXISTS " * bool(e.args.get("exists")), self.sql(e, "this"),
                " CASCADE" * bool(e.args.get("cascade"))),
            Script: lambda self, e: ";\n".join(self.sql(s) for s in e.expressions),
        }

        def queryref_sql(self, expression):
            schema = expression.args.get("schema")
            return ("%s.%s" % (self.sql(schema), self.sql(expression, "this")) if schema is not None
                    else self.sql(expression, "this"))

        def scoringclause_sql(self, expression):
            parts = []
            for key, words in (("tested_on", "TESTED ON"), ("trained_on", "TRAINED ON"),
                               ("tested_against", "TESTED AGAINST")):
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


def parse_script(text, interrupts=None):
    """The Script of a SHiFT-QL text; raises SyntaxProblem (or another sqlglot error) if it is not one.

    A text beyond the limits of limits.py is refused before the stage it would make too big;
    ``interrupts`` (limits.Interrupts) is checked between the stages and while parsing.
    """
    interrupts = interrupts or limits.Interrupts()
    limits.require_text_size(text)
    dialect = ShiftQL()
    tokens = dialect.tokenize(text)
    limits.require_token_count(len(tokens))
    interrupts.check()
    parser = dialect.parser(error_level=ErrorLevel.IMMEDIATE)
    parser.interrupts = interrupts
    statements = parser.parse(tokens, text)
    del tokens
    flat = []
    for statement in statements:
        flat += statement.expressions if isinstance(statement, Script) else [statement]
    script = Script(expressions=[s for s in flat if s is not None])
    limits.require_node_count(script, interrupts)
    interrupts.check()
    return script


def to_shiftql(expression):
    """SHiFT-QL text of a syntax tree (the inverse of parse_script, up to spelling)."""
    return ShiftQL().generate(expression, copy=True)
