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
