"""Arguments of the SQL functions, checked in one place: JSON objects, id lists, the models and readers named.

Every check raises a ShiftError (22023 for a malformed value, 42704 naming the
closest known object for an unknown id), so a bad argument fails before
anything is enqueued or written.
"""

import json

from .errors import INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER, ShiftError, unknown

# the registry's tables by the kind of object an id names; fixed names, never user input
TABLES = {"model": ("shift.models", "model_id"), "reader": ("shift.readers", "reader_id")}


def json_object(value, what="parameters"):
    """A jsonb argument (text or already decoded) as a dict; NULL is {}."""
    if value is None:
        return {}
    try:
        decoded = json.loads(value) if isinstance(value, str) else value
    except ValueError as error:
        raise ShiftError("%s are not valid json: %s" % (what, error), INVALID_PARAMETER) from None
    if not isinstance(decoded, dict):
        raise ShiftError("%s must be a json object, not %s" % (what, type(decoded).__name__), INVALID_PARAMETER)
    return decoded


def distinct_ids(values):
    """The ids of an array argument in their first order, NULLs and repeats left out."""
    return list(dict.fromkeys(v for v in (values or []) if v is not None))


def known_ids(db, kind):
    table, column = TABLES[kind]
    return [r["id"] for r in db.execute("SELECT %s AS id FROM %s" % (column, table))]


def require_known(db, kind, ids):
    """Raise 42704 for the first of `ids` ('model' or 'reader') that is not registered."""
    table, column = TABLES[kind]
    found = {r["id"] for r in db.execute("SELECT %s AS id FROM %s WHERE %s = ANY($1)" % (column, table, column),
                                         ["text[]"], [list(ids)])}
    for i in ids:
        if i not in found:
            raise missing(db, kind, i)


def missing(db, kind, name):
    """The error for a model or reader the caller cannot see: 42501 for another role's private reader
    (so a user learns to ask its owner), else 42704 with the nearest ids the caller can see."""
    if kind == "reader":
        owner = db.one("SELECT shift._reader_owner($1) AS o", ["text"], [name or ""])["o"]
        if owner is not None:
            return ShiftError("permission denied for reader %s" % name, INSUFFICIENT_PRIVILEGE,
                              detail="it is a private reader of role %s" % owner,
                              hint="its owner can share it: SELECT shift.grant_reader(%r, current_user)" % name)
    return unknown(kind, name or "", known_ids(db, kind))


def find_reader(db, name):
    """A reader row by exact id, else by case-insensitive id (SHiFT-QL folds nothing); a mutable reader as it is."""
    row = db.one("SELECT * FROM shift.readers WHERE reader_id = $1", ["text"], [name])
    if row is None:
        rows = db.execute("SELECT * FROM shift.readers WHERE lower(reader_id) = lower($1)", ["text"], [name])
        row = rows[0] if rows.nrows() == 1 else None
    if row is None:
        raise missing(db, "reader", name)
    return row


def resolve_reader(db, name):
    """find_reader, with a mutable reader's name meaning its latest version."""
    row = find_reader(db, name)
    if row["kind"] == "mutable":  # a mutable reader's name means its latest version (pyfuncs/versions.py)
        from .versions import options

        row = db.one("SELECT * FROM shift.readers WHERE reader_id = $1", ["text"],
                     ["%s@%s" % (row["reader_id"], options(row)["latest"])])
    return row
