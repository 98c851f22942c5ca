"""Errors that reach the user as PostgreSQL errors with a SQLSTATE."""

import difflib

# Every SQLSTATE shift raises, named as in PostgreSQL's errcodes.txt where the name is not ours.
SYNTAX_ERROR = "42601"
UNDEFINED_OBJECT = "42704"
DUPLICATE_OBJECT = "42710"
DUPLICATE_TABLE = "42P07"
DUPLICATE_COLUMN = "42701"
AMBIGUOUS_COLUMN = "42702"
WRONG_OBJECT_TYPE = "42809"
INSUFFICIENT_PRIVILEGE = "42501"
INVALID_PARAMETER = "22023"
DATA_EXCEPTION = "22000"  # a file whose contents are damaged
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_TRANSACTION_STATE = "25000"
NOT_READY = "55000"  # object_not_in_prerequisite_state
UNDEFINED_FILE = "58P01"
TASK_FAILED = "38000"  # external_routine_exception
QUERY_CANCELED = "57014"  # a cancel or statement_timeout, re-raised with what was kept
PROGRAM_LIMIT_EXCEEDED = "54000"  # a text longer than shift reads
STATEMENT_TOO_COMPLEX = "54001"  # a text with more tokens or syntax nodes than shift translates
INTERNAL_ERROR = "XX000"


class ShiftError(Exception):
    """An error for the user: lower-case message, optional detail and hint."""

    def __init__(self, message, sqlstate, detail=None, hint=None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint


def closest(name, known, n=3):
    """The known names closest to `name`, for hints."""
    lower = {k.lower(): k for k in known}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)]


def unknown(kind, name, known):
    """A 42704 error naming the closest known objects."""
    near = closest(name, known)
    if near:
        hint = "did you mean %s?" % " or ".join(repr(k) for k in near)
    elif known:
        hint = "known %ss: %s" % (kind, ", ".join(sorted(known)[:10]))
    else:
        hint = "no %s is registered yet" % kind
    return ShiftError("unknown %s %r" % (kind, name), UNDEFINED_OBJECT, hint=hint)
