"""Features and labels of a version of a mutable reader, assembled from its sources' cached blocks.

A version (pyfuncs/versions.py) is a composition of segments of plain readers. Each source
block it needs is read from shift.features and shift.labels; its rows are viewed in place and
copied once, straight into the version's array, by the version's index map. Labels are
renumbered from each source's classes to the version's (a step may bring a new class).
"""

import numpy as np

from pyfuncs import proxies, versions


# what a proxy reads of the cache: the columns of shift.features with its width and its float32 bytes
OUTPUTS = {"features": ("dim", "data"), "logits": ("num_logits", "logits")}


class NoHead(LookupError):
    """The model has no classifier head, so no source-task logits are cached."""

    def __init__(self, model_id):
        super().__init__("model %s has no classifier head: LEEP and NCE score the outputs of the source task's "
                         "classifier, which it lacks; rank it by a metric of its features (LogME, SFDA, ...)"
                         % model_id)


class _Version:
    """A version's rows as (source, index) pairs in the order a proxy at `limit` reads them."""

    def __init__(self, conn, model_id, reader, limit, outputs="features"):
        self.conn, self.model_id, self.reader = conn, model_id, reader
        self.width, self.data = OUTPUTS[outputs]
        self.comp = versions.Composition.from_segments(versions.options(reader)["segments"])
        self.pos = versions.positions(reader, limit)
        meta = {r[0]: (r[1], list(r[2])) for r in conn.execute(
            "SELECT reader_id, block_size, classes FROM shift.readers WHERE reader_id = ANY(%s)",
            (self.comp.sources,)).fetchall()}
        index = {c: i for i, c in enumerate(reader["classes"])}
        self.sources = [(source, meta[source][0], np.array([index[c] for c in meta[source][1]], np.int64))
                        for source in self.comp.sources]

    def features(self, pos):
        """(features, labels) of the version's rows at `pos`, each source block they need read once."""
        src, idx = self.comp.src[pos], self.comp.idx[pos]
        out, labels = None, np.empty(len(pos), np.int64)
        for code, (source, block_size, relabel) in enumerate(self.sources):
            rows_here = np.flatnonzero(src == code)
            if not len(rows_here):
                continue
            blocks = idx[rows_here] // block_size
            wanted = sorted(set(blocks.tolist()))
            for group in range(0, len(wanted), _BLOCKS_PER_READ):
                numbers = wanted[group:group + _BLOCKS_PER_READ]
                cached = {r[0]: r[1:] for r in self.conn.execute(
                    "SELECT f.block, f.num_rows, f.%s, f.%s, l.y FROM shift.features f "
                    "JOIN shift.labels l USING (reader_id, block) WHERE f.model_id = %%s AND f.reader_id = %%s "
                    "AND f.block = ANY(%%s) AND f.fingerprint = l.fingerprint" % (self.width, self.data),
                    (self.model_id, source, numbers), binary=True)}  # bytea as it is stored, not hex text
                lacking = [b for b in numbers if b not in cached]
                if lacking:
                    raise LookupError("features of %s on %s (read by %s) lack block %d in the cache"
                                      % (self.model_id, source, self.reader["reader_id"], lacking[0]))
                for block in numbers:
                    num_rows, dim, data, y = cached.pop(block)
                    if data is None:
                        raise NoHead(self.model_id)
                    feats = np.frombuffer(data, dtype="<f4").reshape(num_rows, dim)
                    if out is None:
                        out = np.empty((len(pos), dim), np.float32)
                    here = rows_here[blocks == block]
                    offsets = idx[here] - block * block_size
                    out[here] = feats[offsets]
                    labels[here] = relabel[np.asarray(y, np.int64)[offsets]]
        return out, labels


# source blocks fetched by one statement: few round trips, and only these blocks' bytes held beside the result
_BLOCKS_PER_READ = 4


def version_blocks(conn, model_id, reader, dim, limit=None, outputs="features"):
    """One model's features (or source-task logits) over a version, in its order (or its halving prefix of
    `limit`), as proxies.Blocks of the version's block size: each block of rows assembled when it is read. Only
    those of their blocks' current content count (pyfuncs/fingerprints.py)."""
    version = _Version(conn, model_id, reader, limit, outputs)
    rows, n = reader["block_size"], len(version.pos)

    def read(numbers):
        for b in numbers:
            yield version.features(version.pos[b * rows:(b + 1) * rows])

    # held whole, each source block is read once (block by block, a change-reader's blocks would be read
    # again for every block of the version its samples are spread over)
    return proxies.Blocks(read, n, dim, max(1, -(-n // rows)), rows, read_all=lambda: version.features(version.pos))
