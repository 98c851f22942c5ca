"""Registration of models and readers: validate everything, then one INSERT.

A registration either lands whole or raises before writing anything, so no
half-registered object remains.
"""

import json
import os

from . import errors
from .errors import DUPLICATE_OBJECT, INVALID_PARAMETER, UNDEFINED_FILE, ShiftError

SOURCES = {
    "timm": "pytorch",
    "torchvision": "pytorch",
    "torchscript": "pytorch",
    "hf": "pytorch",
    "tfhub": "tensorflow",
    "onnx": "onnx",
}
INPUTS = {"vision": "Vision", "image": "Vision", "text": "Text", "tabular": "Tabular", "audio": "Audio"}


def normalise_input(value):
    try:
        return INPUTS[(value or "").strip().lower()]
    except KeyError:
        raise ShiftError("unknown input modality %r" % value, INVALID_PARAMETER,
                         hint="use one of Vision, Text, Tabular, Audio") from None


def parse_options(options):
    if options is None:
        return {}
    value = json.loads(options) if isinstance(options, str) else options
    if not isinstance(value, dict):
        raise ShiftError("options must be a json object, not %s" % type(value).__name__, INVALID_PARAMETER)
    return value


def register_model(db, model_id, source, locator, checkpoint=None, input="Vision", upstream_dataset=None,
                   upstream_accuracy=None, num_params=None, feature_dim=None, input_size=None,
                   architecture=None, options=None):
    if not model_id:
        raise ShiftError("model id must not be empty", INVALID_PARAMETER)
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
    db.execute(
        "INSERT INTO shift.models (model_id, source, locator, checkpoint, input, framework, architecture, "
        "num_params, feature_dim, input_size, upstream_dataset, upstream_accuracy, options) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        ["text", "text", "text", "text", "text", "text", "text", "bigint", "integer", "integer", "text",
         "double precision", "jsonb"],
        [model_id, src, locator, checkpoint, normalise_input(input), SOURCES[src], architecture, num_params,
         feature_dim, input_size, upstream_dataset, upstream_accuracy, json.dumps(opts)])
    return model_id


def _check_new_reader(db, reader_id, block_size):
    if not reader_id:
        raise ShiftError("reader id must not be empty", INVALID_PARAMETER)
    if block_size is None or block_size <= 0:
        raise ShiftError("block size must be positive, not %s" % block_size, INVALID_PARAMETER)
    if db.one("SELECT 1 AS x FROM shift.readers WHERE lower(reader_id) = lower($1)", ["text"], [reader_id]):
        raise ShiftError("reader %s is already registered" % reader_id, DUPLICATE_OBJECT,
                         hint="drop it first with shift.drop_reader(%r)" % reader_id)


def _insert_reader(db, reader_id, kind, source, options, input, num_samples, classes, block_size):
    if num_samples == 0:
        raise ShiftError("reader %s has no samples" % reader_id, INVALID_PARAMETER)
    db.execute(
        "INSERT INTO shift.readers (reader_id, kind, source, options, input, num_samples, classes, block_size) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ["text", "text", "text", "jsonb", "text", "bigint", "text[]", "integer"],
        [reader_id, kind, source, json.dumps(options), normalise_input(input), num_samples, classes, block_size])
    return num_samples


def register_sql_reader(db, reader_id, query, input="Vision", options=None, block_size=1024):
    """A reader over a SQL query returning columns x and y, ordered by its own ORDER BY."""
    import sqlglot
    from sqlglot import exp

    _check_new_reader(db, reader_id, block_size)
    try:
        tree = sqlglot.parse_one(query or "", read="postgres")
    except sqlglot.errors.ParseError as e:
        first = e.errors[0] if e.errors else {}
        raise ShiftError("reader query of %s does not parse" % reader_id, errors.SYNTAX_ERROR,
                         detail="line %s, column %s: %s" % (first.get("line"), first.get("col"),
                                                            first.get("description", "syntax error"))) from None
    except sqlglot.errors.SqlglotError as e:
        raise ShiftError("reader query of %s does not parse" % reader_id, errors.SYNTAX_ERROR,
                         detail=str(e).splitlines()[0]) from None
    if not isinstance(tree, exp.Query):
        raise ShiftError("reader query of %s must be a SELECT" % reader_id, INVALID_PARAMETER)
    if not tree.args.get("order"):
        raise ShiftError("reader query of %s has no ORDER BY" % reader_id, INVALID_PARAMETER,
                         hint="order the samples by a unique key so that blocks of samples can be cached")
    names = set(tree.named_selects)
    if not {"x", "y"} <= names:
        raise ShiftError("reader query of %s must return columns x and y" % reader_id, INVALID_PARAMETER,
                         detail="it returns %s" % ", ".join(sorted(names)) or "nothing",
                         hint="alias the sample column AS x and the label column AS y")
    # The query runs here once, with the caller's privileges, to count and list classes.
    wrapped = exp.select(exp.func("count", exp.Star()).as_("n"),
                         exp.func("array_agg", exp.Distinct(expressions=[exp.cast(exp.column("y"), "text")])).as_("c")
                         ).from_(tree.subquery("r"))
    row = db.one(wrapped.sql(dialect="postgres"))
    classes = sorted(row["c"] or [], key=_label_key)
    if any(c is None for c in classes):
        raise ShiftError("reader %s has samples without a label" % reader_id, INVALID_PARAMETER)
    return _insert_reader(db, reader_id, "sql", query, parse_options(options), input, row["n"], classes, block_size)


def register_npz_reader(db, reader_id, path, x_key="x", y_key="y", input="Vision", options=None, block_size=1024):
    """A reader over arrays x_key, y_key of a .npz file the server can read."""
    import numpy as np

    _check_new_reader(db, reader_id, block_size)
    if not path or not os.path.isabs(path):
        raise ShiftError("npz path of %s must be absolute, not %r" % (reader_id, path), INVALID_PARAMETER)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise ShiftError("file %s of reader %s does not exist" % (path, reader_id), UNDEFINED_FILE) from None
    except PermissionError:
        raise ShiftError("file %s of reader %s is not readable by the server" % (path, reader_id), "42501",
                         hint="make it readable by the database's OS user") from None
    except (OSError, ValueError) as e:
        raise ShiftError("file %s of reader %s is not a readable npz" % (path, reader_id), INVALID_PARAMETER,
                         detail=str(e)) from None
    with data:
        missing = [k for k in (x_key, y_key) if k not in data.files]
        if missing:
            raise ShiftError("npz file %s has no array %s" % (path, missing[0]), INVALID_PARAMETER,
                             hint="arrays in the file: %s" % ", ".join(data.files))
        y = np.asarray(data[y_key])
        n_x = data[x_key].shape[0]
    if y.ndim != 1 or len(y) != n_x:
        raise ShiftError("npz file %s: %s has %d samples but %s has shape %s" % (path, x_key, n_x, y_key, y.shape),
                         INVALID_PARAMETER)
    classes = sorted({str(v) for v in y.tolist()}, key=_label_key)
    opts = dict(parse_options(options), x_key=x_key, y_key=y_key)
    return _insert_reader(db, reader_id, "npz", path, opts, input, len(y), classes, block_size)


def _label_key(label):
    """Numeric labels in numeric order, then text labels in text order."""
    try:
        return (0, float(label), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(label))
