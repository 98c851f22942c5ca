"""Fine-tuning as a task of the system: the ground truth of model search (seed 002 §3, §4.3).

`shift.finetune` asks workers to fine-tune models on a train reader, choose the
learning rate on a validation reader and measure accuracy on a test reader;
each outcome is one row of shift.finetune_results, keyed by the model, the three
readers and the protocol's resolved parameters, so a result is computed once
and read by everything after: the FineTune scorer, the meta-learned strategies
(seed 000 §3.2 Q5), and the regret of every other strategy. A row also records the
signature of the readers' data it was computed on: after the table behind a SQL
reader or a reader's file changes, the model is fine-tuned again and its row replaced.

The protocol itself runs in the worker (gpu_daemon.finetune); this module plans
the tasks, waits for them, and reads the table.
"""

from . import queue, scorers, tasks, versions
from .arguments import distinct_ids, json_object, require_known
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, NOT_READY, ShiftError

SCORER = "FineTune"


def resolve(params):
    """The protocol's parameters with defaults filled in; 22023 on a bad one."""
    return scorers.get(SCORER).resolve(json_object(params, "fine-tuning parameters"))


def _models(db, model_ids):
    models = distinct_ids(model_ids)
    if models:
        require_known(db, "model", models)
    return models


def _check_readers(train, validation, test):
    """The head has one output per class of the train reader; the others may use a subset of them."""
    known = set(train["classes"])
    for role, reader in (("validation", validation), ("test", test)):
        extra = [c for c in reader["classes"] if c not in known]
        if extra:
            raise ShiftError(
                "%s reader %s has classes that train reader %s lacks: %s" % (
                    role, reader["reader_id"], train["reader_id"], ", ".join(extra[:5])),
                INVALID_PARAMETER,
                detail="%s: %s; %s: %s" % (train["reader_id"], _classes(train), reader["reader_id"],
                                           _classes(reader)),
                hint="fine-tune on a train reader that has every class the model is evaluated on")


def _classes(reader):
    names = list(reader["classes"])
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _results(db, models, train, validation, test, params, signature):
    rows = db.execute(
        "SELECT model_id, test_accuracy, validation_accuracy, settings::text AS settings, seconds "
        "FROM shift.finetune_results WHERE model_id = ANY($1) AND train_reader = $2 AND validation_reader = $3 "
        "AND test_reader = $4 AND params = $5 AND source_signature = $6",
        ["text[]", "text", "text", "text", "jsonb", "text"],
        [models, train, validation, test, scorers.canonical_json(params), signature])
    return {r["model_id"]: r for r in rows}


def data_signature(db, train, validation, test):
    """One signature of the data behind the three readers as they are now (planner.data_signatures)."""
    from . import fingerprints, planner

    return fingerprints.content_signature(planner.data_signatures(db, [train, validation, test]))


def run(db, model_ids, train, validation, test, params):
    """({model_id: result row}, {model_id: load error}): every model's result, fine-tuning those without one.

    A model a worker cannot load is left out with a warning, as queries leave it out of a pool:
    one whose load error is recorded before anything is planned, one whose task finds it while
    this waits. A result of data that changed since is not read back: the model is fine-tuned again."""
    from . import planner

    models = _models(db, model_ids)
    _check_readers(train, validation, test)
    ids = (train["reader_id"], validation["reader_id"], test["reader_id"])
    signature = data_signature(db, train, validation, test)
    done = _results(db, models, *ids, params, signature)
    left_out = planner.unloadable(db, [m for m in models if m not in done])
    missing = [m for m in models if m not in done and m not in left_out]
    if missing:
        queue.require_read_committed(db)
        queue.require_live_worker(db)
        planned = [("finetune", tasks.finetune_key(m, *ids, params, signature),
                    tasks.finetune_payload(m, *ids, params, signature), []) for m in missing]
        # a version reads its sources: the rights on them are checked with the task's
        readers = set(ids).union(*(versions.source_ids(r) for r in (train, validation, test)))
        left_out.update(queue.wait(db, queue.enqueue(db, planned, models, readers), leave_out_unloadable=True))
        done = _results(db, models, *ids, params, signature)
        lost = [m for m in missing if m not in done and m not in left_out]
        if lost:
            raise ShiftError("fine-tuning result of model %s is missing after its task finished" % lost[0],
                             INTERNAL_ERROR, hint="its readers' data may have changed meanwhile; run it again")
    for m, why in sorted(left_out.items()):
        planner.warn_unloadable(db, m, why)
    return done, left_out


def finetune(db, model_ids, train, validation, test, params):
    """Rows of shift.finetune: (model_id, test_accuracy, validation_accuracy, settings, seconds)."""
    results, _ = run(db, model_ids, train, validation, test, resolve(params))
    return [(m, r["test_accuracy"], r["validation_accuracy"], r["settings"], r["seconds"])
            for m, r in ((m, results[m]) for m in _models(db, model_ids) if m in results)]


def scores(db, scorer, params, models, test, train):
    """The task-aware FineTune scorer: fine-tune on the train reader, choose and measure on the test reader.

    SHiFT-QL's `TESTED ON r TRAINED ON r` names two readers, so the test reader also
    chooses the learning rate, as it is the reader every proxy reports its value on.
    Returns the scores and {model_id: load error} of the models left out.
    """
    results, left_out = run(db, models, train, test, test, params)
    return {m: scorer.present(r["test_accuracy"]) for m, r in results.items()}, left_out


def benchmark_scores(db, scorer, params, models, readers):
    """(model_id, reader_id, score): the best recorded result of each model on each reader in scope.

    A result counts for a reader when the reader was its train, validation or test
    reader (seed 000 §3.2 Q5 ranks by what fine-tuning achieved on similar data);
    only results of the same protocol parameters count.
    """
    rows = db.execute(
        "SELECT f.model_id, r.reader_id, max(f.test_accuracy) AS accuracy FROM shift.finetune_results f "
        "JOIN unnest($2::text[]) AS r(reader_id) "
        "ON r.reader_id IN (f.train_reader, f.validation_reader, f.test_reader) "
        "WHERE f.model_id = ANY($1) AND f.params = $3 GROUP BY f.model_id, r.reader_id "
        "ORDER BY f.model_id, r.reader_id",
        ["text[]", "text[]", "jsonb"], [models, readers, scorers.canonical_json(params)])
    if not rows.nrows():
        raise ShiftError(
            "no fine-tuning results are recorded for %s on readers %s" % (scorer.name, ", ".join(readers[:5])),
            NOT_READY,
            detail="the meta-learned %s ranks models by shift.finetune_results with parameters %s"
                   % (scorer.name, scorers.canonical_json(params)),
            hint="record some with shift.finetune(models, train_reader, validation_reader, test_reader, params), "
                 "or rank by a proxy: ORDER BY Linear(lr=0.1) TESTED ON test_reader TRAINED ON train_reader")
    return [(r["model_id"], r["reader_id"], scorer.present(r["accuracy"])) for r in rows]
