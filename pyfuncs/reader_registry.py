"""Registration of readers (the DataReaders view of seed 000 §3.1): validate everything, then one INSERT.

A reader either lands whole or raises before writing anything. SQL readers are
checked by running their query's count; file readers by reading the file's
labels, so the classes and the sample count are known at registration.
"""

import csv
import hashlib
import json
import math
import os
import zipfile

from . import errors, files, npyfile, queue
from .errors import (DATA_EXCEPTION, DUPLICATE_OBJECT, INSUFFICIENT_PRIVILEGE, INTERNAL_ERROR, INVALID_PARAMETER,
                     UNDEFINED_FILE, ShiftError)
from .registry import normalise_input, parse_options


def _check_new_reader(db, reader_id, block_size):
    if not reader_id:
        raise ShiftError("reader id must not be empty", INVALID_PARAMETER)
    if block_size is None or block_size <= 0:
        raise ShiftError("block size must be positive, not %s" % block_size, INVALID_PARAMETER)
    if db.one("SELECT 1 AS x FROM shift.readers WHERE lower(reader_id) = lower($1)", ["text"], [reader_id]):
        raise ShiftError("reader %s is already registered" % reader_id, DUPLICATE_OBJECT,
                         hint="drop it first with shift.drop_reader(%r)" % reader_id)


def _insert_reader(db, reader_id, kind, source, options, input, num_samples, classes, block_size,
                   read_function=None):
    if num_samples == 0:
        raise ShiftError("reader %s has no samples" % reader_id, INVALID_PARAMETER)
    # users may not write shift.readers: the SECURITY DEFINER function makes the caller its owner
    row = dict(reader_id=reader_id, kind=kind, source=source, options=options, input=normalise_input(input),
               num_samples=num_samples, classes=classes, block_size=block_size)
    db.execute("SELECT shift._store_reader(current_user, $1, $2)", ["jsonb", "regprocedure"],
               [json.dumps(row), read_function])
    return num_samples


def _reader_function(db, reader_id, query):
    """The SECURITY DEFINER function of the caller that runs a SQL reader's query: what workers read.

    The worker is not a member of the reader's owner and has no superuser session underneath: it
    calls this function, which runs with the owner's privileges, and inside a SECURITY DEFINER
    function SET ROLE, RESET ROLE and set_config('role', ...) are refused by PostgreSQL itself.
    Labels come as text, as the reader's classes are. Returns the function's regprocedure text."""
    rows = db.execute("SELECT r.x FROM (%s) AS r LIMIT 0" % query)
    x_type = db.one("SELECT pg_catalog.format_type($1, $2) AS t", ["oid", "integer"],
                    [rows.coltypes()[0], rows.coltypmods()[0]])["t"]
    name = "shift_readers.%s" % db.one("SELECT quote_ident($1) AS n", ["text"], [reader_id])["n"]
    tag = "$shift_reader_%s$" % hashlib.sha1(query.encode()).hexdigest()[:12]
    if _own_stale_function(db, name):
        db.execute("DROP FUNCTION %s()" % name)
    db.execute("CREATE FUNCTION %s() RETURNS TABLE (x %s, y text) LANGUAGE sql STABLE SECURITY DEFINER "
               "SET search_path = pg_catalog, pg_temp AS %s SELECT r.x, r.y::text FROM (%s) AS r %s"
               % (name, x_type, tag, query, tag))
    db.execute("REVOKE ALL ON FUNCTION %s() FROM PUBLIC" % name)
    db.execute("GRANT EXECUTE ON FUNCTION %s() TO shift_worker" % name)
    return "%s()" % name


def _own_stale_function(db, name):
    """A reading function left by a reader of the caller's that is gone (dropped before functions were)."""
    row = db.one("SELECT p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS mine, "
                 "NOT EXISTS (SELECT FROM shift.readers r WHERE r.read_function = p.oid) AS stale "
                 "FROM pg_proc p WHERE p.oid = to_regprocedure($1)", ["text"], [name + "()"])
    return bool(row and row["mine"] and row["stale"])


def register_sql_reader(db, reader_id, query, input="Vision", options=None, block_size=1024):
    """A reader over a SQL query returning columns x and y, ordered by its own ORDER BY."""
    import sqlglot
    from sqlglot import exp

    from .shiftql import limits

    _check_new_reader(db, reader_id, block_size)
    limits.require_text_size(query or "", "reader query of %s" % reader_id)
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
    except RecursionError:
        raise ShiftError("reader query of %s is nested too deeply" % reader_id, errors.STATEMENT_TOO_COMPLEX,
                         hint="write fewer nested parentheses or sub-queries") from None
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
    _require_unique_order(db, reader_id, tree)
    # The query runs here once, with the caller's privileges, to count and list classes.
    wrapped = exp.select(exp.func("count", exp.Star()).as_("n"),
                         exp.func("array_agg", exp.Distinct(expressions=[exp.cast(exp.column("y"), "text")])).as_("c")
                         ).from_(tree.subquery("r"))
    row = db.one(wrapped.sql(dialect="postgres"))
    classes = sorted(row["c"] or [], key=label_order)
    if any(c is None for c in classes):
        raise ShiftError("reader %s has samples without a label" % reader_id, INVALID_PARAMETER)
    body = query.strip().rstrip(";").strip()
    return _insert_reader(db, reader_id, "sql", query, parse_options(options), input, row["n"], classes, block_size,
                          _reader_function(db, reader_id, body))


def _require_unique_order(db, reader_id, tree):
    """Refuse a SQL reader whose ORDER BY keys repeat in its rows: the order of tied rows, so its blocks, change
    from one read to the next.

    Why the rows are checked rather than the catalogue (a unique index or primary key covering the ORDER BY
    columns): the keys may be expressions, come from joins, views, functions or sub-queries, where no index
    says anything, and a unique index allows any number of NULLs, which tie. What the rows show now is what
    the blocks are cut from now. Keys that become duplicate later are caught by the blocks' fingerprints
    (fingerprints.py): a reordered block is recomputed, never served stale. NULL keys are equal here, as
    they are to ORDER BY.
    """
    from sqlglot import exp

    order = tree.args["order"].expressions
    select = tree if isinstance(tree, exp.Select) else None
    aliases = {e.alias_or_name: e for e in select.expressions} if select is not None else {}
    keys = []
    for o in order:
        key = o.this
        if isinstance(key, exp.Literal) and key.is_int and select is not None:
            position = int(key.name)
            if not 1 <= position <= len(select.expressions):
                return  # PostgreSQL reports the bad position itself when the query runs
            key = select.expressions[position - 1]
            key = key.this if isinstance(key, exp.Alias) else key
        elif isinstance(key, exp.Column) and not key.table and key.name in aliases and select is not None:
            # ORDER BY a bare name means the output column of that name first (as PostgreSQL resolves it)
            target = aliases[key.name]
            key = target.this if isinstance(target, exp.Alias) else target
        keys.append(key.copy())
    if select is not None:
        inner = select.copy()
        inner.set("order", None)
        inner.set("limit", None)
        inner.set("offset", None)
        names = ["_shift_order_%d" % i for i in range(len(keys))]
        extra = [k.as_(n) for k, n in zip(keys, names)]
        # DISTINCT and GROUP BY decide the rows by the whole select list: keep it, beside the keys
        grouped = select.args.get("distinct") or select.args.get("group")
        inner.set("expressions", ([e.copy() for e in select.expressions] if grouped else []) + extra)
        if select.args.get("limit") or select.args.get("offset"):
            return  # the rows kept depend on the order: checked as the blocks are read (fingerprints)
        source = inner.subquery("r")
        columns = [exp.column(n, "r") for n in names]
    else:  # a set operation: its ORDER BY names output columns
        inner = tree.copy()
        inner.set("order", None)
        source = inner.subquery("r")
        columns = [exp.column(k.name, "r") if isinstance(k, exp.Column) else k for k in keys]
    row_key = exp.Anonymous(this="ROW", expressions=columns)
    check = exp.select(exp.func("count", exp.Star()).as_("n"),
                       exp.Count(this=exp.Distinct(expressions=[row_key])).as_("distinct_keys")).from_(source)
    row = db.one(check.sql(dialect="postgres"))
    if row["n"] != row["distinct_keys"]:
        raise ShiftError("reader query of %s has an ORDER BY that is not unique" % reader_id, INVALID_PARAMETER,
                         detail="its %d rows have %d distinct ORDER BY keys (%s), so tied rows come in any order "
                                "and blocks of samples would not be stable"
                                % (row["n"], row["distinct_keys"], ", ".join(o.sql(dialect="postgres") for o in order)),
                         hint="order by a unique key, e.g. the primary key of the table: ORDER BY id")


def register_npz_reader(db, reader_id, path, x_key="x", y_key="y", input="Vision", options=None, block_size=1024):
    """A reader over arrays x_key, y_key of a .npz file the server can read."""
    _check_new_reader(db, reader_id, block_size)
    _require_file_access(db, reader_id, path, "npz")
    try:
        with open(path, "rb") as f:
            if not zipfile.is_zipfile(f):  # numpy would try it as a pickle, and say so
                raise ValueError("the file is not a zip archive, which every .npz is")
        archive = zipfile.ZipFile(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _npz_error(reader_id, path, e) from None
    with archive:
        _require_intact_npz(archive, path, reader_id)
        have = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        missing = [k for k in (x_key, y_key) if k not in have]
        if missing:
            raise ShiftError("npz file %s has no array %s" % (path, missing[0]), INVALID_PARAMETER,
                             hint="arrays in the file: %s" % (", ".join(have) or "none"))
        x_shape = _npz_member(archive, path, reader_id, x_key)[0]
        y = _npz_member(archive, path, reader_id, y_key, load=True)
    classes = _labels(reader_id, "npz file %s" % path, x_key, x_shape, y_key, y)
    opts = dict(parse_options(options), x_key=x_key, y_key=y_key)
    return _insert_reader(db, reader_id, "npz", path, opts, input, len(y), classes, block_size)


def _npz_error(reader_id, path, e):
    if isinstance(e, (FileNotFoundError, PermissionError)):
        return _file_error(reader_id, path, e)
    return ShiftError("file %s of reader %s is not a readable npz" % (path, reader_id), INVALID_PARAMETER,
                      detail=str(e) or "%s at its start" % type(e).__name__,
                      hint="write it with numpy.savez or numpy.savez_compressed")


def _require_intact_npz(archive, path, reader_id):
    """Every member's CRC-32 as the archive records it: numpy reads a member without checking it."""
    try:
        damaged = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
        damaged, why = "?", "%s: %s" % (type(e).__name__, e)
    else:
        why = "its CRC-32 does not match the archive's record"
    if damaged is not None:
        raise ShiftError("npz file %s of reader %s is damaged: member %s" % (path, reader_id, damaged),
                         DATA_EXCEPTION, detail=why, hint="write the file again; nothing was registered")


def _npz_member(archive, path, reader_id, key, load=False):
    """The checked header of one member (its shape, dtype), or with ``load`` the array itself."""
    import numpy as np

    what = "array %s of npz file %s of reader %s" % (key, path, reader_id)
    info = archive.getinfo(key + ".npy")
    try:
        with archive.open(info) as f:
            shape, fortran, dtype = npyfile.read_header(f, what)
            npyfile.require_length(what, info.file_size - f.tell(), shape, dtype)
            if not load:
                return shape, dtype
            data = np.frombuffer(f.read(), dtype=dtype)
    except npyfile.NpyError as e:
        raise ShiftError(str(e), INVALID_PARAMETER, hint="write it with numpy.savez; nothing was registered") \
            from None
    return data.reshape(shape, order="F" if fortran else "C")


def _labels(reader_id, where, x_name, x_shape, y_name, y):
    """The classes of 1-D labels with one entry per sample, in label order; a damaged label is refused."""
    import numpy as np

    if len(x_shape) == 0:
        raise ShiftError("%s: %s is a single value, not an array of samples" % (where, x_name), INVALID_PARAMETER)
    if y.ndim != 1 or len(y) != x_shape[0]:
        raise ShiftError("%s: %s has %d samples but %s has shape %s" % (where, x_name, x_shape[0], y_name,
                                                                         tuple(y.shape)),
                         INVALID_PARAMETER, hint="labels are a 1-D array with one entry per sample")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        first = int(np.argmax(~np.isfinite(y)))
        raise ShiftError("%s: label of sample %d is %s" % (where, first, y[first]), DATA_EXCEPTION,
                         hint="every sample needs a finite label; nothing was registered")
    return sorted({str(v) for v in y.tolist()}, key=label_order)


def label_order(label):
    """Numeric labels in numeric order, then text labels in text order."""
    try:
        return (0, float(label), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(label))


# -- files the server reads ---------------------------------------------------------------------

def _require_file_access(db, reader_id, path, what):
    """Registration reads the file as the server's OS user: only roles trusted with server files may ask."""
    if not path or not os.path.isabs(path):
        raise ShiftError("%s path of %s must be absolute, not %r" % (what, reader_id, path), INVALID_PARAMETER)
    row = db.one("SELECT pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS ok")
    if not row["ok"]:
        raise ShiftError("permission denied to read server file %s for reader %s" % (path, reader_id), INSUFFICIENT_PRIVILEGE,
                         detail="readers over files are read with the server's and the workers' file access",
                         hint="a superuser can GRANT pg_read_server_files TO the role, or use a SQL reader")


def _file_error(reader_id, path, e):
    if isinstance(e, FileNotFoundError):
        return ShiftError("file %s of reader %s does not exist" % (path, reader_id), UNDEFINED_FILE)
    if isinstance(e, PermissionError):
        return ShiftError("file %s of reader %s is not readable by the server" % (path, reader_id), INSUFFICIENT_PRIVILEGE,
                          hint="make it readable by the database's OS user")
    return ShiftError("file %s of reader %s cannot be read" % (path, reader_id), INVALID_PARAMETER,
                      detail=str(e).splitlines()[0] if str(e) else type(e).__name__)


def _source_error(e):
    """A file source's own complaint: a missing file is 58P01, anything else about it a bad parameter."""
    return ShiftError(str(e), UNDEFINED_FILE if isinstance(e, files.MissingSource) else INVALID_PARAMETER)


def _classes_or_error(reader_id, labels):
    if "" in labels or None in labels:
        raise ShiftError("reader %s has samples without a label" % reader_id, INVALID_PARAMETER)
    return sorted(labels, key=label_order)


def _input_or(input, default):
    return normalise_input(input) if input else default


# -- more readers ------------------------------------------------------------------------------------

def register_npy_reader(db, reader_id, x_path, y_path, input="Vision", options=None, block_size=1024):
    """A reader over two .npy files: samples (first axis) and labels."""
    import numpy as np

    _check_new_reader(db, reader_id, block_size)
    for path in (x_path, y_path):
        _require_file_access(db, reader_id, path, "npy")
    x_shape = _npy_header(reader_id, x_path)[0]
    y = np.array(_npy_map(reader_id, y_path))
    classes = _labels(reader_id, "npy files of %s" % reader_id, x_path, x_shape, y_path, y)
    opts = dict(parse_options(options), y_path=y_path)
    return _insert_reader(db, reader_id, "npy", x_path, opts, _input_or(input, "Vision"), len(y), classes,
                          block_size)


def _npy_header(reader_id, path):
    """(shape, fortran, dtype, data offset) of a .npy file whose length matches its header."""
    what = "npy file %s of reader %s" % (path, reader_id)
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = npyfile.read_header(f, what)
            offset = f.tell()
            npyfile.require_length(what, os.fstat(f.fileno()).st_size - offset, shape, dtype)
    except npyfile.NpyError as e:
        raise ShiftError(str(e), INVALID_PARAMETER, hint="write it with numpy.save; nothing was registered") \
            from None
    except OSError as e:
        raise _file_error(reader_id, path, e) from None
    return shape, fortran, dtype, offset


def _npy_map(reader_id, path):
    import numpy as np

    shape, fortran, dtype, offset = _npy_header(reader_id, path)
    if not npyfile.data_bytes(shape, dtype):
        return np.empty(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def register_csv_reader(db, reader_id, path, label_column="label", x_columns=None, input=None, options=None,
                        block_size=1024):
    """A reader over a CSV file with a header row, in file order.

    The sample is the numeric columns other than the label (Tabular, the default), or a
    single column holding text (Text) or an image path relative to the file (Vision);
    without ``input`` the first row decides. Options: ``delimiter``, ``quotechar``,
    ``encoding``; a name ending in .gz is read gunzipped.
    """
    _check_new_reader(db, reader_id, block_size)
    _require_file_access(db, reader_id, path, "csv")
    opts = parse_options(options)
    try:
        n, labels, names, first = files.csv_summary(path, label_column or "label", list(x_columns or []) or None,
                                                    opts)
    except files.SourceError as e:
        raise _source_error(e) from None
    except (OSError, EOFError, UnicodeDecodeError, LookupError, csv.Error) as e:  # EOFError: a cut .gz
        raise _file_error(reader_id, path, e) from None
    kind = _input_or(input, files.guess_csv_input(first, len(names)))
    if kind in ("Vision", "Text") and len(names) != 1:
        raise ShiftError("csv reader %s with input %s needs exactly one sample column, not %d"
                         % (reader_id, kind, len(names)), INVALID_PARAMETER, hint="name it in x_columns")
    if kind == "Tabular":
        for name, value in zip(names, first):
            try:
                if not math.isfinite(float(value)):
                    raise ShiftError("column %s of csv file %s holds %r in its first row, not a finite number"
                                     % (name, path, value), DATA_EXCEPTION,
                                     hint="fill in the missing values; nothing was registered")
            except ValueError:
                raise ShiftError("column %s of csv file %s holds %r, not a number" % (name, path, value),
                                 INVALID_PARAMETER,
                                 hint="list the numeric columns in x_columns, or set input to Text or Vision") \
                    from None
    opts.update(label_column=label_column or "label", x_columns=names)
    return _insert_reader(db, reader_id, "csv", path, opts, kind, n, _classes_or_error(reader_id, labels),
                          block_size)


def register_imagefolder_reader(db, reader_id, path, options=None, block_size=1024):
    """A reader over image files in one subfolder per class (torchvision ImageFolder layout and order)."""
    _check_new_reader(db, reader_id, block_size)
    _require_file_access(db, reader_id, path, "image folder")
    opts = parse_options(options)
    try:
        counts = files.imagefolder_counts(path, files.extensions(opts))
    except files.SourceError as e:
        raise _source_error(e) from None
    except OSError as e:
        raise _file_error(reader_id, path, e) from None
    if not counts:
        raise ShiftError("image folder %s has no class subfolders" % path, INVALID_PARAMETER,
                         hint="put each class's images in a subfolder named after the class")
    return _insert_reader(db, reader_id, "imagefolder", path, opts, "Vision", sum(n for _, n in counts),
                          [c for c, _ in counts], block_size)


def register_tfds_reader(db, reader_id, path, split="train", x_key=None, y_key=None, input=None, options=None,
                         block_size=1024):
    """A reader over one split of a TFDS prepared directory (``<data_dir>/<name>/<version>``).

    The sample and label features default to the dataset's supervised keys; the label
    must be a ClassLabel, whose names become the classes in index order.
    """
    _check_new_reader(db, reader_id, block_size)
    _require_file_access(db, reader_id, path, "tfds")
    try:
        info = files.tfds_info(path)
    except files.SourceError as e:
        raise _source_error(e) from None
    except OSError as e:
        raise _file_error(reader_id, path, e) from None
    split = split or "train"
    if split not in info["splits"]:
        raise ShiftError("tfds dataset %s has no split %r" % (path, split), INVALID_PARAMETER,
                         hint="its splits are %s" % ", ".join(info["splits"]))
    feats = info["features"]
    sup = info["supervised"]
    x_key = x_key or (sup[0] if len(sup) == 2 else "image")
    y_key = y_key or (sup[1] if len(sup) == 2 else "label")
    for key in (x_key, y_key):
        if key not in feats:
            raise ShiftError("tfds dataset %s has no feature %r" % (path, key), INVALID_PARAMETER,
                             hint="its features are %s" % ", ".join(feats))
    if files.tfds_feature_kind(feats[y_key]) != "ClassLabel":
        raise ShiftError("label feature %s of tfds dataset %s is not a ClassLabel" % (y_key, path), INVALID_PARAMETER,
                         hint="name a ClassLabel feature in y_key")
    try:
        classes = files.tfds_class_names(path, y_key, feats[y_key])
    except files.SourceError as e:
        raise _source_error(e) from None
    except OSError as e:
        raise _file_error(reader_id, path, e) from None
    x_kind = files.tfds_feature_kind(feats[x_key])
    guessed = {"Image": "Vision", "Text": "Text"}.get(x_kind, "Tabular")
    opts = dict(parse_options(options), split=split, x_key=x_key, y_key=y_key, labels="index")
    return _insert_reader(db, reader_id, "tfds", path, opts, _input_or(input, guessed), info["splits"][split],
                          classes, block_size)


def register_hf_reader(db, reader_id, path, x_column=None, y_column="label", split=None, input=None, options=None,
                       block_size=1024):
    """A reader over a Hugging Face ``datasets`` dataset written by ``save_to_disk``.

    Counting its rows and listing its labels needs pyarrow and datasets, which the
    server does not have, so a worker does it: registration enqueues a describe task,
    waits for it like a query does (a live worker is needed; statement_timeout and cancel
    work), and then inserts the row in the caller's transaction. A ClassLabel label
    column gives the classes in index order; other labels are mapped by their text.
    """
    _check_new_reader(db, reader_id, block_size)
    _require_file_access(db, reader_id, path, "dataset")
    opts = dict(parse_options(options), y_column=y_column or "label")
    if x_column:
        opts["x_column"] = x_column
    if split:
        opts["split"] = split
    result = describe_reader(db, "hf", path, opts)
    opts.update(x_column=result["x_column"], y_column=result["y_column"])
    if result.get("labels") == "index":
        opts["labels"] = "index"
    return _insert_reader(db, reader_id, "hf", path, opts, _input_or(input, result.get("input") or "Vision"),
                          result["num_samples"], result["classes"], block_size)


def describe_reader(db, kind, source, options):
    """Ask a worker for a reader's sample count and classes; wait for the answer."""
    queue.require_read_committed(db)
    queue.require_live_worker(db)
    spec = {"kind": kind, "source": source, "options": options}
    key = "describe/reader/%s" % hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    ids = queue.enqueue(db, [("describe", key, {"reader": spec}, [])], [], [])
    queue.wait(db, ids)
    row = db.one("SELECT payload->'result' AS r FROM shift.tasks WHERE task_id = $1", ["bigint"], [ids[0]])
    result = json.loads(row["r"]) if row and isinstance(row["r"], str) else (row or {}).get("r")
    if not result:
        raise ShiftError("the describe task of %s finished without an answer" % source, INTERNAL_ERROR)
    if "error" in result:  # the worker's own ShiftError: why it cannot read the reader
        e = result["error"]
        raise ShiftError(e["message"], e["sqlstate"], detail=e.get("detail"), hint=e.get("hint"))
    return result


# -- bulk registration and the describe step ------------------------------------------------------
