"""Content fingerprints: cached work is served only for the data it was computed from.

shift does not own the data behind most readers: a user table behind a SQL reader
may be updated, a file rewritten. Two levels decide what is still valid:

* per block, a fingerprint of its samples and labels, computed by the worker that
  reads the block (``block_fingerprint``) and stored in ``shift.labels``; each row of
  ``shift.features`` keeps the fingerprint it was computed from, and only features
  whose fingerprint is the block's current one are served (the others are stale and
  computed again). A score keeps the ``content_key`` of the blocks it was computed on.
* per reader, a cheap signature of its source (``file_signature``: sizes, times and
  inodes of its files; for a SQL reader, ``shift._reader_digest``: one md5 over its
  rows, hashed by PostgreSQL). A query compares it with the signature the cached
  blocks were last validated against (``shift.reader_sources``); when it differs, a
  validate task re-reads and fingerprints the cached blocks (reading only, no model),
  and the blocks whose fingerprint changed get new labels, which makes their features
  and the scores over them stale.

A worker records the signature it saw before reading (a file's) or in the snapshot it
reads in (a SQL reader's), so a change during the read makes the next signature differ
and the blocks are validated again: stale data can cost a validation, never a wrong answer.
"""

import hashlib
import json
import os

import numpy as np

FINGERPRINT_BYTES = 16


def block_fingerprint(xs, ys):
    """16 bytes of blake2b over a block's samples (their bytes, dtype and shape) and its label ids."""
    h = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    if isinstance(xs, np.ndarray) and xs.dtype != object:
        _array(h, xs)
    else:
        h.update(b"L%d;" % len(xs))
        for x in xs:
            if isinstance(x, np.ndarray):
                _array(h, x)
            elif isinstance(x, (bytes, bytearray, memoryview)):
                h.update(b"B%d;" % len(x))
                h.update(x)
            else:
                data = str(x).encode("utf-8")
                h.update(b"S%d;" % len(data))
                h.update(data)
    _array(h, np.asarray(ys, dtype="<i8"))
    return h.digest()


def _array(h, a):
    a = np.ascontiguousarray(a)
    h.update(("A%s%s;" % (a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())


def content_key(train_fingerprints, test_fingerprints):
    """The content a score was computed on: the fingerprints of the train blocks it used and the test blocks."""
    h = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    for part in (train_fingerprints, test_fingerprints):
        h.update(b"%d;" % len(part))
        for fp in part:
            h.update(bytes(fp))
    return h.hexdigest()


def source_paths(reader):
    """The files and folders a file reader reads; none for a SQL reader."""
    opts = reader.get("options") or {}
    if isinstance(opts, str):
        opts = json.loads(opts)
    if reader["kind"] == "sql":
        return []
    paths = [reader["source"]]
    if reader["kind"] == "npy":
        paths.append(opts.get("y_path"))
    if reader["kind"] == "csv" and reader.get("input") == "Vision":
        paths += csv_image_paths(reader["source"], opts)
    return [p for p in paths if p]


def csv_image_paths(path, opts):
    """The image files a Vision CSV reader's rows name, in row order (relative to the CSV's folder).

    An image rewritten under an unchanged CSV changes its samples: the signature looks at
    each one. A CSV that cannot be read names none; the worker's read reports why."""
    from . import files

    base = os.path.dirname(path)
    try:
        with files.open_text(path, opts.get("encoding", "utf-8")) as f:
            header, records = files.csv_rows(f, path, opts)
            _, x_at, _ = files.csv_columns(header, opts["label_column"], opts.get("x_columns"), path)
            names = [row[x_at[0]] for _, row in records]
    except (OSError, ValueError, KeyError, IndexError, files.SourceError):
        return []
    return [n if os.path.isabs(n) else os.path.join(base, n) for n in names]


def file_signature(reader):
    """Hex digest of (path, size, mtime, inode) of every file under a file reader's paths.

    A rewrite changes the modification time (nanoseconds) and usually the size; a file
    replaced by a rename changes the inode. A folder (image folders, saved datasets) is
    walked; the image files a Vision CSV reader's rows name are looked at one by one.
    A missing file gives a signature of its own, so the worker's read reports it.
    """
    h = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    for root in source_paths(reader):
        for path in _files(root):
            try:
                st = os.stat(path)
                h.update(("%s\0%d\0%d\0%d\n" % (path, st.st_size, st.st_mtime_ns, st.st_ino)).encode())
            except OSError as e:
                h.update(("%s\0missing %s\n" % (path, e.errno)).encode())
    return h.hexdigest()


def source_signature(reader, sql_digest):
    """A plain reader's source as it is now: a SQL reader's row digest (`sql_digest(reader_id)`, which
    PostgreSQL computes), a file reader's file_signature."""
    return sql_digest(reader["reader_id"]) if reader["kind"] == "sql" else file_signature(reader)


def content_signature(source_signatures):
    """One signature of a reader's data from {plain reader: source_signature} of the readers behind it
    (a version's sources, or itself): what a Task2Vec embedding records it was computed from."""
    h = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    for reader_id, signature in sorted(source_signatures.items()):
        h.update(("%s\0%s\n" % (reader_id, signature)).encode())
    return h.hexdigest()


def _files(root):
    if not os.path.isdir(root):
        return [root]
    out = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        out.extend(os.path.join(folder, n) for n in sorted(names))
    return out


def blocks_upto(num_samples, block_size):
    return -(-int(num_samples) // int(block_size))
