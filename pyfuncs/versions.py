"""Mutable readers (seed 000 §3.1 "Tracking Data Changes via Change- and Add-Readers").

A mutable reader is an initial reader plus an ordered list of steps: change-readers (each
with the indices of the samples it replaces), add-readers and delete-readers (the indices to
remove, the paper's future work). Each step makes a new version, a reader of its own named
``<reader>@<k>``; the mutable reader's name means its latest version. A version is an
ordered composition of segments (source reader, [start, stop) of its samples), so features
stay cached per (model, source reader, block): a change-reader costs inference only on its
own samples, and the proxy task assembles a version's features from its sources' blocks
(gpu_daemon/assemble.py).

Successive halving reads a version in its *halving order*: the sample order of its first
version, with each add-reader's samples spread uniformly over it (seed 000 §5, scenario 2)
instead of appended at the end. Every prefix, so every chunk of a halving round, then holds
the added samples in proportion, which in expectation is what a full reshuffle gives (the
hyper-geometric argument of §5), while the features of the old samples stay where they
were cached. Whole-reader proxies read the version in its own order.
"""

import json

import numpy as np

from .errors import DUPLICATE_OBJECT, INVALID_PARAMETER, WRONG_OBJECT_TYPE, ShiftError

VERSION_SEPARATOR = "@"
SPREAD_NOTE = "add-reader samples spread uniformly over the halving chunks (seed 000 §5)"


# -- compositions: a version as arrays (source, index in the source), one entry per sample -----------

class Composition:
    """Sample i of a version is sample idx[i] of reader sources[src[i]]."""

    def __init__(self, sources, src, idx):
        self.sources, self.src, self.idx = list(sources), np.asarray(src, np.int64), np.asarray(idx, np.int64)

    def __len__(self):
        return len(self.src)

    @classmethod
    def from_segments(cls, segments):
        sources, src, idx = [], [], []
        for reader_id, start, stop in segments:
            if reader_id not in sources:
                sources.append(reader_id)
            src.append(np.full(stop - start, sources.index(reader_id), np.int64))
            idx.append(np.arange(start, stop, dtype=np.int64))
        return cls(sources, np.concatenate(src) if src else [], np.concatenate(idx) if idx else [])

    def segments(self):
        """Maximal runs of consecutive samples of one source: [[reader, start, stop], ...]."""
        if not len(self):
            return []
        breaks = np.flatnonzero((np.diff(self.src) != 0) | (np.diff(self.idx) != 1)) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(self)]])
        return [[self.sources[int(self.src[a])], int(self.idx[a]), int(self.idx[b - 1]) + 1]
                for a, b in zip(starts, stops)]

    def _code(self, reader_id):
        if reader_id not in self.sources:
            self.sources.append(reader_id)
        return self.sources.index(reader_id)

    def change(self, step, indices):
        """Sample j of the change-reader's composition `step` replaces sample indices[j]."""
        src, idx = self.src.copy(), self.idx.copy()
        codes = np.array([self._code(s) for s in step.sources], np.int64)
        src[indices], idx[indices] = codes[step.src], step.idx
        return Composition(self.sources, src, idx)

    def add(self, step):
        codes = np.array([self._code(s) for s in step.sources], np.int64)
        return Composition(self.sources, np.concatenate([self.src, codes[step.src]]),
                           np.concatenate([self.idx, step.idx]))

    def delete(self, indices):
        keep = np.ones(len(self), bool)
        keep[indices] = False
        return Composition(self.sources, self.src[keep], self.idx[keep])


# -- the halving order --------------------------------------------------------------------------------

def spread(order, added):
    """The halving order after an add-reader: `added` new positions spread evenly over `order`.

    Old sample of rank i sits at (i + 1/2) / n of the order, new sample j at (j + 1/2) / m;
    a stable merge by that key keeps both orders and gives every prefix of length L
    L·m/(n+m) new samples, within one: each chunk of a halving round gets its share
    (seed 000 §5: "uniformly distributes the new samples into the existing chunks")."""
    order, added = np.asarray(order, np.int64), np.asarray(added, np.int64)
    n, m = len(order), len(added)
    if not m:
        return order
    keys = np.concatenate([(np.arange(n) + 0.5) / max(n, 1), (np.arange(m) + 0.5) / m])
    merged = np.concatenate([order, added])
    return merged[np.argsort(keys, kind="stable")]


def drop_positions(order, deleted, n):
    """The halving order after deleting positions `deleted` of a version of n samples, renumbered."""
    order = np.asarray(order, np.int64)
    keep = np.ones(n, bool)
    keep[np.asarray(deleted, np.int64)] = False
    renumber = np.cumsum(keep) - 1
    return renumber[order[keep[order]]]


def to_runs(order):
    """[[start, stop], ...] runs of consecutive positions: a compact halving order."""
    order = np.asarray(order, np.int64)
    if not len(order):
        return []
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    starts, stops = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(order)]])
    return [[int(order[a]), int(order[b - 1]) + 1] for a, b in zip(starts, stops)]


def from_runs(runs):
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in runs]) if runs else np.empty(0, np.int64)


def options(reader):
    opts = reader["options"]
    return json.loads(opts) if isinstance(opts, str) else (opts or {})


def halving_order(reader):
    """The positions of a version in halving order (its own order where no add step spread any)."""
    opts = options(reader)
    if opts.get("halving_order") is None:
        return np.arange(reader["num_samples"], dtype=np.int64)
    return from_runs(opts["halving_order"])


def positions(reader, fidelity):
    """The positions of a version a proxy at `fidelity` reads: all in order, or a halving prefix."""
    n = reader["num_samples"]
    if fidelity is None or fidelity >= n:
        return np.arange(n, dtype=np.int64)
    return halving_order(reader)[:fidelity]


BLOCK_CODE_STRIDE = 1 << 32  # a block code is source number * stride + block


def block_codes(reader, block_sizes):
    """Per sample of a version, in halving order, the code of the source block holding it, and
    {source reader: its number in the codes}: what the cost model counts cached blocks by."""
    comp = Composition.from_segments(options(reader)["segments"])
    order = halving_order(reader)
    src, idx = comp.src[order], comp.idx[order]
    sizes = np.array([block_sizes[s] for s in comp.sources], np.int64)
    return src * BLOCK_CODE_STRIDE + idx // sizes[src], {s: i for i, s in enumerate(comp.sources)}


def needed_blocks(reader, fidelity, block_sizes):
    """{source reader: sorted blocks} a proxy at `fidelity` over this version reads."""
    comp = Composition.from_segments(options(reader)["segments"])
    pos = positions(reader, fidelity)
    out = {}
    for code, source in enumerate(comp.sources):
        mine = comp.idx[pos[comp.src[pos] == code]]
        if len(mine):
            out[source] = sorted(set((mine // block_sizes[source]).tolist()))
    return out


def source_ids(reader):
    """The plain readers whose cached blocks a reader's samples are: a version's sources, or itself."""
    if reader["kind"] == "version":
        return sorted({s[0] for s in options(reader)["segments"]})
    return [reader["reader_id"]]


def content_blocks(reader, fidelity, block_sizes):
    """[(plain reader, block)] a proxy at `fidelity` (None: all) over this reader reads, in a fixed order:
    what the content key of its score is made of (fingerprints.content_key)."""
    if reader["kind"] == "version":
        return [(src, b) for src, blocks in needed_blocks(reader, fidelity, block_sizes).items() for b in blocks]
    n = reader["num_samples"] if fidelity is None else min(int(fidelity), reader["num_samples"])
    size = block_sizes[reader["reader_id"]]
    return [(reader["reader_id"], b) for b in range(-(-n // size))]


def source_blocks(db, reader, fidelity):
    """[(source reader row, blocks)] a proxy at `fidelity` over this version reads."""
    segments = options(reader)["segments"]
    rows = {r["reader_id"]: r for r in db.execute("SELECT * FROM shift.readers WHERE reader_id = ANY($1)",
                                                  ["text[]"], [sorted({s[0] for s in segments})])}
    need = needed_blocks(reader, fidelity, {k: r["block_size"] for k, r in rows.items()})
    return [(rows[src], blocks) for src, blocks in need.items()]


# -- the SQL functions ------------------------------------------------------------------------------------

def _reader(db, name):
    from .arguments import resolve_reader

    return resolve_reader(db, name)


def _mutable(db, name):
    from .arguments import find_reader

    row = find_reader(db, name)
    if row["kind"] != "mutable":
        raise ShiftError("reader %s is not a mutable reader" % name, WRONG_OBJECT_TYPE,
                         hint="make one over it first: SELECT shift.create_mutable_reader('%s_m', %r)"
                              % (name.split(VERSION_SEPARATOR)[0], name))
    return row


def _latest(db, mutable):
    return db.one("SELECT * FROM shift.readers WHERE reader_id = $1", ["text"],
                  ["%s%s%d" % (mutable["reader_id"], VERSION_SEPARATOR, options(mutable)["latest"])])


def composition(db, reader):
    """A reader's samples as a composition of plain readers; a mutable reader is its latest version."""
    if reader["kind"] == "mutable":
        reader = _latest(db, reader)
    if reader["kind"] == "version":
        return Composition.from_segments(options(reader)["segments"])
    return Composition([reader["reader_id"]], np.zeros(reader["num_samples"], np.int64),
                       np.arange(reader["num_samples"], dtype=np.int64))


def _shape_of(db, reader):
    """A version's sample shape is its first source's."""
    if reader["kind"] == "version":
        first = options(reader)["segments"][0][0]
        reader = db.one("SELECT * FROM shift.readers WHERE reader_id = $1", ["text"], [first]) or reader
    return sample_shape(reader) if reader["kind"] != "version" else None


def _require_like(db, base, step, what):
    """A step's samples must be of the reader's modality and sample shape."""
    if base["input"] != step["input"]:
        raise ShiftError("%s %s holds %s samples, but reader %s holds %s samples"
                         % (what, step["reader_id"], step["input"], base["reader_id"], base["input"]),
                         INVALID_PARAMETER, hint="a step must have the modality of the reader it changes")
    a, b = _shape_of(db, base), _shape_of(db, step)
    if a is not None and b is not None and a != b:
        raise ShiftError("%s %s has samples of shape %s, but reader %s has samples of shape %s"
                         % (what, step["reader_id"], list(b), base["reader_id"], list(a)), INVALID_PARAMETER,
                         hint="a step must have the sample shape of the reader it changes")


def sample_shape(reader):
    """The shape of one sample where the registration knows it: an array file's header, a SQL reader's
    `shape` option; None where samples are decoded later (images, text, tables)."""
    import zipfile

    from . import reader_registry

    opts = options(reader)
    try:
        if reader["kind"] == "npy":
            return tuple(reader_registry._npy_header(reader["reader_id"], reader["source"])[0][1:])
        if reader["kind"] == "npz":
            with zipfile.ZipFile(reader["source"]) as archive:
                shape = reader_registry._npz_member(archive, reader["source"], reader["reader_id"],
                                                    opts.get("x_key", "x"))[0]
            return tuple(shape[1:])
    except (OSError, ShiftError, KeyError, zipfile.BadZipFile):
        return None
    if opts.get("shape") is not None:
        return tuple(int(v) for v in opts["shape"])
    return None


def _indices(values, n, name, what):
    """Checked 0-based sample indices of a reader of n samples: present, in range, distinct."""
    if values is None or any(v is None for v in values):
        raise ShiftError("the indices of %s must not be null" % what, INVALID_PARAMETER)
    idx = np.asarray([int(v) for v in values], np.int64)
    bad = idx[(idx < 0) | (idx >= n)]
    if len(bad):
        raise ShiftError("index %d is out of range for reader %s of %d samples" % (bad[0], name, n), INVALID_PARAMETER,
                         detail="%d of the %d indices are outside 0 .. %d" % (len(bad), len(idx), n - 1),
                         hint="indices are 0-based sample positions of the reader's latest version")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ShiftError("index %d is given %d times for %s" % (uniq[counts > 1][0], counts[counts > 1][0], what),
                         INVALID_PARAMETER, hint="each sample is replaced or deleted at most once per step")
    return idx


def create_mutable_reader(db, reader_id, initial):
    """A mutable reader whose version 1 is the samples of reader `initial`, in its order."""
    from .reader_registry import _check_new_reader

    _check_new_reader(db, reader_id, 1)
    base = _reader(db, initial)
    comp = composition(db, base)
    step = {"step": "initial", "reader": base["reader_id"], "samples": len(comp)}
    order = halving_order(base) if base["kind"] == "version" else None
    _store(db, reader_id, base, base, 1, comp, list(base["classes"]), step, order, create=True)
    return 1


def change_reader(db, reader_id, change, indices):
    """Version k+1: sample j of reader `change` replaces sample indices[j] of version k."""
    mutable = _mutable(db, reader_id)
    latest = _latest(db, mutable)
    step_reader = _reader(db, change)
    _require_like(db, latest, step_reader, "change-reader")
    what = "change-reader %s" % step_reader["reader_id"]
    idx = _indices(indices, latest["num_samples"], mutable["reader_id"], what)
    if len(idx) != step_reader["num_samples"]:
        raise ShiftError("change-reader %s has %d samples but %d indices are given"
                         % (step_reader["reader_id"], step_reader["num_samples"], len(idx)), INVALID_PARAMETER,
                         hint="give one index per sample of the change-reader, in its order")
    comp = composition(db, latest).change(composition(db, step_reader), idx)
    step = {"step": "change", "reader": step_reader["reader_id"], "samples": len(idx)}
    return _next(db, mutable, latest, step_reader, comp, step, halving_order(latest))


def add_to_reader(db, reader_id, add):
    """Version k+1: version k followed by the samples of reader `add`."""
    mutable = _mutable(db, reader_id)
    latest = _latest(db, mutable)
    step_reader = _reader(db, add)
    _require_like(db, latest, step_reader, "add-reader")
    comp = composition(db, latest).add(composition(db, step_reader))
    n = latest["num_samples"]
    order = spread(halving_order(latest), np.arange(n, len(comp), dtype=np.int64))
    step = {"step": "add", "reader": step_reader["reader_id"], "samples": len(comp) - n, "halving": SPREAD_NOTE}
    return _next(db, mutable, latest, step_reader, comp, step, order)


def delete_from_reader(db, reader_id, indices):
    """Version k+1: version k without the samples at `indices`."""
    mutable = _mutable(db, reader_id)
    latest = _latest(db, mutable)
    n = latest["num_samples"]
    idx = _indices(indices, n, mutable["reader_id"], "the delete step")
    if len(idx) == n:
        raise ShiftError("deleting all %d samples of reader %s leaves it empty" % (n, mutable["reader_id"]),
                         INVALID_PARAMETER, hint="drop the reader instead: SELECT shift.drop_reader(%r)"
                                                 % mutable["reader_id"])
    if not len(idx):
        raise ShiftError("no indices to delete from reader %s" % mutable["reader_id"], INVALID_PARAMETER)
    comp = composition(db, latest).delete(idx)
    step = {"step": "delete", "reader": None, "samples": len(idx)}
    return _next(db, mutable, latest, None, comp, step, drop_positions(halving_order(latest), idx, n))


def _next(db, mutable, latest, step_reader, comp, step, order):
    from .reader_registry import label_order

    classes = list(latest["classes"])
    if step_reader is not None:
        classes = sorted(set(classes) | set(step_reader["classes"]), key=label_order)
    version = options(mutable)["latest"] + 1
    _store(db, mutable["reader_id"], mutable, latest, version, comp, classes, step, order)
    return version


def _store(db, reader_id, mutable, base, version, comp, classes, step, order, create=False):
    """Everything checked: one call of the SECURITY DEFINER shift._store_version writes the version."""
    identity = order is None or np.array_equal(order, np.arange(len(comp)))
    opts = {"mutable": reader_id, "version": version, "step": step, "segments": comp.segments(),
            "halving_order": None if identity else to_runs(order)}
    row = {"reader_id": "%s%s%d" % (reader_id, VERSION_SEPARATOR, version), "kind": "version",
           "source": reader_id, "options": opts, "input": base["input"], "num_samples": len(comp),
           "classes": classes, "block_size": base["block_size"]}
    if create and db.one("SELECT 1 AS x FROM shift.readers WHERE lower(reader_id) = lower($1)", ["text"],
                         [reader_id]):
        raise ShiftError("reader %s is already registered" % reader_id, DUPLICATE_OBJECT)
    db.execute("SELECT shift._store_version(current_user, $1, $2)", ["text", "jsonb"],
               [reader_id, json.dumps(row)])


def reader_versions(db, reader_id):
    """(version, reader_id, step, step_reader, samples, num_samples, classes, created_at) of each version."""
    mutable = _mutable(db, reader_id)
    rows = db.execute(
        "SELECT (options->>'version')::int AS version, reader_id, options->'step'->>'step' AS step, "
        "options->'step'->>'reader' AS step_reader, (options->'step'->>'samples')::bigint AS samples, "
        "num_samples, classes, registered_at FROM shift.readers WHERE kind = 'version' AND source = $1 "
        "ORDER BY 1", ["text"], [mutable["reader_id"]])
    return [(r["version"], r["reader_id"], r["step"], r["step_reader"], r["samples"], r["num_samples"],
             r["classes"], r["registered_at"]) for r in rows]
