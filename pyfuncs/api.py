"""Entry points of the SQL functions; each PL/Python body calls exactly one of these.

ShiftError becomes a PostgreSQL error with its SQLSTATE, detail and hint. SHiFT-QL
is imported on first use: sqlglot takes a quarter of a second to import, which a
session that only registers models or scores should not pay.
"""

import functools
import json

from . import datasim, jobs, planner, reader_registry, registry, scorers, versions
from . import finetune as finetuning
from .arguments import distinct_ids, json_object, require_known, resolve_reader
from .db import Plpy
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, ShiftError
from .halving import survivors


def _sql_errors(fn):
    @functools.wraps(fn)
    def wrapper(plpy, *args):
        try:
            return fn(Plpy(plpy), *args)
        except ShiftError as e:
            extra = {k: v for k, v in (("detail", e.detail), ("hint", e.hint)) if v}
            plpy.error(e.message, sqlstate=e.sqlstate, **extra)
    return wrapper


register_model = _sql_errors(registry.register_model)
create_mutable_reader = _sql_errors(versions.create_mutable_reader)
change_reader = _sql_errors(versions.change_reader)
add_to_reader = _sql_errors(versions.add_to_reader)
delete_from_reader = _sql_errors(versions.delete_from_reader)
reader_versions = _sql_errors(versions.reader_versions)
register_sql_reader = _sql_errors(reader_registry.register_sql_reader)
register_npz_reader = _sql_errors(reader_registry.register_npz_reader)
register_npy_reader = _sql_errors(reader_registry.register_npy_reader)
register_csv_reader = _sql_errors(reader_registry.register_csv_reader)
register_imagefolder_reader = _sql_errors(reader_registry.register_imagefolder_reader)
register_tfds_reader = _sql_errors(reader_registry.register_tfds_reader)
register_hf_reader = _sql_errors(reader_registry.register_hf_reader)
describe_models = _sql_errors(registry.describe_models)
drop_object = _sql_errors(registry.drop_object)


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
        values, left_out = finetuning.scores(db, scorer, resolved, models, test, train)
    else:
        req = planner.Request(db, scorer, resolved, models, test, train, top_k, bool(descending))
        values = req.present(planner.run(req))
        left_out = req.left_out
    models = [m for m in models if m not in left_out]
    if top_k is None:
        lost = [m for m in models if m not in values]
        if lost:
            raise ShiftError("proxy value of model %s is missing after its task finished" % lost[0], INTERNAL_ERROR)
        return [(m, values[m]) for m in models]
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


# -- SHiFT-QL views and explain ------------------------------------------------------------------------

@_sql_errors
def explain(db, text):
    from .shiftql import run
    return run.explain(db, text)


@_sql_errors
def drop_view(db, name, cascade):
    from .shiftql import run
    run.drop_view(db, name, bool(cascade))


dataset_similarity = _sql_errors(datasim.dataset_similarity)
benchmark_scores = _sql_errors(datasim.benchmark_scores)
task_distance = _sql_errors(datasim.task_distance)


# -- fine-tuning (seed 002 §4.3) ---------------------------------------------------------------------

@_sql_errors
def finetune(db, model_ids, train_reader, validation_reader, test_reader, params):
    readers = [resolve_reader(db, r) for r in (train_reader, validation_reader, test_reader)]
    return finetuning.finetune(db, model_ids, *readers, params)


# -- asynchronous jobs ----------------------------------------------------------------------------------

job_status = _sql_errors(jobs.status)
