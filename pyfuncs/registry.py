"""Registration of models (the Models view of seed 000 §3.1): validate everything, then one INSERT.

A registration either lands whole or raises before writing anything, so no
half-registered object remains. Bulk registration (:func:`register_models`) applies
this per model and reports each model's outcome instead of stopping at the first.
"""

import json
import os
import re

from . import errors, queue
from .arguments import distinct_ids, json_object, missing, require_known
from .errors import DUPLICATE_OBJECT, INVALID_PARAMETER, ShiftError

SOURCES = {
    "timm": "pytorch",
    "torchvision": "pytorch",
    "torchscript": "pytorch",
    "hf": "pytorch",
    "tfhub": "tensorflow",
    "onnx": "onnx",
}
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$")  # the CHECK of shift.models.model_id
INPUTS = {"vision": "Vision", "image": "Vision", "text": "Text", "tabular": "Tabular", "audio": "Audio"}


def normalise_input(value):
    try:
        return INPUTS[(value or "").strip().lower()]
    except KeyError:
        raise ShiftError("unknown input modality %r" % value, INVALID_PARAMETER,
                         hint="use one of Vision, Text, Tabular, Audio") from None


def parse_options(options):
    return json_object(options, "options")


def drop_object(db, kind, name):
    """shift.drop_model / shift.drop_reader: forget a model or reader and, by cascade, all cached for it.

    Only the owner (or an admin) may; shift._drop_object checks it and deletes (privileges.sql)."""
    if not db.one("SELECT shift._drop_object(current_user, $1, $2) AS found", ["text", "text"], [kind, name])["found"]:
        raise missing(db, kind, name)


def register_model(db, model_id, source, locator, checkpoint=None, input="Vision", upstream_dataset=None,
                   upstream_accuracy=None, num_params=None, feature_dim=None, input_size=None,
                   architecture=None, options=None):
    if not model_id:
        raise ShiftError("model id must not be empty", INVALID_PARAMETER)
    if not MODEL_ID.match(model_id):
        raise ShiftError("model id %r may hold letters, digits and _.:/@+- and must start with a letter or digit"
                         % model_id, INVALID_PARAMETER)
    src = (source or "").strip().lower()
    if src not in SOURCES:
        raise errors.unknown("model source", source or "", list(SOURCES))
    if not locator:
        raise ShiftError("model %s needs a locator" % model_id, INVALID_PARAMETER,
                         hint="a hub name (timm, torchvision, hf, tfhub) or a file path (torchscript, onnx)")
    if upstream_accuracy is not None and not 0.0 <= upstream_accuracy <= 1.0:
        raise ShiftError("upstream accuracy of %s is %s, outside [0, 1]" % (model_id, upstream_accuracy),
                         INVALID_PARAMETER, hint="give accuracies as fractions, e.g. 0.763")
    if db.one("SELECT 1 AS x FROM shift.models WHERE model_id = $1", ["text"], [model_id]):
        raise ShiftError("model %s is already registered" % model_id, DUPLICATE_OBJECT,
                         hint="drop it first with shift.drop_model(%r)" % model_id)
    opts = parse_options(options)
    # users may not write shift.models: the SECURITY DEFINER function checks who may register what
    row = dict(model_id=model_id, source=src, locator=locator, checkpoint=checkpoint, input=normalise_input(input),
               framework=SOURCES[src], architecture=architecture, num_params=num_params, feature_dim=feature_dim,
               input_size=input_size, upstream_dataset=upstream_dataset, upstream_accuracy=upstream_accuracy,
               options=opts)
    db.execute("SELECT shift._store_model(current_user, $1)", ["jsonb"], [json.dumps(row)])
    return model_id


MODEL_FIELDS = ("model_id", "source", "locator", "checkpoint", "input", "upstream_dataset", "upstream_accuracy",
                "num_params", "feature_dim", "input_size", "architecture", "options")


def model_id_from_locator(locator):
    """A model id from a locator: a URL without scheme and host, a file or folder name, else the locator.

    ``https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5`` gives
    ``google/imagenet/resnet_v2_50/feature_vector/5``; ``/models/encoder.onnx`` gives ``encoder``.
    """
    text = (locator or "").strip()
    url = re.match(r"^[a-z][a-z0-9+.-]*://[^/]+/(.*)$", text, re.I)
    if url:
        text = re.sub(r"^models/", "", url.group(1)).strip("/")
    elif text.startswith(("/", "./", "../", "~")):
        text = os.path.basename(text.rstrip("/"))
        stem, ext = os.path.splitext(text)
        text = stem if ext.lower() in (".onnx", ".pt", ".pth", ".ts", ".jit", ".pb", ".bin", ".safetensors") else text
    text = re.sub(r"[^A-Za-z0-9_.:/@+-]", "_", text)
    return re.sub(r"^[^A-Za-z0-9]+", "", text)


def describe_key(model_id):
    return "describe/model/%s" % model_id


def register_models(db, models, source=None, describe=True):
    """Register many models in one call; return (model_id, status, error) per entry.

    ``models`` is a json array whose entries are objects with ``shift.register_model``'s
    argument names, or plain locator strings; ``source`` applies to entries without one,
    and an entry without ``model_id`` gets one from its locator (:func:`model_id_from_locator`).

    Why registration and reachability are two steps: registration runs inside the
    database, which has neither the frameworks nor, often, the network or the files a
    worker has, so it can only check what the row says (source, locator, values, a free
    id). Each entry is registered in a subtransaction of its own, so a bad entry is
    reported with status ``rejected`` and its error while the others land. Whether a
    model can be *reached* (its hub handle resolves, its file exists on the workers, the
    library can build it) only a worker can tell, by loading it. So each registered model
    also gets a ``describe`` task (status ``pending``), committed with the rows: a worker
    loads the model, fills in the metadata the library knows (parameters, feature
    dimension, input size and normalisation, modality, classes, upstream dataset and
    accuracy where given) and records ``loaded_at``, or records why it failed in
    ``shift.models.load_error``. A model that cannot be reached yet stays registered:
    ``shift.model_status`` shows each model as pending, ready or failed with the reason,
    and ``shift.describe_models()`` tries the failed ones again and waits for the answer.
    """
    entries = json.loads(models) if isinstance(models, str) else models
    if not isinstance(entries, list):
        raise ShiftError("models must be a json array, not %s" % type(entries).__name__, INVALID_PARAMETER,
                         hint='e.g. \'[{"model_id": "m1", "source": "timm", "locator": "resnet18"}]\'')
    out = []
    queued = False
    for i, entry in enumerate(entries, start=1):
        if isinstance(entry, str):
            entry = {"locator": entry}
        if not isinstance(entry, dict):
            out.append((None, "rejected", "entry %d is %s, not an object or a locator string"
                        % (i, type(entry).__name__)))
            continue
        args = dict(entry)
        args.setdefault("source", source)
        if not args.get("model_id"):
            args["model_id"] = model_id_from_locator(args.get("locator"))
        model_id = args["model_id"]
        unknown = sorted(set(args) - set(MODEL_FIELDS))
        if unknown:
            out.append((model_id, "rejected", "entry %d has unknown key %s; keys are %s"
                        % (i, unknown[0], ", ".join(MODEL_FIELDS))))
            continue
        if not args.get("input"):
            args["input"] = "Vision"
        try:
            with db.plpy.subtransaction():
                register_model(db, **args)
                if describe:
                    db.execute("SELECT shift._queue_describe($1)", ["text[]"], [[model_id]])
        except ShiftError as e:
            out.append((model_id, "rejected", e.message + ("; " + e.hint if e.hint else "")))
        except db.plpy.SPIError as e:
            detail = getattr(e, "detail", None)
            out.append((model_id, "rejected", str(e).splitlines()[0] + (": " + detail if detail else "")))
        else:
            queued = queued or describe
            out.append((model_id, "pending" if describe else "registered", None))
    if queued:
        db.execute("SELECT pg_notify('shift_tasks', '')")
    return out


def describe_models(db, model_ids=None):
    """Load models on a worker now and return (model_id, status, error) for each.

    Without ids: every model not loaded yet or whose last load failed. Waits like a
    query (a live worker is needed; statement_timeout and cancel work). A model that
    fails to load is reported, not raised: its status is ``failed`` and the error says why.
    """
    queue.require_read_committed(db)
    if model_ids is None:
        rows = db.execute("SELECT model_id FROM shift.models WHERE loaded_at IS NULL OR load_error IS NOT NULL "
                          "ORDER BY model_id")
        ids = [r["model_id"] for r in rows]
    else:
        ids = distinct_ids(model_ids)
        require_known(db, "model", ids)
    if not ids:
        return []
    queue.require_live_worker(db)
    planned = [("describe", describe_key(m), {"model_id": m}, []) for m in ids]
    queue.wait(db, queue.enqueue(db, planned, ids, []))
    rows = db.execute("SELECT model_id, status, error FROM shift.model_status WHERE model_id = ANY($1)",
                      ["text[]"], [ids])
    got = {r["model_id"]: (r["model_id"], r["status"], r["error"]) for r in rows}
    return [got[m] for m in ids if m in got]
