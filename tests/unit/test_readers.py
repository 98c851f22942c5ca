"""Block reading of registered readers: every file kind end to end, the SQL path's pure helpers."""

import numpy as np
import pytest
import torch

from gpu_daemon import preprocess as prep
from gpu_daemon import readers
from gpu_daemon.readers import NpzArray, block_range, decode_sql_x, iter_blocks, label_ids, reader_blocks
from pyfuncs.errors import ShiftError


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
    with pytest.raises(ValueError, match="kind 'parquet'.*supported kinds: sql, version, npz, npy, csv, imagefolder, hf, tfds"):
        iter_blocks(dict(_reader(path, 23, ["cat"], 5), kind="parquet"), [0])
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
        assert arr._rows is not None and arr._memmap is None  # stored members are read at their offset


def test_objects_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([b"a", None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ShiftError, match="Python objects") as info:
        NpzArray(str(path), "x", "r9")
    assert info.value.sqlstate == "22000" and "allow_pickle" not in info.value.message + info.value.hint


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


def test_reader_query_calls_the_reading_function():
    q = readers.reader_query({"reader_id": "R", "read_function": 'shift_readers."TrainDigits"()'})
    assert q.as_string(None) == 'SELECT r.x, r.y FROM shift_readers."TrainDigits"() AS r'
    # never the query text itself: that would run with the worker's privileges
    with pytest.raises(ValueError, match="no reading function"):
        readers.reader_query({"reader_id": "R", "source": "SELECT 1 AS x, 2 AS y ORDER BY 1"})
    with pytest.raises(ValueError, match="takes arguments"):
        readers.reader_query({"reader_id": "R", "read_function": "shift_readers.r(integer)"})


# -- more reader kinds: sample count, order and labels against the library that wrote the data ------

from pyfuncs import files  # noqa: E402
from tests import artifacts  # noqa: E402


def _file_reader(kind, source, n, classes, block_size, input="Vision", **options):
    return dict(reader_id="r1", kind=kind, source=str(source), options=options, input=input, num_samples=n,
                classes=classes, block_size=block_size)


def _all(reader, blocks=None):
    got = list(iter_blocks(reader, range(reader_blocks(reader)) if blocks is None else blocks))
    xs = [x for _, block_xs, _ in got for x in block_xs]
    return [b for b, _, _ in got], xs, np.concatenate([ys for _, _, ys in got])


def test_npy_reader(tmp_path):
    x = np.random.default_rng(0).normal(size=(11, 2, 3)).astype(np.float32)
    y = np.array([3, 1, 2] * 3 + [1, 1])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    reader = _file_reader("npy", tmp_path / "x.npy", 11, ["1", "2", "3"], 4, y_path=str(tmp_path / "y.npy"))
    blocks, xs, ids = _all(reader)
    assert blocks == [0, 1, 2]
    np.testing.assert_array_equal(np.stack(xs), x)
    np.testing.assert_array_equal(ids, y - 1)
    (_, part, _), = iter_blocks(reader, [2])
    np.testing.assert_array_equal(part, x[8:])
    np.save(tmp_path / "xf.npy", np.asfortranarray(x))  # rows not contiguous in the file
    _, xs, _ = _all(dict(reader, source=str(tmp_path / "xf.npy")))
    np.testing.assert_array_equal(np.stack(xs), x)
    with pytest.raises(ValueError, match="now has 11 samples but reader r1 was registered with 12"):
        list(iter_blocks(dict(reader, num_samples=12), [0]))


def test_csv_reader_tabular_text_and_image_paths(tmp_path):
    import gzip

    rows = [(i, i * 0.5, -i, ["b", "a", "c"][i % 3], artifacts.TEXTS[i % 8]) for i in range(10)]
    header = "id,f1,f2,label,text\n"
    body = "".join('%d,%s,%d,%s,"%s"\n' % r for r in rows)
    cut = body.index("\n", 30) + 1
    (tmp_path / "t.csv").write_text(header + body[:cut] + "\n" + body[cut:])  # a blank line is not a sample
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        f.write(header + body)
    n, labels, names, first = files.csv_summary(str(tmp_path / "t.csv"), "label", ["id", "f1", "f2"])
    assert (n, labels, names, first) == (10, {"a", "b", "c"}, ["id", "f1", "f2"], ["0", "0.0", "0"])
    assert files.guess_csv_input(first, 3) == "Tabular"
    for name in ("t.csv", "t.csv.gz"):
        reader = _file_reader("csv", tmp_path / name, 10, ["a", "b", "c"], 4, input="Tabular", label_column="label",
                              x_columns=["id", "f1", "f2"])
        blocks, xs, ids = _all(reader)
        np.testing.assert_array_equal(np.stack(xs), np.array([r[:3] for r in rows], dtype=np.float32))
        np.testing.assert_array_equal(ids, [["a", "b", "c"].index(r[3]) for r in rows])
        (b, part, part_ids), = iter_blocks(reader, [1])
        assert part.dtype == np.float32 and part.shape == (4, 3) and part[0, 0] == 4
    text = _file_reader("csv", tmp_path / "t.csv", 10, ["a", "b", "c"], 3, input="Text", label_column="label",
                        x_columns=["text"])
    assert _all(text)[1] == [r[4] for r in rows]

    imgs = artifacts.images(3, size=8)
    (tmp_path / "img").mkdir()
    for i, a in enumerate(imgs):
        (tmp_path / "img" / ("%d.png" % i)).write_bytes(artifacts.png_bytes(a))
    (tmp_path / "i.csv").write_text("path,label\n" + "".join("img/%d.png,%d\n" % (i, i % 2) for i in range(3)))
    n, labels, names, first = files.csv_summary(str(tmp_path / "i.csv"), "label")
    assert files.guess_csv_input(first, len(names)) == "Vision"
    reader = _file_reader("csv", tmp_path / "i.csv", 3, ["0", "1"], 2, label_column="label", x_columns=["path"])
    _, xs, ids = _all(reader)
    assert xs == [artifacts.png_bytes(a) for a in imgs] and list(ids) == [0, 1, 0]


def test_csv_reader_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("a,label\n1,x\nzz,y\n")
    reader = _file_reader("csv", tmp_path / "bad.csv", 2, ["x", "y"], 2, input="Tabular", label_column="label",
                          x_columns=["a"])
    with pytest.raises(ValueError, match=r"line 3 of csv file .* has 'zz' where a number is expected"):
        list(iter_blocks(reader, [0]))
    with pytest.raises(ValueError, match="fewer samples than the 5"):
        list(iter_blocks(dict(reader, num_samples=5, block_size=5), [0]))
    with pytest.raises(ValueError, match="has no column 'y'"):
        list(iter_blocks(dict(reader, options=dict(reader["options"], label_column="y")), [0]))
    (tmp_path / "ragged.csv").write_text("a,label\n1,x,3\n")
    with pytest.raises(files.SourceError, match="line 2 of csv file .* has 3 fields, the header has 2"):
        files.csv_summary(str(tmp_path / "ragged.csv"), "label")


def test_imagefolder_reader_matches_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    root = artifacts.image_folder(tmp_path / "folder")
    ref = ImageFolder(str(root))
    counts = files.imagefolder_counts(str(root))
    assert counts == [("cat", 3), ("dog", 4), ("emu", 2)] and [c for c, _ in counts] == ref.classes
    reader = _file_reader("imagefolder", root, 9, ref.classes, 4)
    blocks, xs, ids = _all(reader)
    assert blocks == [0, 1, 2]
    assert xs == [open(p, "rb").read() for p, _ in ref.samples]  # the same files in the same order
    assert list(ids) == [t for _, t in ref.samples]
    (_, part, part_ids), = iter_blocks(reader, [1])  # a block spanning two classes
    assert part == xs[4:8] and list(part_ids) == list(ids[4:8])
    with pytest.raises(ValueError, match="now has classes cat, dog, emu but reader r1 was registered with cat, dog"):
        list(iter_blocks(dict(reader, classes=["cat", "dog"]), [0]))
    only_png = _file_reader("imagefolder", root, 0, ref.classes, 4, extensions=["jpg"])
    assert files.imagefolder_counts(str(root), files.extensions(only_png["options"])) == \
        [("cat", 0), ("dog", 0), ("emu", 0)]


def test_hf_datasets_reader_matches_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    from gpu_daemon.readers import describe_hf

    path = artifacts.hf_dataset(tmp_path / "images")
    info = describe_hf(str(path), {"split": "train"})
    assert info == dict(num_samples=7, classes=["cat", "dog", "emu"], x_column="image", y_column="label",
                        input="Vision", by_index=True)
    ref = datasets.load_from_disk(str(path))["train"].cast_column("image", datasets.Image(decode=False))
    reader = _file_reader("hf", path, 7, info["classes"], 3, split="train")
    blocks, xs, ids = _all(reader)
    assert xs == [r["image"]["bytes"] for r in ref] and list(ids) == [r["label"] for r in ref]

    path = artifacts.hf_dataset(tmp_path / "arrays", kind="array")
    info = describe_hf(str(path), {})
    assert info["classes"] == ["a", "b", "c"] and info["x_column"] == "x" and info["input"] is None
    reader = _file_reader("hf", path, 7, info["classes"], 5, input="Tabular", shape=[2, 3])
    _, xs, ids = _all(reader)
    ref = datasets.load_from_disk(str(path))
    np.testing.assert_allclose(np.stack(xs), np.array(ref["x"], dtype=np.float32).reshape(7, 2, 3))
    assert list(ids) == [info["classes"].index(v) for v in ref["label"]]

    path = artifacts.hf_dataset(tmp_path / "texts", kind="text")
    info = describe_hf(str(path), {})
    assert info["input"] == "Text" and info["classes"] == ["0", "1"]
    _, xs, ids = _all(_file_reader("hf", path, 7, info["classes"], 4, input="Text"))
    assert list(xs) == artifacts.TEXTS[:7] and list(ids) == [i % 2 for i in range(7)]


def test_hf_datasets_that_cannot_be_read_are_errors_with_a_sqlstate(tmp_path):
    pytest.importorskip("datasets")
    from gpu_daemon.readers import describe_hf

    images = artifacts.hf_dataset(tmp_path / "images")
    texts = artifacts.hf_dataset(tmp_path / "texts", kind="text")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a dataset")
    cut = artifacts.hf_dataset(tmp_path / "cut", kind="text")
    arrow = next(cut.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:40])

    def error(path, **options):
        with pytest.raises(ShiftError) as info:
            describe_hf(str(path), options)
        return info.value.sqlstate, info.value.message, info.value.hint

    assert error(tmp_path / "nowhere")[:2] == ("58P01", "dataset directory %s of reader ? does not exist on this "
                                                        "worker" % (tmp_path / "nowhere"))
    state, message, hint = error(tmp_path / "plain")
    assert (state, message) == ("22023", "%s is not a dataset written by save_to_disk" % (tmp_path / "plain"))
    assert hint.startswith("write it with Dataset.save_to_disk")
    state, message, _ = error(cut)
    assert state == "22000" and message.startswith("dataset %s cannot be read: " % cut)
    assert error(images) == ("22023", "dataset %s has no split named" % images,
                             "its splits are train, test; name one as the reader's split")
    assert error(images, split="valid")[:2] == ("22023", "dataset %s has no split 'valid'" % images)
    assert error(texts, y_column="y") == ("22023", "dataset %s has no label column 'y'" % texts,
                                          "its columns are text, label; name one as y_column")
    assert error(texts, x_column="image")[:2] == ("22023", "dataset %s has no column 'image'" % texts)


def test_tfds_reader_matches_tfds(tmp_path):
    if not artifacts.has_tensorflow():
        pytest.skip("tensorflow, tensorflow-hub and tensorflow-datasets are not installed: pip install 'shift[tf]'")
    from gpu_daemon.models import import_tensorflow

    import_tensorflow()
    import tensorflow_datasets as tfds

    path = artifacts.tfds_dataset(tmp_path / "tfds")
    info = files.tfds_info(str(path))
    assert info["splits"] == {"train": 10, "test": 4} and info["supervised"] == ["image", "label"]
    assert files.tfds_feature_kind(info["features"]["label"]) == "ClassLabel"
    assert files.tfds_class_names(str(path), "label", info["features"]["label"]) == ["cat", "dog", "emu"]
    reader = _file_reader("tfds", path, 10, ["cat", "dog", "emu"], 4, split="train", x_key="image", y_key="label",
                          labels="index")
    blocks, xs, ids = _all(reader)
    ref = list(tfds.as_numpy(tfds.builder_from_directory(str(path)).as_dataset(
        split="train", shuffle_files=False, read_config=tfds.ReadConfig(interleave_cycle_length=1))))
    decoded = prep.to_batch(xs, 8, (0, 0, 0), (1, 1, 1))
    want = prep.to_batch(np.stack([r["image"] for r in ref]), 8, (0, 0, 0), (1, 1, 1))
    torch.testing.assert_close(decoded, want)  # the encoded images decode to tfds's own
    assert list(ids) == [int(r["label"]) for r in ref]
    (_, part, part_ids), = iter_blocks(reader, [2])
    assert part == xs[8:] and list(part_ids) == list(ids[8:])


# -- what every block is checked for ------------------------------------------------------------------

def _damaged(reader, blocks=None):
    with pytest.raises(ShiftError) as info:
        _all(reader, blocks)
    assert info.value.sqlstate == "22000", info.value.message
    return info.value.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_sample_names_the_reader_file_and_sample(tmp_path, bad):
    x = np.ones((12, 3), np.float32)
    x[7, 1] = bad
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(12, int))
    reader = _reader(tmp_path / "d.npz", 12, ["0"], 5)
    assert _damaged(reader) == "sample 7 of reader r1 (file %s) holds a non-finite value (%s); 1 of the 5 " \
                               "samples read of block 1 have one" % (tmp_path / "d.npz", bad)
    _all(reader, [0, 2])  # the other blocks are sound


def test_a_non_finite_csv_cell_is_refused_where_it_is(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,inf,x\n")
    reader = _file_reader("csv", tmp_path / "t.csv", 3, ["x", "y"], 2, input="Tabular", label_column="label",
                          x_columns=["a", "b"])
    assert _damaged(reader).startswith("sample 2 of reader r1 (file %s) holds a non-finite value (inf)"
                                       % (tmp_path / "t.csv"))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_damaged_npz_member_is_found_when_read(tmp_path, save):
    import struct
    import zipfile

    path = tmp_path / "d.npz"
    save(path, x=np.arange(4000, dtype=np.float32).reshape(1000, 4), y=np.zeros(1000, int))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        member = z.getinfo("x.npy")
    name_len, extra_len = struct.unpack("<HH", raw[member.header_offset + 26:member.header_offset + 30])
    raw[member.header_offset + 30 + name_len + extra_len + member.compress_size // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    message = _damaged(_reader(path, 1000, ["0"], 100))
    assert "array x of npz file %s of reader r1 is damaged" % path in message
    assert "CRC-32" in message
    # the damage is past block 0, but the member is checked before any block is given to be cached
    blocks = iter_blocks(_reader(path, 1000, ["0"], 100), [0, 1])
    with pytest.raises(ShiftError, match="is damaged: its CRC-32 does not match"):
        next(blocks)


def test_an_npz_file_rewritten_after_it_was_verified_is_verified_again(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(40, dtype=np.float32).reshape(10, 4), y=np.zeros(10, int))
    reader = _reader(path, 10, ["0"], 5)
    _all(reader, [0])
    raw = bytearray(path.read_bytes())
    raw[raw.rindex(np.float32(39).tobytes())] ^= 0x01  # a new version of the file, damaged in its last sample
    path.write_bytes(bytes(raw))
    import os
    os.utime(path, ns=(1, 1))  # its mtime differs from the verified version's, as any rewrite's would
    with pytest.raises(ShiftError, match="CRC-32"):
        next(iter_blocks(reader, [0]))


def test_an_npy_file_cut_since_registration_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((10, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(10, int))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[:-16])
    reader = _file_reader("npy", tmp_path / "x.npy", 10, ["0"], 4, y_path=str(tmp_path / "y.npy"))
    assert "the file was cut short" in _damaged(reader)


def test_a_shape_option_that_does_not_fit_names_the_block(npz):
    path, _, _ = npz
    reader = _reader(path, 23, ["0", "1", "2", "3"], block_size=10, x_key="flat", y_key="ints", shape=[3, 3])
    assert _damaged(reader, [1]).startswith("sample 10 of reader r1 (file %s) has shape (20,), which does not hold "
                                            "the option shape [3, 3]" % path)


def test_empty_images_null_samples_and_unknown_labels_are_refused():
    reader = _file_reader("imagefolder", "/data/f", 3, ["a", "b"], 3)
    with pytest.raises(ShiftError, match=r"^sample 1 of reader r1 \(folder /data/f\) is empty \(0 bytes\)"):
        readers.check_samples(reader, 0, [b"png", b"", b"png"], np.zeros(3, np.int32))
    with pytest.raises(ShiftError, match=r"^sample 2 of reader r1 \(folder /data/f\) is NULL"):
        readers.check_samples(reader, 0, ["a", "b", None], np.zeros(3, np.int32))
    with pytest.raises(ShiftError, match=r"^sample 1 of .* has label id 2, not one of its 2 classes"):
        readers.check_samples(reader, 0, ["a", "b", "c"], np.array([0, 2, 1], np.int32))
    with pytest.raises(ShiftError, match=r"gave 2 samples and 3 labels for block 0, which has 3"):
        readers.check_samples(reader, 0, ["a", "b"], np.zeros(3, np.int32))
    with pytest.raises(ShiftError, match=r"^sample 0 of .* non-finite value \(nan\)"):
        readers.check_samples(reader, 0, [np.array([np.nan]), np.ones(1), np.ones(1)], np.zeros(3, np.int32))


def test_a_sql_sample_that_cannot_be_read_names_its_position():
    reader = dict(_file_reader("sql", "SELECT ...", 3, ["a"], 3))
    with pytest.raises(ShiftError, match=r"^sample 5 of reader r1 cannot be read: an array sample contains NULL"):
        readers._sql_sample(reader, [1.0, None], None, 5)
