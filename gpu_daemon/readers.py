"""Read a registered reader block by block (the DataReaders view, seed 000 §3.1).

A reader's samples have a stable order; block ``b`` is samples
``[b * block_size, (b + 1) * block_size)`` of it. Features and labels are cached per
block, which is what lets successive halving and change/add readers reuse work
(seed 000 §4, §5). Only the requested blocks are read, in increasing order, and at most
one block is held in memory, so a worker's memory does not grow with the reader.

Kinds and what a sample is:

* ``sql``: a query over user tables; bytea is an encoded image, arrays are images or
  feature vectors, text is text;
* ``npz`` / ``npy``: rows of a numpy array (memory-mapped where the file allows);
* ``csv``: a row of a CSV file: its numeric columns (Tabular), one text column (Text),
  or one column of image paths relative to the file (Vision, read as encoded bytes);
* ``imagefolder``: an image file (encoded bytes) in a class subfolder;
* ``hf``: a row of a Hugging Face ``datasets`` dataset saved with ``save_to_disk``;
* ``tfds``: an example of a TFDS prepared directory, in shard and record order;
* ``version``: a version of a mutable reader, its samples read from its source readers.

Labels are mapped to contiguous class ids: the index of the label's text in
``reader["classes"]``. The text of a label is what registration used: PostgreSQL's
``y::text`` for SQL readers, Python's ``str(v)`` of ``y.tolist()`` items for numpy files,
the cell for CSV files. Readers whose labels are class indices already (image folders,
``ClassLabel`` features of ``hf`` and ``tfds`` readers) list the class names in index order.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import uuid
import zipfile
import zlib
from typing import Iterable, Iterator, Sequence

import numpy as np

from pyfuncs import files, npyfile
from pyfuncs.errors import DATA_EXCEPTION, INVALID_PARAMETER, NOT_READY, UNDEFINED_FILE, ShiftError

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


def take_blocks(reader: dict, blocks: list[int], stream, what: str):
    """Walk a sequential stream once, yielding ``(block, items)`` for the requested blocks in order."""
    pos = 0
    for b in blocks:
        start, stop = block_range(reader, b)
        for _ in itertools.islice(stream, start - pos):
            pass
        got = list(itertools.islice(stream, stop - start))
        pos = stop
        if len(got) != stop - start:
            raise ValueError("%s now has fewer samples than the %d reader %s was registered with; "
                             "register the reader again" % (what, int(reader["num_samples"]), reader["reader_id"]))
        yield b, got


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

_VERIFIED_MEMBERS: set[tuple] = set()  # (path, member, inode, size, mtime) whose CRC-32 was checked


class NpzArray:
    """Row slices of one array in an .npz archive, without reading the whole array.

    numpy ignores ``mmap_mode`` for .npz archives (``np.load(...)[key]`` reads the whole
    member), so this opens the member itself: the rows of an uncompressed member
    (``np.savez``) are read at their offset in the file; a compressed one
    (``np.savez_compressed``) is streamed, which needs row slices in increasing order.
    Reading rather than memory-mapping keeps the pages of a large file out of the
    worker's resident memory.
    """

    def __init__(self, path: str, key: str, reader_id: str = "?"):
        self.path, self.reader_id = path, reader_id
        self.what = "array %s of npz file %s of reader %s" % (key, path, reader_id)
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
        self._rows = None
        if self._info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(self._info.header_offset)
                local = f.read(30)  # the local file header: its name and extra lengths may differ from the directory
                start = self._info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                    + int.from_bytes(local[28:30], "little")
                f.seek(start)
                self.shape, fortran, self.dtype = _read_npy_header(f, reader_id, "array %s of npz file %s" % (key, path))
                data_start = f.tell()
                _require_length(self.what, self._info.file_size - (data_start - start), self.shape, self.dtype)
            if fortran and len(self.shape) > 1:  # rows are not contiguous in the file
                self._memmap = np.memmap(path, dtype=self.dtype, mode="r", offset=data_start, shape=self.shape,
                                         order="F") if math.prod(self.shape) else np.empty(self.shape, self.dtype)
            else:
                self._rows = RowFile(path, data_start, self.shape, self.dtype)
        else:
            self._open_stream(reader_id)
            if self._fortran and len(self.shape) > 1:  # rows are not contiguous: read the member once
                self._memmap = np.load(self._zip.open(self._info), allow_pickle=False)

    def verify(self) -> None:
        """Check the member's CRC-32 by reading it once, in bounded chunks, before any row is used.

        A member damaged after registration would otherwise be found only at its end, after
        the blocks before the damage were inferred and cached. A verified file version (same
        path, inode, size and mtime) is not read again by this process.
        """
        st = os.stat(self.path)
        version = (self.path, self._info.filename, st.st_ino, st.st_size, st.st_mtime_ns)
        if version in _VERIFIED_MEMBERS:
            return
        try:
            with self._zip.open(self._info) as f:
                while f.read(1 << 18):  # zipfile compares the CRC-32 at the member's end
                    pass
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            why = "its CRC-32 does not match the archive's record" if "CRC" in str(e) else str(e)
            raise self.damaged(why) from None
        if len(_VERIFIED_MEMBERS) >= 256:
            _VERIFIED_MEMBERS.clear()
        _VERIFIED_MEMBERS.add(version)

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
        if self._rows is not None:
            return self._rows.rows(start, stop)
        try:
            return self._stream_rows(start, stop)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # zipfile checks the CRC at a member's end
            raise self.damaged(str(e)) from None

    def damaged(self, why: str) -> ShiftError:
        return ShiftError("%s is damaged: %s" % (self.what, why), DATA_EXCEPTION,
                          hint="write the file again and register the reader again")

    def _stream_rows(self, start: int, stop: int) -> np.ndarray:
        if self._memmap is not None:
            return np.array(self._memmap[start:stop])
        if start < self._pos:
            self._open_stream()
        row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        skip = (start - self._pos) * row_bytes
        while skip:  # discard in bounded chunks
            chunk = self._stream.read(min(skip, 1 << 24))
            if not chunk:
                raise self.damaged("it ends early")
            skip -= len(chunk)
        need = (stop - start) * row_bytes
        data = self._stream.read(need)
        if len(data) != need:
            raise self.damaged("it ends early")
        self._pos = stop
        if stop == len(self) and self._stream.read(1):  # the read at the end is where zipfile checks the CRC
            raise self.damaged("it is longer than its header says")
        return np.frombuffer(data, dtype=self.dtype).reshape((stop - start,) + tuple(self.shape[1:])).copy()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._rows is not None:
            self._rows.close()
        self._memmap = None
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RowFile:
    """Rows of a C-order array stored at ``offset`` of a file, read on demand with pread."""

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.offset, self.shape, self.dtype = path, offset, tuple(shape), np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """A copy of rows [start, stop)."""
        start, stop = max(0, start), min(stop, self.shape[0])
        n = max(0, stop - start)
        out = np.empty((n,) + self.shape[1:], dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        done, pos = 0, self.offset + start * self.row_bytes
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got <= 0:
                raise ShiftError("file %s ends early: it was cut since registration" % self.path, DATA_EXCEPTION,
                                 hint="write the file again and register the reader again")
            done += got
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_npy(path: str, reader_id: str = "?"):
    """Row access to a .npy file: a :class:`RowFile`, or a memory map for Fortran-order arrays."""
    with open(path, "rb") as f:
        what = "npy file %s" % path
        shape, fortran, dtype = _read_npy_header(f, reader_id, what)
        offset = f.tell()
        _require_length("%s of reader %s" % (what, reader_id), os.fstat(f.fileno()).st_size - offset, shape, dtype)
    if fortran and len(shape) > 1:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return RowFile(path, offset, shape, dtype)


def _read_npy_header(f, reader_id: str, what: str = "an array") -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        return npyfile.read_header(f, "%s of reader %s" % (what, reader_id))
    except npyfile.NpyError as e:
        raise ShiftError(str(e), DATA_EXCEPTION, hint="write the file again and register the reader again") from None


def _require_length(what: str, have: int, shape, dtype) -> None:
    try:
        npyfile.require_length(what, have, shape, dtype)
    except npyfile.NpyError as e:
        raise ShiftError(str(e), DATA_EXCEPTION, hint="write the file again and register the reader again") from None


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
        xs_arr.verify()  # before the first block: nothing of a damaged file is cached
        ys_arr.verify()
        for b in blocks:
            start, stop = block_range(reader, b)
            xs = xs_arr.rows(start, stop)
            if shape:
                xs = with_shape(reader, xs, shape, start)
            yield b, xs, label_ids(reader, ys_arr.rows(start, stop), index)


# -- SQL ---------------------------------------------------------------------------------------

def reader_query(reader: dict):
    """The statement streaming a SQL reader: a call of its reading function, which shift made at
    registration as a SECURITY DEFINER function of the reader's owner (see sql/privileges.sql), so the
    query runs with the owner's privileges and cannot change role. Labels come as text."""
    from psycopg import sql

    function = reader.get("read_function")
    if not function:
        raise ValueError("SQL reader %s has no reading function; register it again" % reader["reader_id"])
    name = str(function)
    if not name.endswith("()"):
        raise ValueError("reading function %s of reader %s takes arguments" % (name, reader["reader_id"]))
    # regprocedure text is already quoted as an identifier where it needs to be
    return sql.SQL("SELECT r.x, r.y FROM {}() AS r").format(sql.SQL(name[:-2]))


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
    closing = False  # the consumer let go of the blocks
    try:
        with conn.transaction():
            name = "shift_reader_%s" % uuid.uuid4().hex[:12]
            with conn.cursor(name=name) as cur:
                cur.itersize = int(reader["block_size"])
                cur.execute(reader_query(reader))
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
                    xs = [_sql_sample(reader, x, shape, start + i) for i, (x, _) in enumerate(rows)]
                    ys = label_ids(reader, [y for _, y in rows], index)
                    del rows
                    try:
                        yield b, xs, ys
                    except GeneratorExit:
                        closing = True
                        raise
    except psycopg.OperationalError:
        # let go of after the connection broke: there is no cursor left to close on the server
        if not (closing and conn.broken):
            raise
    finally:
        if own:
            conn.close()


# -- npy ---------------------------------------------------------------------------------------

def _missing_file(reader: dict, path: str) -> ValueError:
    return ValueError("file %s of reader %s does not exist on this worker; copy it there or register the reader "
                      "again with a path every worker can read" % (path, reader["reader_id"]))


def _load_npy(reader: dict, path: str):
    try:
        return open_npy(path, reader["reader_id"])
    except FileNotFoundError:
        raise _missing_file(reader, path) from None


def _check_count(reader: dict, path: str, n: int) -> None:
    if n != int(reader["num_samples"]):
        raise ValueError("%s now has %d samples but reader %s was registered with %d; register the reader again"
                         % (path, n, reader["reader_id"], int(reader["num_samples"])))


def iter_npy_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    """x and y in two .npy files: a block is a copy of its rows, read at their offset."""
    opts = reader_options(reader)
    xs_arr = _load_npy(reader, reader["source"])
    ys_arr = _load_npy(reader, opts["y_path"])
    _check_count(reader, reader["source"], len(xs_arr))
    _check_count(reader, opts["y_path"], len(ys_arr))
    shape = sample_shape(reader)
    index = class_index(reader)

    def rows(arr, start, stop):
        return arr.rows(start, stop) if isinstance(arr, RowFile) else np.array(arr[start:stop])

    try:
        for b in blocks:
            start, stop = block_range(reader, b)
            xs = rows(xs_arr, start, stop)
            if shape:
                xs = with_shape(reader, xs, shape, start)
            yield b, xs, label_ids(reader, rows(ys_arr, start, stop), index)
    finally:
        for arr in (xs_arr, ys_arr):
            if isinstance(arr, RowFile):
                arr.close()


# -- CSV ---------------------------------------------------------------------------------------

def _csv_samples(reader: dict, rows: list[list[str]], lines: list[int], x_at: list[int], base: str):
    kind = reader.get("input") or "Tabular"
    if kind == "Text":
        return [r[x_at[0]] for r in rows]
    if kind == "Vision":
        out = []
        for r in rows:
            path = r[x_at[0]]
            path = path if os.path.isabs(path) else os.path.join(base, path)
            try:
                with open(path, "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                raise _missing_file(reader, path) from None
        return out
    try:
        return np.array([[r[i] for i in x_at] for r in rows], dtype=np.float32)
    except ValueError:
        for line, r in zip(lines, rows):
            for i in x_at:
                try:
                    float(r[i])
                except ValueError:
                    raise ValueError("line %d of csv file %s of reader %s has %r where a number is expected"
                                     % (line, reader["source"], reader["reader_id"], r[i])) from None
        raise


def iter_csv_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    """Rows of a CSV file read once, front to back; rows before a wanted block are skipped unparsed."""
    opts = reader_options(reader)
    path = reader["source"]
    index = class_index(reader)
    try:
        f = files.open_text(path, opts.get("encoding", "utf-8"))
    except FileNotFoundError:
        raise _missing_file(reader, path) from None
    with f:
        try:
            header, records = files.csv_rows(f, path, opts)
            y_at, x_at, _ = files.csv_columns(header, opts["label_column"], opts.get("x_columns"), path)
        except files.SourceError as e:
            raise ValueError("%s; register reader %s again" % (e, reader["reader_id"])) from None
        for b, got in take_blocks(reader, blocks, records, "csv file %s" % path):
            lines = [line for line, _ in got]
            rows = [row for _, row in got]
            xs = _csv_samples(reader, rows, lines, x_at, os.path.dirname(path))
            yield b, xs, label_ids(reader, [r[y_at] for r in rows], index)


# -- image folders -------------------------------------------------------------------------------

def iter_imagefolder_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    """Image files as encoded bytes; labels are class folder indices.

    Only per-class counts are held for the whole folder, and the file names of the class
    being read, so memory is bounded by the largest class, not by the folder.
    """
    root = reader["source"]
    exts = files.extensions(reader_options(reader))
    try:
        counts = files.imagefolder_counts(root, exts)
    except files.SourceError:
        raise _missing_file(reader, root) from None
    if [c for c, _ in counts] != list(reader["classes"]):
        raise ValueError("image folder %s now has classes %s but reader %s was registered with %s; register the "
                         "reader again" % (root, ", ".join(c for c, _ in counts)[:200], reader["reader_id"],
                                           ", ".join(reader["classes"])[:200]))
    _check_count(reader, root, sum(n for _, n in counts))
    offsets = np.cumsum([0] + [n for _, n in counts])
    listed: tuple[int, list[str]] = (-1, [])
    for b in blocks:
        start, stop = block_range(reader, b)
        xs, ys = [], []
        c = int(np.searchsorted(offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            while offsets[c + 1] <= pos:
                c += 1
            if listed[0] != c:
                listed = (c, files.imagefolder_files(root, counts[c][0], exts))
            names = listed[1]
            if len(names) != counts[c][1]:
                raise ValueError("class folder %s of reader %s changed while it was read" % (counts[c][0],
                                                                                              reader["reader_id"]))
            upto = min(stop, int(offsets[c + 1]))
            for name in names[pos - int(offsets[c]):upto - int(offsets[c])]:
                with open(os.path.join(root, name), "rb") as f:
                    xs.append(f.read())
                ys.append(c)
            pos = upto
        yield b, xs, np.asarray(ys, dtype=np.int32)


# -- Hugging Face datasets saved to disk ---------------------------------------------------------

def _hf_error(message: str, sqlstate: str = INVALID_PARAMETER, hint: str | None = None) -> ShiftError:
    return ShiftError(message, sqlstate, hint=hint)


def open_hf_dataset(path: str, split: str | None, reader_id: str = "?"):
    """A ``datasets.Dataset`` from ``save_to_disk`` output (a Dataset or one split of a DatasetDict)."""
    try:
        import datasets
    except ImportError as e:
        raise _hf_error("reader %s reads a Hugging Face dataset, which needs the datasets package on the worker (%s)"
                        % (reader_id, e), NOT_READY, hint="install it on the workers with pip install 'shift[hf]'") \
            from None
    datasets.disable_progress_bars()  # worker logs are read line by line
    datasets.utils.logging.set_verbosity_warning()
    if not os.path.isdir(path):
        raise _hf_error("dataset directory %s of reader %s does not exist on this worker" % (path, reader_id),
                        UNDEFINED_FILE, hint="copy it there, or register the reader with a path every worker can read")
    try:
        ds = datasets.load_from_disk(path)
    except FileNotFoundError as e:  # a directory without the files save_to_disk writes
        raise _hf_error("%s is not a dataset written by save_to_disk" % path,
                        hint="write it with Dataset.save_to_disk or DatasetDict.save_to_disk (%s)"
                        % str(e).splitlines()[0][:200]) from None
    except (OSError, ValueError) as e:  # pyarrow's errors for a cut or damaged file are among these
        raise _hf_error("dataset %s cannot be read: %s" % (path, str(e).splitlines()[0][:200]), DATA_EXCEPTION,
                        hint="write it again with save_to_disk") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise _hf_error("dataset %s has no split %s" % (path, "named" if split is None else repr(split)),
                            hint="its splits are %s; name one as the reader's split" % ", ".join(ds))
        ds = ds[split]
    elif split is not None and ds.split is not None and str(ds.split) != split:
        raise _hf_error("dataset %s holds split %s, not %s" % (path, ds.split, split),
                        hint="leave the split out, or name %s" % ds.split)
    return ds


HF_X_NAMES = ("image", "img", "pixel_values", "text", "sentence", "x", "features")


def hf_columns(ds, x_column: str | None, y_column: str, path: str) -> tuple[str, str]:
    cols = list(ds.column_names)
    listed = "its columns are %s" % ", ".join(cols)
    if y_column not in cols:
        raise _hf_error("dataset %s has no label column %r" % (path, y_column), hint=listed + "; name one as y_column")
    if x_column is None:
        others = [c for c in cols if c != y_column]
        x_column = others[0] if len(others) == 1 else next((c for c in HF_X_NAMES if c in others), None)
        if x_column is None:
            raise _hf_error("dataset %s has several sample columns and none is named" % path,
                            hint=listed + "; name the sample column as x_column")
    elif x_column not in cols:
        raise _hf_error("dataset %s has no column %r" % (path, x_column), hint=listed)
    return x_column, y_column


def hf_x_input(feature) -> str | None:
    """The modality a datasets feature holds, where it says."""
    kind = type(feature).__name__
    if kind == "Image":
        return "Vision"
    if kind == "Value" and getattr(feature, "dtype", "") in ("string", "large_string"):
        return "Text"
    return None


def describe_hf(path: str, options: dict, reader_id: str = "?") -> dict:
    """Sample count, classes, columns and modality of a saved dataset (registration asks a worker for these)."""
    from pyfuncs.reader_registry import label_order

    ds = open_hf_dataset(path, options.get("split"), reader_id)
    x_col, y_col = hf_columns(ds, options.get("x_column"), options.get("y_column", "label"), path)
    feature = ds.features[y_col]
    by_index = type(feature).__name__ == "ClassLabel"
    if by_index:
        classes = list(feature.names)
    else:
        values = ds.unique(y_col)
        if any(v is None for v in values):
            raise _hf_error("dataset %s has samples without a label in column %s" % (path, y_col),
                            hint="give every sample a label; nothing was registered")
        classes = sorted({str(v) for v in values}, key=label_order)
    return dict(num_samples=len(ds), classes=classes, x_column=x_col, y_column=y_col,
                input=hf_x_input(ds.features[x_col]), by_index=by_index)


def iter_hf_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    """Rows of a memory-mapped Arrow dataset; images are passed on encoded, as stored."""
    import datasets

    opts = reader_options(reader)
    path = reader["source"]
    ds = open_hf_dataset(path, opts.get("split"), reader["reader_id"])
    x_col, y_col = hf_columns(ds, opts.get("x_column"), opts.get("y_column", "label"), path)
    _check_count(reader, path, len(ds))
    is_image = type(ds.features[x_col]).__name__ == "Image"
    by_index = type(ds.features[y_col]).__name__ == "ClassLabel"
    if is_image:
        ds = ds.cast_column(x_col, datasets.Image(decode=False))
    ds = ds.with_format("numpy", columns=[x_col, y_col])
    index = class_index(reader)
    shape = sample_shape(reader)
    for b in blocks:
        start, stop = block_range(reader, b)
        rows = ds[start:stop]
        xs, ys = rows[x_col], rows[y_col]
        if is_image:
            xs = [_image_bytes(v, path) for v in xs]
        elif shape and isinstance(xs, np.ndarray) and xs.dtype != object:
            xs = with_shape(reader, xs, shape, start)
        elif isinstance(xs, np.ndarray) and xs.dtype == object:
            xs = list(xs)
        if by_index:
            ids = np.asarray(ys, dtype=np.int32)
            if ids.size and (ids.min() < 0 or ids.max() >= len(reader["classes"])):
                raise ValueError("reader %s has samples without a label (class -1) in block %d"
                                 % (reader["reader_id"], b))
        else:
            ids = label_ids(reader, ys, index)
        yield b, xs, ids


def _image_bytes(value, path: str) -> bytes:
    if value.get("bytes") is not None:
        return value["bytes"]
    with open(value["path"] if os.path.isabs(value["path"]) else os.path.join(path, value["path"]), "rb") as f:
        return f.read()


# -- TFDS prepared directories ---------------------------------------------------------------------

def iter_tfds_blocks(reader: dict, blocks: list[int]) -> Iterator[Block]:
    """Examples of one split, shard by shard in record order; images are passed on encoded."""
    opts = reader_options(reader)
    path = reader["source"]
    from .models import import_tensorflow

    try:
        tf = import_tensorflow()
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError("reader %s reads a TFDS directory, which needs tensorflow-datasets on the worker (%s); "
                         "install it with pip install 'shift[tf]'" % (reader["reader_id"], e)) from None
    if not os.path.isdir(path):
        raise _missing_file(reader, path)
    logging.getLogger("absl").setLevel(logging.WARNING)  # tfds logs every dataset it opens
    x_key, y_key, split = opts["x_key"], opts["y_key"], opts["split"]
    builder = tfds.builder_from_directory(path)
    decoders = {x_key: tfds.decode.SkipDecoding()} if files.tfds_feature_kind(
        files.tfds_info(path)["features"].get(x_key)) == "Image" else None
    with tf.device("/CPU:0"):
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1))
        ds = ds.map(lambda ex: (ex[x_key], ex[y_key]))
        examples = iter(tfds.as_numpy(ds))
        index = class_index(reader)
        by_index = opts.get("labels") == "index"
        shape = sample_shape(reader)
        text = reader.get("input") == "Text"
        for b, got in take_blocks(reader, blocks, examples, "split %s of %s" % (split, path)):
            xs = [x for x, _ in got]
            if text:
                xs = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in xs]
            elif xs and not isinstance(xs[0], bytes):
                xs = np.stack(xs)
                if shape:
                    xs = with_shape(reader, xs, shape, block_range(reader, b)[0])
            ys = [y for _, y in got]
            ids = np.asarray(ys, dtype=np.int32) if by_index else label_ids(
                reader, [y.decode("utf-8") if isinstance(y, bytes) else y for y in ys], index)
            yield b, xs, ids


# -- what every reader's blocks are checked for ------------------------------------------------------

def where(reader: dict) -> str:
    """The reader and what it reads, for messages."""
    if reader["kind"] == "sql":
        return "reader %s" % reader["reader_id"]
    what = {"imagefolder": "folder", "hf": "dataset", "tfds": "dataset"}.get(reader["kind"], "file")
    return "reader %s (%s %s)" % (reader["reader_id"], what, reader["source"])


def damaged(reader: dict, what: str, sample: int | None = None) -> ShiftError:
    at = "" if sample is None else "sample %d of " % sample
    return ShiftError("%s%s %s" % (at, where(reader), what), DATA_EXCEPTION,
                      hint="correct the data and register the reader again; nothing of the block was cached")


def with_shape(reader: dict, xs: np.ndarray, shape: tuple[int, ...], start: int) -> np.ndarray:
    """Samples reshaped to the reader's ``shape`` option, or an error naming the first sample."""
    try:
        return xs.reshape((len(xs),) + tuple(shape))
    except ValueError:
        raise damaged(reader, "has shape %s, which does not hold the option shape %s"
                      % (tuple(xs.shape[1:]), list(shape)), start) from None


def _sql_sample(reader: dict, value, shape, sample: int):
    try:
        return decode_sql_x(value, shape)
    except (TypeError, ValueError) as e:
        raise damaged(reader, "cannot be read: %s" % e, sample) from None


def check_samples(reader: dict, block: int, xs, ys: np.ndarray) -> None:
    """One sample and one known class per position; numbers finite; no empty image or NULL.

    Features are checked after inference too (worker.check_block), but a NaN pixel
    makes every feature of its sample NaN, and an image of 0 bytes fails in the
    decoder: here the message names the sample in the reader's own order.
    """
    start, stop = block_range(reader, block)
    if len(xs) != stop - start or len(ys) != stop - start:
        raise damaged(reader, "gave %d samples and %d labels for block %d, which has %d"
                      % (len(xs), len(ys), block, stop - start))
    bad = np.flatnonzero((ys < 0) | (ys >= len(reader["classes"])))
    if bad.size:
        raise damaged(reader, "has label id %d, not one of its %d classes" % (ys[bad[0]], len(reader["classes"])),
                      start + int(bad[0]))
    if isinstance(xs, np.ndarray) and xs.dtype != object:
        _check_array(reader, xs, start, block)
        return
    for i, x in enumerate(xs):
        if x is None:
            raise damaged(reader, "is NULL", start + i)
        if isinstance(x, (bytes, bytearray)) and not x:
            raise damaged(reader, "is empty (0 bytes)", start + i)
        if isinstance(x, np.ndarray):
            _check_array(reader, x[None], start + i, block)


def _check_array(reader: dict, xs: np.ndarray, start: int, block: int) -> None:
    if xs.dtype.kind not in npyfile.ARRAY_KINDS:
        raise damaged(reader, "has samples of dtype %s; samples are numbers or text" % xs.dtype, start)
    if xs.dtype.kind == "f" and xs.size:
        bad = ~np.isfinite(xs.reshape(len(xs), -1)).all(axis=1)
        if bad.any():
            first = int(bad.argmax())
            values = xs[first].reshape(-1)
            raise damaged(reader, "holds a non-finite value (%s); %d of the %d samples read of block %d have one"
                          % (values[~np.isfinite(values)][0], int(bad.sum()), len(xs), block), start + first)


def verified(reader: dict, blocks: Iterator[Block]) -> Iterator[Block]:
    """The blocks of a reader, each checked; a file damaged under the reader is a ShiftError, never raw."""
    try:
        for b, xs, ys in blocks:
            check_samples(reader, b, xs, ys)
            yield b, xs, ys
    except (zipfile.BadZipFile, zlib.error, EOFError, csv.Error, UnicodeDecodeError) as e:
        raise damaged(reader, "cannot be read: %s" % str(e)[:200]) from None


# -- versions of mutable readers ---------------------------------------------------------------

def iter_version_blocks(reader: dict, blocks: list[int], conn) -> Iterator[Block]:
    """Blocks of a version of a mutable reader (pyfuncs/versions.py), each assembled from its sources.

    Block b of a version is its positions [b * block_size, (b + 1) * block_size); each position is a
    sample of a source reader, read from the source block holding it, its label renumbered from the
    source's classes to the version's. One block of each source is held: a version's segments run
    through their sources in order, so the next version block mostly reads the same or the next one."""
    import psycopg
    from psycopg.rows import dict_row

    from pyfuncs import versions

    if conn is None:
        raise ValueError("reader %s is a version of a mutable reader and needs a database connection"
                         % reader["reader_id"])
    own = isinstance(conn, str)
    if own:
        conn = psycopg.connect(conn, application_name="shift-reader")
    try:
        comp = versions.Composition.from_segments(versions.options(reader)["segments"])
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM shift.readers WHERE reader_id = ANY(%s)", (comp.sources,))
            sources = {r["reader_id"]: r for r in cur.fetchall()}
        lost = [s for s in comp.sources if s not in sources]
        if lost:
            raise ValueError("reader %s reads reader %s, which is not registered" % (reader["reader_id"], lost[0]))
        index = class_index(reader)
        relabel = {s: np.array([index[str(c)] for c in r["classes"]], np.int32) for s, r in sources.items()}
        held: dict[str, Block] = {}

        def source_block(name, block):
            if name not in held or held[name][0] != block:
                held.pop(name, None)  # the block it held goes before the next is read
                stream = iter_blocks(sources[name], [block], conn)
                try:
                    held[name] = next(stream)
                finally:
                    stream.close()  # a SQL reader's cursor goes now
            return held[name]

        for b in blocks:
            start, stop = block_range(reader, b)
            src, idx = comp.src[start:stop], comp.idx[start:stop]
            xs: list = [None] * (stop - start)
            ys = np.empty(stop - start, np.int32)
            arrays = True
            for code in np.unique(src):
                name = comp.sources[int(code)]
                size = int(sources[name]["block_size"])
                here = np.flatnonzero(src == code)
                for sb in np.unique(idx[here] // size):
                    rows = here[idx[here] // size == sb]
                    _, sx, sy = source_block(name, int(sb))
                    arrays = arrays and isinstance(sx, np.ndarray) and sx.dtype != object
                    offsets = idx[rows] - int(sb) * size
                    for r, o in zip(rows.tolist(), offsets.tolist()):
                        xs[r] = sx[o]
                    ys[rows] = relabel[name][np.asarray(sy, np.int64)[offsets]]
            yield b, (np.stack(xs) if arrays else xs), ys
    finally:
        if own:
            conn.close()


READERS = {
    "sql": None,  # needs the connection: see iter_blocks
    "version": None,  # reads its sources, with the connection
    "npz": iter_npz_blocks,
    "npy": iter_npy_blocks,
    "csv": iter_csv_blocks,
    "imagefolder": iter_imagefolder_blocks,
    "hf": iter_hf_blocks,
    "tfds": iter_tfds_blocks,
}


def iter_blocks(reader: dict, blocks: Iterable[int], conn=None) -> Iterator[Block]:
    """Yield ``(block, xs, y_ids)`` for the requested blocks of a reader, in increasing order.

    ``xs`` is a numpy array (numeric samples) or a list of raw samples (encoded images,
    texts, mixed shapes); ``y_ids`` are int32 class ids. ``conn`` (SQL readers only) is a
    psycopg 3 connection, or a conninfo string to open one; the blocks are read inside a
    transaction on it, so it must be a connection the caller does not commit on while
    iterating.
    """
    wanted = wanted_blocks(reader, blocks)
    kind = reader["kind"]
    if kind == "sql":
        return verified(reader, iter_sql_blocks(reader, wanted, conn))
    if kind == "version":
        return verified(reader, iter_version_blocks(reader, wanted, conn))
    if kind not in READERS:
        raise ValueError("reader %s has kind %r, which this worker cannot read; supported kinds: %s"
                         % (reader["reader_id"], kind, ", ".join(READERS)))
    return verified(reader, READERS[kind](reader, wanted))
