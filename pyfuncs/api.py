"""Entry points of the SQL functions; each PL/Python body calls exactly one of these.

ShiftError becomes a PostgreSQL error with its SQLSTATE, detail and hint.
"""

import functools
import json

from . import queue, registry, scorers, tasks
from .db import Plpy
from .errors import INVALID_PARAMETER, ShiftError, unknown


def _sql_errors(fn):
    @functools.wraps(fn)
    def wrapper(plpy, *args):
        try:
            return fn(Plpy(plpy), *args)
        except ShiftError as e:
            extra = {k: v for k, v in (("detail", e.detail), ("hint", e.hint)) if v}
            plpy.error(e.message, sqlstate=e.sqlstate, **extra)
    return wrapper


@_sql_errors
def register_model(db, *args):
    return registry.register_model(db, *args)


@_sql_errors
def register_sql_reader(db, *args):
    return registry.register_sql_reader(db, *args)


@_sql_errors
def register_npz_reader(db, *args):
    return registry.register_npz_reader(db, *args)


@_sql_errors
def drop_object(db, kind, name):
    table, column = {"model": ("shift.models", "model_id"), "reader": ("shift.readers", "reader_id")}[kind]
    rows = db.execute("DELETE FROM %s WHERE %s = $1 RETURNING %s" % (table, column, column), ["text"], [name])
    if not rows.nrows():
        known = [r[column] for r in db.execute("SELECT %s FROM %s" % (column, table))]
        raise unknown(kind, name or "", known)


def resolve_reader(db, name):
    """A reader row by exact id, else by case-insensitive id (SHiFT-QL folds nothing)."""
    row = db.one("SELECT * FROM shift.readers WHERE reader_id = $1", ["text"], [name])
    if row is None:
        rows = db.execute("SELECT * FROM shift.readers WHERE lower(reader_id) = lower($1)", ["text"], [name])
        row = rows[0] if rows.nrows() == 1 else None
    if row is None:
        raise unknown("reader", name or "", [r["reader_id"] for r in db.execute("SELECT reader_id FROM shift.readers")])
    return row


@_sql_errors
def score(db, scorer_name, params, model_ids, test_reader, train_reader):
    scorer = scorers.get(scorer_name or "")
    given = json.loads(params) if isinstance(params, str) else (params or {})
    if not isinstance(given, dict):
        raise ShiftError("scorer parameters must be a json object", INVALID_PARAMETER)
    resolved = scorer.resolve(given)
    test = resolve_reader(db, test_reader)
    train = resolve_reader(db, train_reader)
    models = list(dict.fromkeys(m for m in (model_ids or []) if m is not None))
    if not models:
        return []
    known = {r["model_id"] for r in db.execute(
        "SELECT model_id FROM shift.models WHERE model_id = ANY($1)", ["text[]"], [models])}
    for m in models:
        if m not in known:
            raise unknown("model", m, [r["model_id"] for r in db.execute("SELECT model_id FROM shift.models")])

    fidelity = train["num_samples"]
    cached = _cached_scores(db, scorer.proxy, resolved, models, test["reader_id"], train["reader_id"], fidelity)
    missing = [m for m in models if m not in cached]
    if missing:
        queue.require_read_committed(db)
        queue.require_live_worker(db)
        planned = plan_scores(db, scorer.proxy, resolved, missing, test, train, fidelity)
        ids = queue.enqueue(db, planned, missing, {test["reader_id"], train["reader_id"]})
        queue.wait(db, ids)
        cached = _cached_scores(db, scorer.proxy, resolved, models, test["reader_id"], train["reader_id"], fidelity)
        lost = [m for m in models if m not in cached]
        if lost:
            raise ShiftError("proxy value of model %s is missing after its task finished" % lost[0], "XX000")
    return [(m, scorer.present(cached[m])) for m in models]


def _cached_scores(db, proxy, params, models, test_id, train_id, fidelity):
    rows = db.execute(
        "SELECT model_id, value FROM shift.scores WHERE proxy = $1 AND params = $2 AND test_reader = $3 "
        "AND train_reader = $4 AND fidelity = $5 AND model_id = ANY($6)",
        ["text", "jsonb", "text", "text", "bigint", "text[]"],
        [proxy, scorers.canonical_json(params), test_id, train_id, fidelity, models])
    return {r["model_id"]: r["value"] for r in rows}


def plan_scores(db, proxy, params, models, test, train, fidelity):
    """Inference tasks for feature blocks the cache lacks, then one proxy task per model (§4.3 Caching)."""
    readers = [train] if train["reader_id"] == test["reader_id"] else [train, test]
    present = {}
    for r in db.execute(
            "SELECT model_id, reader_id, array_agg(block) AS blocks FROM shift.features "
            "WHERE model_id = ANY($1) AND reader_id = ANY($2) GROUP BY model_id, reader_id",
            ["text[]", "text[]"], [models, [r["reader_id"] for r in readers]]):
        present[(r["model_id"], r["reader_id"])] = set(r["blocks"])
    planned = []
    for m in models:
        deps = []
        for reader in readers:
            rid = reader["reader_id"]
            want = set(range(tasks.num_blocks(reader["num_samples"], reader["block_size"])))
            lacking = sorted(want - present.get((m, rid), set()))
            if lacking:
                planned.append(("inference", tasks.inference_key(m, rid, lacking),
                                tasks.inference_payload(m, rid, lacking), []))
                deps.append(len(planned) - 1)
        planned.append(("proxy", tasks.proxy_key(proxy, params, m, test["reader_id"], train["reader_id"], fidelity),
                        tasks.proxy_payload(proxy, params, m, test["reader_id"], train["reader_id"], fidelity),
                        deps))
    return planned


def _translation(text):
    from .shiftql.translate import translate as shiftql_translate
    return shiftql_translate(text)


@_sql_errors
def translate(db, text):
    return _translation(text).sql


@_sql_errors
def query(db, text):
    translation = _translation(text)
    rows = db.execute(translation.sql)
    out = []
    for rank, row in enumerate(rows, start=1):
        row = dict(row)
        model_id, value = row.pop("model_id", None), row.pop("score", None)
        out.append((rank, model_id, value, json.dumps(row, default=str)))
    return out


def scorers_table():
    return [(s.name, s.proxy, s.higher_is_better,
             json.dumps({p.name: {"type": p.type.__name__, "default": p.default, "description": p.description}
                         for p in s.params}),
             s.description)
            for s in scorers.REGISTRY.values()]

