"""Read a registered reader block by block (the DataReaders view, seed 000 §3.1).

A reader's samples have a stable order; block ``b`` is samples
``[b * block_size, (b + 1) * block_size)`` of it. Features and labels are cached per
block, which is what lets successive halving and change/add readers reuse work
(seed 000 §4, §5). Only the requested blocks are read, in increasing order, and at most
one block is held in memory.

Labels are mapped to contiguous class ids: the index of the label's text in
``reader["classes"]``. The text of a label is what registration used: PostgreSQL's
``y::text`` for SQL readers, Python's ``str(v)`` of ``y.tolist()`` items for npz files.
"""

from __future__ import annotations

import json
import math
import uuid
import zipfile
from typing import Iterable, Iterator, Sequence

import numpy as np

Block = tuple[int, "list | np.ndarray", np.ndarray]


# -- pure helpers -----------------------------------------------------------------------------

def reader_options(reader: dict) -> dict:
    opts = reader.get("options") or {}
    return json.loads(opts) if isinstance(opts, str) else dict(opts)


def reader_blocks(reader: dict) -> int:
    """Number of blocks of a reader: ceil(num_samples / block_size)."""
    return math.ceil(int(reader["num_samples"]) / int(reader["block_size"]))


def block_range(reader: dict, block: int) -> tuple[int, int]:
    """Sample positions [start, stop) of one block."""
    size = int(reader["block_size"])
    start = block * size
    return start, min(start + size, int(reader["num_samples"]))


def wanted_blocks(reader: dict, blocks: Iterable[int]) -> list[int]:
    """Requested blocks, deduplicated, in increasing order; out-of-range blocks are an error."""
    wanted = sorted({int(b) for b in blocks})
    n = reader_blocks(reader)
    bad = [b for b in wanted if not 0 <= b < n]
    if bad:
        raise ValueError("reader %s has blocks 0 to %d; block %d does not exist" % (reader["reader_id"], n - 1, bad[0]))
    return wanted


def label_texts(values: Sequence | np.ndarray) -> list[str]:
    """Labels as the text registration listed them in ``classes`` (``str`` of Python scalars)."""
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    return [v if isinstance(v, str) else str(v) for v in items]


def label_ids(reader: dict, values: Sequence | np.ndarray, index: dict[str, int] | None = None) -> np.ndarray:
    """Labels -> int32 class ids, the index of each label's text in ``reader["classes"]``."""
    if index is None:
        index = class_index(reader)
    texts = label_texts(values)
    try:
        return np.fromiter((index[t] for t in texts), dtype=np.int32, count=len(texts))
    except KeyError:
        missing = sorted({t for t in texts if t not in index})
        raise ValueError("reader %s has labels %s that are not among its registered classes; the data changed "
                         "since registration: register the reader again"
                         % (reader["reader_id"], ", ".join(repr(m) for m in missing[:5]))) from None


def class_index(reader: dict) -> dict[str, int]:
    return {str(c): i for i, c in enumerate(reader["classes"])}


def sample_shape(reader: dict) -> tuple[int, ...] | None:
    shape = reader_options(reader).get("shape")
    return tuple(int(s) for s in shape) if shape else None


def decode_sql_x(value, shape: tuple[int, ...] | None = None):
    """One x value from SQL -> a raw sample.

    bytea is an encoded image (bytes); real[]/double precision[] become float32 arrays,
    integer arrays keep an integer dtype (pixel values); both are reshaped to ``shape``
    when given. Other values (text) pass through unchanged.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype == object:
            if any(v is None for v in arr.flat):
                raise ValueError("an array sample contains NULL")
            arr = arr.astype(np.float32)  # numeric[] comes back as Decimal
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        return arr.reshape(shape) if shape else arr
    return value


# -- npz ---------------------------------------------------------------------------------------

class NpzArray:
    """Row slices of one array in an .npz archive, without reading the whole array.

    numpy ignores ``mmap_mode`` for .npz archives (``np.load(...)[key]`` reads the whole
    member), so this opens the member itself: an uncompressed member (``np.savez``) is
    memory-mapped in place; a compressed one (``np.savez_compressed``) is streamed,
    which needs row slices in increasing order.
    """

    def __init__(self, path: str, key: str, reader_id: str = "?"):
        self.path = path
        self._zip = zipfile.ZipFile(path)
        name = key if key.endswith(".npy") else key + ".npy"
        try:
            self._info = self._zip.getinfo(name)
        except KeyError:
            have = [n[:-4] for n in self._zip.namelist() if n.endswith(".npy")]
            self._zip.close()
            raise ValueError("npz file %s of reader %s has no array %r; it has %s"
                             % (path, reader_id, key, ", ".join(have))) from None
        self._stream = None
        self._pos = 0
        self._memmap = None
        if self._info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(self._info.header_offset)
                local = f.read(30)  # the local file header: its name and extra lengths may differ from the directory
                start = self._info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                    + int.from_bytes(local[28:30], "little")
                f.seek(start)
                self.shape, fortran, self.dtype = _read_npy_header(f, reader_id)
                data_start = f.tell()
            self._memmap = np.memmap(path, dtype=self.dtype, mode="r", offset=data_start, shape=self.shape,
                                     order="F" if fortran else "C") if math.prod(self.shape) else \
                np.empty(self.shape, self.dtype)
        else:
            self._open_stream(reader_id)
            if self._fortran and len(self.shape) > 1:  # rows are not contiguous: read the member once
                self._memmap = np.load(self._zip.open(self._info), allow_pickle=False)

    def _open_stream(self, reader_id: str = "?") -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._zip.open(self._info)
        self.shape, self._fortran, self.dtype = _read_npy_header(self._stream, reader_id)
        self._pos = 0

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """A copy of rows [start, stop)."""
        if self._memmap is not None:
            return np.array(self._memmap[start:stop])
        if start < self._pos:
            self._open_stream()
        row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        skip = (start - self._pos) * row_bytes
        while skip:  # discard in bounded chunks
            chunk = self._stream.read(min(skip, 1 << 24))
            if not chunk:
                raise ValueError("npz file %s ends early" % self.path)
            skip -= len(chunk)
        need = (stop - start) * row_bytes
        data = self._stream.read(need)
        if len(data) != need:
            raise ValueError("npz file %s ends early" % self.path)
        self._pos = stop
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start,) + tuple(self.shape[1:])).copy()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._memmap = None
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_npy_header(f, reader_id: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("an array of reader %s holds Python objects, which are not read (unsafe pickles); "
                         "store images as a numeric array or as encoded bytes in a SQL reader" % reader_id)
    return tuple(shape), fortran, dtype


def iter_npz_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    opts = reader_options(reader)
    x_key, y_key = opts.get("x_key", "x"), opts.get("y_key", "y")
    shape = sample_shape(reader)
    index = class_index(reader)
    try:
        xs_arr = NpzArray(reader["source"], x_key, reader["reader_id"])
    except FileNotFoundError:
        raise ValueError("npz file %s of reader %s does not exist on this worker; copy it there or register the "
                         "reader again with a path every worker can read" % (reader["source"], reader["reader_id"])) \
            from None
    with xs_arr, NpzArray(reader["source"], y_key, reader["reader_id"]) as ys_arr:
        n = int(reader["num_samples"])
        if len(xs_arr) != n or len(ys_arr) != n:
            raise ValueError("npz file %s now has %d samples but reader %s was registered with %d; register the "
                             "reader again" % (reader["source"], len(xs_arr), reader["reader_id"], n))
        for b in blocks:
            start, stop = block_range(reader, b)
            xs = xs_arr.rows(start, stop)
            if shape:
                xs = xs.reshape((stop - start,) + shape)
            yield b, xs, label_ids(reader, ys_arr.rows(start, stop), index)


# -- SQL ---------------------------------------------------------------------------------------

def reader_query(source: str):
    """The statement streaming a SQL reader: its query as a subquery, labels as text."""
    from psycopg import sql

    body = source.strip().rstrip(";").strip()
    return sql.SQL("SELECT r.x, r.y::text AS y FROM ({}) AS r").format(sql.SQL(body))


def iter_sql_blocks(reader: dict, blocks: list[int], conn) -> Iterator[Block]:
    """Stream blocks through a server-side cursor: skipped blocks are MOVEd over on the server."""
    import psycopg

    if conn is None:
        raise ValueError("reader %s is a SQL reader and needs a database connection" % reader["reader_id"])
    own = isinstance(conn, str)
    if own:
        conn = psycopg.connect(conn, application_name="shift-reader")
    shape = sample_shape(reader)
    index = class_index(reader)
    try:
        with conn.transaction():
            name = "shift_reader_%s" % uuid.uuid4().hex[:12]
            with conn.cursor(name=name) as cur:
                cur.itersize = int(reader["block_size"])
                cur.execute(reader_query(reader["source"]))
                pos = 0
                for b in blocks:
                    start, stop = block_range(reader, b)
                    if start > pos:
                        cur.scroll(start - pos)  # MOVE: the server skips these rows, none are sent
                    rows = cur.fetchmany(stop - start)
                    pos = stop
                    if len(rows) != stop - start:
                        raise ValueError("reader %s returned %d rows for block %d instead of %d; its query results "
                                         "changed since registration: register the reader again"
                                         % (reader["reader_id"], len(rows), b, stop - start))
                    if any(y is None for _, y in rows):
                        raise ValueError("reader %s has samples without a label in block %d" % (reader["reader_id"], b))
                    xs = [decode_sql_x(x, shape) for x, _ in rows]
                    ys = label_ids(reader, [y for _, y in rows], index)
                    del rows
                    yield b, xs, ys
    finally:
        if own:
            conn.close()


def iter_blocks(reader: dict, blocks: Iterable[int], conn=None) -> Iterator[Block]:
    """Yield ``(block, xs, y_ids)`` for the requested blocks of a reader, in increasing order.

    ``xs`` is a numpy array (npz) or a list of raw samples (sql); ``y_ids`` are int32
    class ids. ``conn`` (SQL readers only) is a psycopg 3 connection, or a conninfo string
    to open one; the blocks are read inside a transaction on it, so it must be a
    connection the caller does not commit on while iterating.
    """
    wanted = wanted_blocks(reader, blocks)
    kind = reader["kind"]
    if kind == "npz":
        return iter_npz_blocks(reader, wanted)
    if kind == "sql":
        return iter_sql_blocks(reader, wanted, conn)
    raise ValueError("reader %s has kind %r, which this worker cannot read; supported kinds: npz, sql"
                     % (reader["reader_id"], kind))
