"""Features and labels of a version of a mutable reader, assembled from its sources' cached blocks.

A version (pyfuncs/versions.py) is a composition of segments of plain readers. Each source
block it needs is read once from shift.features and shift.labels; its rows are viewed in
place and copied once, straight into the version's array, by the version's index map. Labels
are renumbered from each source's classes to the version's (a step may bring a new class).
"""

import numpy as np

from pyfuncs import versions


def read_version_features(conn, model_id, reader, limit=None, fingerprints_out=None):
    """(features, labels) of one model over a version, in its order, or its halving prefix of `limit`.

    Only features of their blocks' current content count (pyfuncs/fingerprints.py); the fingerprints of
    the source blocks read are appended to fingerprints_out in the order of versions.content_blocks."""
    comp = versions.Composition.from_segments(versions.options(reader)["segments"])
    pos = versions.positions(reader, limit)
    src, idx = comp.src[pos], comp.idx[pos]
    meta = {r[0]: (r[1], list(r[2])) for r in conn.execute(
        "SELECT reader_id, block_size, classes FROM shift.readers WHERE reader_id = ANY(%s)",
        (comp.sources,)).fetchall()}
    index = {c: i for i, c in enumerate(reader["classes"])}
    out, labels = None, np.empty(len(pos), np.int64)
    for code, source in enumerate(comp.sources):
        rows_here = np.flatnonzero(src == code)
        if not len(rows_here):
            continue
        block_size, classes = meta[source]
        relabel = np.array([index[c] for c in classes], np.int64)
        blocks = idx[rows_here] // block_size
        wanted = sorted(set(blocks.tolist()))
        cached = {r[0]: r[1:] for r in conn.execute(
            "SELECT f.block, f.num_rows, f.dim, f.data, l.y, l.fingerprint FROM shift.features f "
            "JOIN shift.labels l USING (reader_id, block) "
            "WHERE f.model_id = %s AND f.reader_id = %s AND f.block = ANY(%s) AND f.fingerprint = l.fingerprint",
            (model_id, source, wanted))}
        lacking = [b for b in wanted if b not in cached]
        if lacking:
            raise LookupError("features of %s on %s (read by %s) lack block %d in the cache"
                              % (model_id, source, reader["reader_id"], lacking[0]))
        for block in wanted:
            num_rows, dim, data, y, fingerprint = cached[block]
            if fingerprints_out is not None:
                fingerprints_out.append(bytes(fingerprint))
            feats = np.frombuffer(data, dtype="<f4").reshape(num_rows, dim)
            if out is None:
                out = np.empty((len(pos), dim), np.float32)
            here = rows_here[blocks == block]
            offsets = idx[here] - block * block_size
            out[here] = feats[offsets]
            labels[here] = relabel[np.asarray(y, np.int64)[offsets]]
    return out, labels
