""".npy headers as registration and the workers both read them: checked, never a pickle.

numpy's own errors for a damaged or hostile file suggest loading it with
``allow_pickle=True``, which would run code from the file; these checks say what is
wrong with the file instead, and numpy is only asked for arrays that passed them.
"""

import ast
import math

import numpy as np

# numpy refuses longer headers by default too: parsing one is the cost of reading it
MAX_HEADER_BYTES = 10000
# dtype kinds a sample or a label may have: bool, signed, unsigned, float, str, bytes
ARRAY_KINDS = "biufUS"


class NpyError(ValueError):
    """A .npy array (a file, or a member of an .npz) that cannot be read; the message says why."""


def read_header(f, what):
    """(shape, fortran, dtype) of the .npy stream ``f``, which is left at the first data byte."""
    fmt = np.lib.format
    start = f.read(6)
    if len(start) < 6:
        raise NpyError("%s is %s" % (what, "empty" if not start else "too short to be a .npy array"))
    if start != fmt.MAGIC_PREFIX:
        raise NpyError("%s is not a .npy array: it does not start with numpy's magic string" % what)
    rest = f.read(2)
    if len(rest) < 2 or rest[0] not in (1, 2, 3):
        raise NpyError("%s has a .npy header of an unknown version" % what)
    size_bytes = 2 if rest[0] == 1 else 4
    raw = f.read(size_bytes)
    if len(raw) < size_bytes:
        raise NpyError("%s ends inside its .npy header" % what)
    length = int.from_bytes(raw, "little")
    if length > MAX_HEADER_BYTES:
        raise NpyError("%s has a .npy header of %d bytes, more than the %d an array of numbers needs"
                       % (what, length, MAX_HEADER_BYTES))
    header = f.read(length)
    if len(header) < length:
        raise NpyError("%s ends inside its .npy header" % what)
    try:
        meta = ast.literal_eval(header.decode("utf-8" if rest[0] == 3 else "latin1"))
        shape, fortran = tuple(int(s) for s in meta["shape"]), bool(meta["fortran_order"])
        dtype = fmt.descr_to_dtype(meta["descr"])
    except Exception:  # noqa: BLE001 -- any header numpy would not read is the same damage
        raise NpyError("%s has a damaged .npy header" % what) from None
    if dtype.hasobject:
        raise NpyError("%s holds Python objects, which are not loaded (they would be unpickled, running code "
                       "from the file); store a numeric or string array" % what)
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        raise NpyError("%s has dtype %s; samples and labels are numbers or strings" % (what, dtype))
    if any(s < 0 for s in shape):
        raise NpyError("%s has a damaged .npy header: shape %s" % (what, shape))
    return shape, fortran, dtype


def data_bytes(shape, dtype):
    """Bytes of the data after the header of an array of this shape and dtype."""
    return math.prod(shape) * np.dtype(dtype).itemsize


def require_length(what, have, shape, dtype):
    """The data must be as long as the header says; a shorter file was cut, a longer one is not numpy's."""
    want = data_bytes(shape, dtype)
    if have != want:
        raise NpyError("%s has %d bytes of data where its header (shape %s, dtype %s) describes %d; the file "
                       "was %s" % (what, have, shape, dtype, want, "cut short" if have < want else "changed"))
