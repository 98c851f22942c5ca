"""ORDER BY: a column expression, a registered scorer or a metric (seed 000 §3.1), and its reader clause."""

import difflib
import re

from sqlglot import exp

from .. import scorers
from ..errors import INVALID_PARAMETER, SYNTAX_ERROR, UNDEFINED_OBJECT, ShiftError
from . import catalog
from .names import select_aliases

CLAUSE_WORDS = {"tested_on": "TESTED ON", "trained_on": "TRAINED ON", "tested_against": "TESTED AGAINST"}


def is_view_query(query):
    """Whether a query ranks by a registered scorer or metric: a scoring or dataset similarity view."""
    if isinstance(query, exp.Subquery):
        return is_view_query(query.this)
    if isinstance(query, exp.SetOperation):
        return is_view_query(query.this) or is_view_query(query.expression)
    if not isinstance(query, exp.Select):
        return False
    if query.args.get("scoring") is not None:
        return True
    relations = [catalog.find_relation(t.name) for t in query.find_all(exp.Table) if not t.args.get("db")]
    for key in (query.args["order"].expressions if query.args.get("order") else []):
        node = key.this
        if isinstance(node, exp.Anonymous) and isinstance(node.this, str) \
                and node.this.lower() in scorers.REGISTRY:
            return True
        if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier) \
                and node.name.lower() in scorers.REGISTRY \
                and not any(r.find_column(node.name) for r in relations if r is not None) \
                and node.name.lower() not in select_aliases(query):
            return True
    return False


def ranking_of(ctx, node, scope, select, scoring):
    """(Scorer, params node list) if this ORDER BY key names a registered scorer or metric (seed 000 §3.1)."""
    if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
        name = node.name
        # a registered name followed by TESTED ON / AGAINST is the scorer, even where a column has the
        # name (DataReaders has a column task2vec, the embedding that the metric Task2Vec compares)
        registered = name.lower() in scorers.REGISTRY and (scoring is not None or any(
            s.types.get(s.find(name)) == "vector" for s in scope.sources if s.find(name)))
        if not registered and (any(s.find(name) for s in scope.sources)
                               or name.lower() in select_aliases(select)):
            return None
        if any(s.external for s in scope.sources) and scoring is None \
                and name.lower() not in scorers.REGISTRY:
            return None
        args = []
    elif isinstance(node, exp.Anonymous) and isinstance(node.this, str):
        name = node.this
        args = list(node.expressions)
    else:
        return None
    if name.lower() in scorers.REGISTRY:
        return scorers.get(name), args
    # an unknown word: a misspelt scorer if TESTED ON follows or a scorer is its closest name
    nearest_scorer = _likeness(name, [s.name for s in scorers.REGISTRY.values()])
    if scoring is not None or (nearest_scorer >= 0.6 and (
            isinstance(node, exp.Anonymous) or nearest_scorer > _likeness(name, scope.known_columns()))):
        raise ctx.located(_unknown_scorer(name), node)
    return None


def params(ctx, scorer, args):
    """The scorer's complete, checked parameters from `Scorer(name=value, ...)`."""
    given = {}
    for arg in args:
        if isinstance(arg, (exp.EQ, exp.PropertyEQ, exp.Kwarg)) and isinstance(
                arg.this, (exp.Column, exp.Identifier, exp.Var)):
            key = arg.this.name
            value = constant(arg.expression)
            if value is NOT_CONSTANT:
                raise ctx.located(ShiftError("parameter %s of %s must be a constant" % (key, scorer.name),
                                             INVALID_PARAMETER, hint="e.g. %s" % _example_call(scorer)),
                                  arg.expression)
            if key.lower() in {k.lower() for k in given}:
                raise ctx.located(ShiftError("parameter %s of %s is given twice" % (key, scorer.name),
                                             INVALID_PARAMETER), arg)
            given[key] = value
        else:
            raise ctx.located(ShiftError("scorer parameters are written name=value", SYNTAX_ERROR,
                                         hint="e.g. %s" % _example_call(scorer)), arg)
    try:
        return scorer.resolve(given)
    except ShiftError as error:
        raise ctx.located(error, args[0] if args else None) from None


def top_k(select):
    """LIMIT + OFFSET when both are integer constants: how many best models the block keeps."""
    total = 0
    for key in ("limit", "offset"):
        node = select.args.get(key)
        value = node.args.get("expression") if node is not None else None
        if node is None:
            if key == "limit":
                return None
            continue
        if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
            return None
        total += int(value.this)
    return total if 0 < total < 2 ** 31 else None


def reader_form(ctx, scorer, clause, key):
    """('task', readers), ('benchmark', {}) or ('similarity', readers): how a scorer reads readers."""
    given = {k for k in CLAUSE_WORDS if clause is not None and clause.args.get(k) is not None}
    if scorer.kind == "datasim":
        return "similarity", {"tested_against": _similarity_target(ctx, scorer.name, clause, given, key)}
    name = scorer.name
    if "tested_against" in given:
        raise ctx.located(ShiftError("TESTED AGAINST names the target of a dataset similarity metric", SYNTAX_ERROR,
                                     hint="scorer %s is written ... TESTED ON test_reader TRAINED ON train_reader"
                                          % name), clause.args["tested_against"])
    if given == {"tested_on", "trained_on"}:
        return "task", {k: _checked_reader(ctx, clause.args[k]) for k in ("tested_on", "trained_on")}
    if not given and scorer.kind == "finetune":
        return "benchmark", {}
    missing = [k for k in ("tested_on", "trained_on") if k not in given]
    words = " and ".join({"tested_on": "TESTED ON <test reader>",
                          "trained_on": "TRAINED ON <train reader>"}[k] for k in missing)
    raise ctx.located(ShiftError("scorer %s needs %s" % (name, words), SYNTAX_ERROR,
                                 hint="%s scores a model on a test reader after training on a train reader: "
                                      "ORDER BY %s ... TESTED ON TestReader TRAINED ON TrainReader"
                                      % (name, name)), key)


def _similarity_target(ctx, name, clause, given, key):
    """The checked target reader of a dataset similarity metric (TESTED AGAINST, or TESTED ON as Q5 writes)."""
    if "trained_on" in given:
        raise ctx.located(ShiftError("TRAINED ON does not apply to dataset similarity metric %s" % name,
                                     SYNTAX_ERROR, hint="write TESTED AGAINST target_reader"),
                          clause.args["trained_on"])
    if given == {"tested_on", "tested_against"}:
        raise ctx.located(ShiftError("write TESTED AGAINST or TESTED ON, not both", SYNTAX_ERROR,
                                     hint="TESTED AGAINST target_reader"), clause)
    if not given:
        raise ctx.located(ShiftError("dataset similarity metric %s needs TESTED AGAINST <target reader>" % name,
                                     SYNTAX_ERROR,
                                     hint="%s ranks readers by their similarity to a target reader: ORDER BY "
                                          "%s LIMIT k TESTED AGAINST TargetReader" % (name, name)), key)
    return _checked_reader(ctx, clause.args.get("tested_against") or clause.args.get("tested_on"))


def _checked_reader(ctx, node):
    """A reader named in TESTED ON / TRAINED ON / TESTED AGAINST must be registered (case aside)."""
    known = ctx.catalog.reader_ids()
    name = node.this if isinstance(node, exp.Literal) else node.name
    if known is None or name in known or sum(k.lower() == name.lower() for k in known) == 1:
        return name
    raise ctx.located(ctx.catalog.unknown_reader(name, known), node)


NOT_CONSTANT = object()


def constant(node):
    """The Python value of a scorer parameter (a literal, possibly negated), or NOT_CONSTANT."""
    if isinstance(node, exp.Paren):
        return constant(node.this)
    if isinstance(node, exp.Neg):
        value = constant(node.this)
        return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else NOT_CONSTANT
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text) if re.fullmatch(r"[0-9]+", text) else float(text)
        except ValueError:
            return NOT_CONSTANT
    if isinstance(node, (exp.Column, exp.Var)) and isinstance(node.this, (exp.Identifier, str)):
        return node.name  # a bare word, e.g. metric=cosine
    return NOT_CONSTANT


def _likeness(name, candidates):
    """How close name is to the closest candidate, 0 to 1 (case and underscores ignored)."""
    want = catalog.normalise(name)
    return max((difflib.SequenceMatcher(None, want, catalog.normalise(c)).ratio() for c in candidates), default=0.0)


def _unknown_scorer(name):
    try:
        scorers.get(name)
    except ShiftError as error:
        return error
    return ShiftError("unknown scorer %r" % name, UNDEFINED_OBJECT)


def names_of(ranks):
    """The registered names that rank models or readers, for hints."""
    return ", ".join(s.name for s in scorers.REGISTRY.values() if s.ranks == ranks)


def _example_call(scorer):
    shown = ", ".join("%s=%r" % (p.name, p.default) for p in scorer.params[:2])
    return "%s(%s)" % (scorer.name, shown) if shown else scorer.name
