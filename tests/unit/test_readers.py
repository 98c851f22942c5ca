"""Block reading of registered readers: npz end to end, the SQL path's pure helpers."""

import numpy as np
import pytest

from gpu_daemon import readers
from gpu_daemon.readers import NpzArray, block_range, decode_sql_x, iter_blocks, label_ids, reader_blocks


def _reader(path, n, classes, block_size, **options):
    opts = {"x_key": "x", "y_key": "y"}
    opts.update(options)
    return dict(reader_id="r1", kind="npz", source=str(path), options=opts, input="Vision", num_samples=n,
                classes=classes, block_size=block_size)


@pytest.fixture(params=["savez", "savez_compressed"])
def npz(tmp_path, request):
    """23 samples of 4x5 images with string labels, stored plain or compressed."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(23, 4, 5), dtype=np.uint8)
    y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, size=23)]
    path = tmp_path / "data.npz"
    getattr(np, request.param)(path, x=x, y=y, flat=x.reshape(23, -1).astype(np.float32), ints=np.arange(23) % 4)
    return path, x, y


def test_blocks_cover_the_samples_in_order(npz):
    path, x, y = npz
    reader = _reader(path, 23, ["cat", "dog", "emu"], block_size=5)
    assert reader_blocks(reader) == 5
    assert [block_range(reader, b) for b in range(5)] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    got = list(iter_blocks(reader, range(5)))
    assert [b for b, _, _ in got] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(np.concatenate([xs for _, xs, _ in got]), x)
    ids = np.concatenate([ys for _, _, ys in got])
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [["cat", "dog", "emu"].index(v) for v in y])
    assert len(got[-1][1]) == 3  # the tail block is short


def test_only_requested_blocks_in_increasing_order(npz):
    path, x, _ = npz
    reader = _reader(path, 23, ["cat", "dog", "emu"], block_size=5)
    got = list(iter_blocks(reader, [4, 1, 1, 3]))
    assert [b for b, _, _ in got] == [1, 3, 4]
    np.testing.assert_array_equal(got[0][1], x[5:10])
    np.testing.assert_array_equal(got[1][1], x[15:20])
    np.testing.assert_array_equal(got[2][1], x[20:23])
    with pytest.raises(ValueError, match="reader r1 has blocks 0 to 4; block 5 does not exist"):
        iter_blocks(reader, [0, 5])


def test_shape_option_and_numeric_labels(npz):
    path, x, _ = npz
    reader = _reader(path, 23, ["0", "1", "2", "3"], block_size=10, x_key="flat", y_key="ints", shape=[4, 5])
    (b, xs, ys), = iter_blocks(reader, [1])
    assert b == 1 and xs.shape == (10, 4, 5) and xs.dtype == np.float32
    np.testing.assert_array_equal(xs, x[10:20])
    np.testing.assert_array_equal(ys, np.arange(10, 20) % 4)


def test_clear_errors(npz, tmp_path):
    path, _, _ = npz
    with pytest.raises(ValueError, match=r"reader r1 has labels 'emu' that are not among its registered classes"):
        list(iter_blocks(_reader(path, 23, ["cat", "dog"], block_size=23), [0]))
    with pytest.raises(ValueError, match="has no array 'pixels'; it has"):
        list(iter_blocks(_reader(path, 23, ["cat", "dog", "emu"], block_size=5, x_key="pixels"), [0]))
    with pytest.raises(ValueError, match="now has 23 samples but reader r1 was registered with 30"):
        list(iter_blocks(_reader(path, 30, ["cat", "dog", "emu"], block_size=5), [0]))
    with pytest.raises(ValueError, match="does not exist on this worker"):
        list(iter_blocks(_reader(tmp_path / "gone.npz", 23, ["cat"], block_size=5), [0]))
    with pytest.raises(ValueError, match="kind 'csv'"):
        iter_blocks(dict(_reader(path, 23, ["cat"], 5), kind="csv"), [0])
    with pytest.raises(ValueError, match="needs a database connection"):
        list(iter_blocks(dict(_reader(path, 23, ["cat"], 5), kind="sql", source="SELECT 1"), [0]))


def test_npz_array_slices_without_loading_everything(tmp_path):
    x = np.arange(1000 * 6, dtype=np.float64).reshape(1000, 2, 3)
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / ("%s.npz" % save.__name__)
        save(path, x=x, xf=np.asfortranarray(x))
        for key in ("x", "xf"):
            with NpzArray(str(path), key) as arr:
                assert len(arr) == 1000
                np.testing.assert_array_equal(arr.rows(990, 1000), x[990:])
                np.testing.assert_array_equal(arr.rows(3, 7), x[3:7])  # going back reopens a stream
    with NpzArray(str(tmp_path / "savez.npz"), "x") as arr:
        assert isinstance(arr._memmap, np.memmap)  # stored members are mapped, not read


def test_objects_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([b"a", None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ValueError, match="Python objects"):
        NpzArray(str(path), "x", "r9")


# -- pure helpers of the SQL path ---------------------------------------------------------------

def test_label_ids_match_registration_text():
    reader = dict(reader_id="r2", classes=["1", "2", "10", "True", "1.5", "b'x'"])
    np.testing.assert_array_equal(label_ids(reader, ["10", "1", "2"]), [2, 0, 1])  # SQL gives y::text
    np.testing.assert_array_equal(label_ids(reader, np.array([10, 1, 2])), [2, 0, 1])
    np.testing.assert_array_equal(label_ids(reader, np.array([1.5])), [4])
    np.testing.assert_array_equal(label_ids(reader, np.array([True])), [3])
    np.testing.assert_array_equal(label_ids(reader, np.array([b"x"])), [5])  # str() of bytes, as registration does
    with pytest.raises(ValueError, match="reader r2 has labels '7'"):
        label_ids(reader, [7])


def test_decode_sql_x():
    png = b"\x89PNG..."
    assert decode_sql_x(png) == png and isinstance(decode_sql_x(memoryview(png)), bytes)
    arr = decode_sql_x([0.5, 1.5, 2.5, 3.5])
    assert arr.dtype == np.float32 and arr.shape == (4,)
    assert decode_sql_x([[0.0, 1.0], [2.0, 3.0]]).shape == (2, 2)  # multidimensional real[][]
    assert decode_sql_x(list(range(12)), (3, 4)).shape == (3, 4)
    assert decode_sql_x(list(range(12))).dtype.kind == "i"  # integer pixels keep the integer value rule
    from decimal import Decimal
    assert decode_sql_x([Decimal("0.5"), Decimal("1")]).dtype == np.float32
    with pytest.raises(ValueError, match="NULL"):
        decode_sql_x([1.0, None])
    assert decode_sql_x("a sentence") == "a sentence"


def test_reader_query_wraps_the_source():
    q = readers.reader_query("SELECT img AS x, label AS y FROM t ORDER BY id;  ")
    text = q.as_string(None)
    assert text == "SELECT r.x, r.y::text AS y FROM (SELECT img AS x, label AS y FROM t ORDER BY id) AS r"
