"""Entry points of the SQL functions; each PL/Python body calls exactly one of these.

ShiftError becomes a PostgreSQL error with its SQLSTATE, detail and hint.
"""

import functools
import json

from . import planner, registry, scorers
from .arguments import distinct_ids, json_object, known_ids, require_known, resolve_reader
from .db import Plpy
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, ShiftError, unknown


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
        raise unknown(kind, name or "", known_ids(db, kind))


@_sql_errors
def score(db, scorer_name, params, model_ids, test_reader, train_reader, top_k=None, descending=False):
    scorer = scorers.get_model_scorer(scorer_name or "")
    resolved = scorer.resolve(json_object(params, "scorer parameters"))
    if top_k is not None and top_k < 1:
        raise ShiftError("top_k must be at least 1, not %d" % top_k, INVALID_PARAMETER)
    test = resolve_reader(db, test_reader)
    train = resolve_reader(db, train_reader)
    models = distinct_ids(model_ids)
    if not models:
        return []
    require_known(db, "model", models)

    if scorer.kind == "finetune":
        # every model is fine-tuned: halving needs a proxy that is cheap on a data fraction
        from . import finetune
        values = finetune.scores(db, scorer, resolved, models, test, train)
    else:
        req = planner.Request(db, scorer, resolved, models, test, train, top_k, bool(descending))
        values = req.present(planner.run(req))
    if top_k is None:
        lost = [m for m in models if m not in values]
        if lost:
            raise ShiftError("proxy value of model %s is missing after its task finished" % lost[0], INTERNAL_ERROR)
        return [(m, values[m]) for m in models]
    from .halving import survivors
    return [(m, values[m]) for m in survivors(values, top_k, bool(descending))]


@_sql_errors
def translate(db, text):
    from .shiftql import run
    return run.translation(db, text).sql


@_sql_errors
def query(db, text):
    from .shiftql import run
    return run.run(db, text)


def scorers_table():
    return [(s.name, s.proxy, s.higher_is_better,
             json.dumps({p.name: {"type": p.type.__name__, "default": p.default, "description": p.description}
                         for p in s.params}),
             s.description, s.kind)
            for s in scorers.REGISTRY.values()]



# -- registration: more model sources and readers ---------------------------------------------------

@_sql_errors
def register_models(db, models, source, describe):
    return registry.register_models(db, models, source, True if describe is None else describe)


@_sql_errors
def describe_models(db, model_ids):
    return registry.describe_models(db, model_ids)


@_sql_errors
def register_npy_reader(db, *args):
    return registry.register_npy_reader(db, *args)


@_sql_errors
def register_csv_reader(db, *args):
    return registry.register_csv_reader(db, *args)


@_sql_errors
def register_imagefolder_reader(db, *args):
    return registry.register_imagefolder_reader(db, *args)


@_sql_errors
def register_tfds_reader(db, *args):
    return registry.register_tfds_reader(db, *args)


@_sql_errors
def register_hf_reader(db, *args):
    return registry.register_hf_reader(db, *args)


# -- SHiFT-QL views and explain ------------------------------------------------------------------------

@_sql_errors
def explain(db, text):
    from .shiftql import run
    return run.explain(db, text)


@_sql_errors
def drop_view(db, name, cascade):
    from .shiftql import run
    run.drop_view(db, name, bool(cascade))


@_sql_errors
def dataset_similarity(db, metric, params, reader_ids, target_reader):
    from . import datasim
    return datasim.dataset_similarity(db, metric, params, reader_ids, target_reader)


@_sql_errors
def benchmark_scores(db, scorer, params, model_ids, reader_ids):
    from . import datasim
    return datasim.benchmark_scores(db, scorer, params, model_ids, reader_ids)


# -- fine-tuning (seed 002 §4.3) ---------------------------------------------------------------------

@_sql_errors
def finetune(db, model_ids, train_reader, validation_reader, test_reader, params):
    from . import finetune as ft
    readers = [resolve_reader(db, r) for r in (train_reader, validation_reader, test_reader)]
    return ft.finetune(db, model_ids, *readers, params)
