"""Describe tasks: what only a worker can find out about a registered model or a reader.

Registration runs inside PostgreSQL, without the frameworks, and often without the
network or the files the workers have (see ``pyfuncs.registry.register_models``). A
``describe`` task asks a worker:

* ``{"model_id": m}``: load model ``m``; record what the library knows about it in its
  ``shift.models`` row (:func:`record_model`), or why it cannot be loaded
  (:func:`record_failure`). A model that fails to load is an answer, not a failed task.
* ``{"reader": {"kind", "source", "options"}}``: count a reader's samples and list its
  classes where the server cannot (Hugging Face datasets need pyarrow); the answer is
  written to the task's ``payload.result`` for the registration that waits on it. Why a
  reader cannot be read (a ShiftError: a missing path, a missing column...) is an answer
  too, ``{"error": {...}}``, which the registration raises with its SQLSTATE.
"""

from __future__ import annotations

import json
import logging

from pyfuncs.errors import ShiftError

from . import readers
from .models import LoadedModel, load_model

log = logging.getLogger("shift.describe")

# Measured values fill what the registration left empty; the modality, when the library
# knows it, replaces the registration's default.
_RECORD = """
UPDATE shift.models SET
    num_params = coalesce(num_params, %(num_params)s),
    feature_dim = coalesce(feature_dim, %(feature_dim)s),
    input_size = coalesce(input_size, %(input_size)s),
    num_classes = coalesce(num_classes, %(num_classes)s),
    input_mean = coalesce(input_mean, %(input_mean)s),
    input_std = coalesce(input_std, %(input_std)s),
    input = coalesce(%(input)s, input),
    upstream_dataset = coalesce(upstream_dataset, %(upstream_dataset)s),
    upstream_accuracy = coalesce(upstream_accuracy, %(upstream_accuracy)s),
    loaded_at = now(),
    load_error = NULL
WHERE model_id = %(model_id)s
"""


def record_model(conn, model_id: str, model: LoadedModel) -> None:
    """Fill a model's metadata from a successful load and clear its load error."""
    conn.execute(_RECORD, dict(model.describe(), model_id=model_id))


def record_failure(conn, model_id: str, error: BaseException | str) -> None:
    """Record why a model cannot be loaded; it stays registered and is tried again later."""
    text = error if isinstance(error, str) else "%s: %s" % (type(error).__name__, error)
    conn.execute("UPDATE shift.models SET load_error = %s WHERE model_id = %s", (text[:2000], model_id))


def model_row(conn, model_id: str) -> dict | None:
    import psycopg

    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM shift.models WHERE model_id = %s", (model_id,)).fetchone()


def describe_model(conn, model_id: str, device: str = "cpu", load=None) -> dict:
    """Load one model, record the outcome, and return ``{"model_id", "status", "error"}``.

    ``load(model_id) -> LoadedModel`` lets a worker reuse its model cache; by default the
    row is read and the model loaded here.
    """
    try:
        if load is not None:
            model = load(model_id)
        else:
            row = model_row(conn, model_id)
            if row is None:
                return {"model_id": model_id, "status": "dropped", "error": None}
            model = load_model(row, device)
    except Exception as e:  # noqa: BLE001 -- any failure to load is the answer
        log.info("model %s cannot be loaded: %s", model_id, e)
        record_failure(conn, model_id, e)
        return {"model_id": model_id, "status": "failed", "error": "%s: %s" % (type(e).__name__, e)}
    record_model(conn, model_id, model)
    return {"model_id": model_id, "status": "ready", "error": None}


def describe_reader(spec: dict) -> dict:
    """``{"num_samples", "classes", ...}`` of a reader the server cannot count."""
    kind, source, options = spec["kind"], spec["source"], dict(spec.get("options") or {})
    if kind == "hf":
        result = readers.describe_hf(source, options)
        if result.pop("by_index", False):
            result["labels"] = "index"
        return result
    raise ValueError("readers of kind %s are counted by the server at registration, not by a worker" % kind)


def run(conn, task_id: int, payload: dict, device: str = "cpu", load=None) -> None:
    """Run one describe task (the worker's entry point); ``conn`` is an autocommit connection."""
    if "model_id" in payload:
        describe_model(conn, payload["model_id"], device, load)
    elif "reader" in payload:
        try:
            result = describe_reader(payload["reader"])
        except ShiftError as e:  # a reader the worker cannot read is an answer: registration raises it as is
            result = {"error": {"message": e.message, "sqlstate": e.sqlstate, "detail": e.detail, "hint": e.hint}}
        conn.execute("UPDATE shift.tasks SET payload = payload || jsonb_build_object('result', %s::jsonb) "
                     "WHERE task_id = %s", (json.dumps(result), task_id))
    else:
        raise ValueError("describe task %s names neither a model nor a reader" % task_id)
