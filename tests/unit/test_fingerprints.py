"""Block fingerprints and reader source signatures (pyfuncs/fingerprints.py)."""

import os

import numpy as np

from pyfuncs import fingerprints


def test_a_fingerprint_changes_with_any_sample_byte_label_dtype_or_shape():
    xs, ys = np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.array([0, 1])
    fp = fingerprints.block_fingerprint(xs, ys)
    assert len(fp) == 16 and fp == fingerprints.block_fingerprint(xs.copy(), ys.copy())
    changed = xs.copy()
    changed[1, 2, 3] += 1e-6
    assert fingerprints.block_fingerprint(changed, ys) != fp
    assert fingerprints.block_fingerprint(xs, np.array([1, 1])) != fp
    assert fingerprints.block_fingerprint(xs.astype(np.float64), ys) != fp
    assert fingerprints.block_fingerprint(xs.reshape(2, 12), ys) != fp
    # raw samples: encoded images and texts; their boundaries count
    assert fingerprints.block_fingerprint([b"ab", b"c"], [0, 1]) != fingerprints.block_fingerprint([b"a", b"bc"], [0, 1])
    assert fingerprints.block_fingerprint(["ab", "c"], [0, 1]) == fingerprints.block_fingerprint(["ab", "c"], [0, 1])


def test_a_content_key_depends_on_every_block_and_on_which_reader_it_is():
    a, b = b"a" * 16, b"b" * 16
    assert fingerprints.content_key([a, b], [a]) != fingerprints.content_key([a], [b, a])
    assert fingerprints.content_key([a, b], [a]) != fingerprints.content_key([b, a], [a])
    assert fingerprints.content_key([a, b], [a]) == fingerprints.content_key([a, b], [a])


def test_a_file_signature_sees_a_rewrite_and_a_folder_change(tmp_path):
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.zeros((4, 2)))
    np.save(y, np.zeros(4))
    reader = {"kind": "npy", "source": str(x), "options": '{"y_path": "%s"}' % y}
    before = fingerprints.file_signature(reader)
    assert before == fingerprints.file_signature(reader)
    st = os.stat(y)
    np.save(y, np.ones(4))
    os.utime(y, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert fingerprints.file_signature(reader) != before
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "1.png").write_bytes(b"1")
    images = {"kind": "imagefolder", "source": str(folder), "options": {}}
    first = fingerprints.file_signature(images)
    (folder / "cat" / "2.png").write_bytes(b"2")
    assert fingerprints.file_signature(images) != first
    assert fingerprints.source_paths({"kind": "sql", "source": "SELECT 1"}) == []


def test_a_vision_csv_signature_sees_an_image_rewritten_under_an_unchanged_csv(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png", "unlisted.png"):
        (tmp_path / "img" / name).write_bytes(b"x")
    table = tmp_path / "labels.csv"
    table.write_text("path,label\nimg/a.png,cat\n%s,dog\n" % (tmp_path / "img" / "b.png"))
    reader = {"kind": "csv", "source": str(table), "input": "Vision", "options": {"label_column": "label"}}
    assert fingerprints.source_paths(reader) == [str(table), str(tmp_path / "img" / "a.png"),
                                                 str(tmp_path / "img" / "b.png")]
    before = fingerprints.file_signature(reader)
    (tmp_path / "img" / "unlisted.png").write_bytes(b"yy")  # no sample of the reader
    assert fingerprints.file_signature(reader) == before
    (tmp_path / "img" / "b.png").write_bytes(b"yy")
    assert fingerprints.file_signature(reader) != before
    # a tabular CSV is its file only, and a CSV that cannot be parsed names no image
    assert fingerprints.source_paths(dict(reader, input="Tabular")) == [str(table)]
    table.write_text("")
    assert fingerprints.source_paths(reader) == [str(table)]


def test_a_content_signature_changes_with_any_source_and_not_with_their_order():
    base = {"A": "1", "B": "2"}
    sig = fingerprints.content_signature(base)
    assert fingerprints.content_signature({"B": "2", "A": "1"}) == sig
    assert fingerprints.content_signature({"A": "1", "B": "3"}) != sig  # one source's data changed
    assert fingerprints.content_signature({"A": "1", "C": "2"}) != sig  # another source, the same data
    assert fingerprints.content_signature({"A": "1"}) != sig
    # a SQL reader's digest comes from PostgreSQL, a file reader's signature from its files
    assert fingerprints.source_signature({"reader_id": "S", "kind": "sql"}, lambda r: "digest of " + r) == "digest of S"
