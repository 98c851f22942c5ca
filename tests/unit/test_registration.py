"""Pure helpers of registration: ids from locators, what a file source says about itself."""

import gzip
import io
import json
import zipfile

import numpy as np
import pytest

from pyfuncs import files, reader_registry
from pyfuncs.errors import ShiftError
from pyfuncs.reader_registry import label_order
from pyfuncs.registry import MODEL_ID, model_id_from_locator


@pytest.mark.parametrize("locator, want", [
    ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
     "google/imagenet/mobilenet_v2_100_224/feature_vector/5"),
    ("https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2",
     "google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2"),
    ("google/vit-base-patch16-224", "google/vit-base-patch16-224"),
    ("/models/encoder.onnx", "encoder"),
    ("/models/bert-tiny/", "bert-tiny"),
    ("/models/my model.pt", "my_model"),
    ("resnet18.a1_in1k", "resnet18.a1_in1k"),
])
def test_model_ids_from_locators(locator, want):
    got = model_id_from_locator(locator)
    assert got == want and MODEL_ID.match(got)


def test_label_order_puts_numbers_first_in_numeric_order():
    assert sorted(["10", "b", "2", "a", "1.5"], key=label_order) == ["1.5", "2", "10", "a", "b"]


def test_csv_input_guess():
    assert files.guess_csv_input(["img/0.PNG"], 1) == "Vision"
    assert files.guess_csv_input(["a fine day"], 1) == "Text"
    assert files.guess_csv_input(["0.5"], 1) == "Tabular"
    assert files.guess_csv_input(["x", "y"], 2) == "Tabular"


def test_tfds_info_without_label_names(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "name": "d", "splits": [{"name": "train", "shardLengths": ["3", "4"]}]}))
    label = {"pythonClassName": "tensorflow_datasets.core.features.class_label_feature.ClassLabel",
             "classLabel": {"numClasses": "3"}}
    (tmp_path / "features.json").write_text(json.dumps({"featuresDict": {"features": {"label": label}}}))
    info = files.tfds_info(str(tmp_path))
    assert info["splits"] == {"train": 7} and info["supervised"] == []
    assert files.tfds_class_names(str(tmp_path), "label", info["features"]["label"]) == ["0", "1", "2"]
    with pytest.raises(files.SourceError, match="has no dataset_info.json"):
        files.tfds_info(str(tmp_path / "nope"))


# -- every reader kind refuses bad input with a SQLSTATE, never a raw exception ---------------------

class _Rows(list):
    def nrows(self):
        return len(self)


class FakeDb:
    """Enough of pyfuncs.db.Plpy for registration: no reader exists yet, the caller may read server files."""

    def __init__(self):
        self.inserted = []

    def one(self, sql, types=(), args=()):
        return {"ok": True} if "pg_has_role" in sql else None

    def execute(self, sql, types=(), args=()):
        self.inserted.append(args)
        return _Rows()


RANDOM = bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8))


def _npy(array):
    out = io.BytesIO()
    np.save(out, array, allow_pickle=array.dtype.hasobject)
    return out.getvalue()


def _npz(**arrays):
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _refused(register, *args, sqlstate="22023", **kwargs):
    db = FakeDb()
    with pytest.raises(ShiftError) as info:
        register(db, "r", *args, **kwargs)
    error = info.value
    assert error.sqlstate == sqlstate, error.message
    said = " ".join(str(t) for t in (error.message, error.detail, error.hint) if t)
    assert "allow_pickle" not in said and "trust" not in said and "weights_only" not in said
    assert not db.inserted
    return said


GOOD_X = _npy(np.ones((10, 4), np.float32))
GOOD_Y = _npy(np.arange(10) % 3)


@pytest.mark.parametrize("name, data, said", [
    ("empty", b"", "is empty"),
    ("random", RANDOM, "does not start with numpy's magic string"),
    ("cut", GOOD_X[:-20], "has 140 bytes of data where its header (shape (10, 4), dtype float32) describes 160"),
    ("cut header", GOOD_X[:40], "ends inside its .npy header"),
    ("objects", _npy(np.array([{"a": 1}] * 10, dtype=object)), "holds Python objects"),
    ("complex", _npy(np.ones(10, np.complex64)), "has dtype complex64"),
])
@pytest.mark.parametrize("which", ["x", "y"])
def test_npy_files_that_are_not_arrays_are_refused(tmp_path, name, data, said, which):
    files_ = {"x": tmp_path / "x.npy", "y": tmp_path / "y.npy"}
    files_["x"].write_bytes(GOOD_X)
    files_["y"].write_bytes(GOOD_Y)
    files_[which].write_bytes(data)
    got = _refused(reader_registry.register_npy_reader, str(files_["x"]), str(files_["y"]))
    assert said in got and str(files_[which]) in got


@pytest.mark.parametrize("y, sqlstate, said", [
    (np.arange(12).reshape(6, 2), "22023", "has 10 samples but"),
    (np.arange(9), "22023", "has 10 samples but"),
    (np.array([1.0, np.nan] * 5), "22000", "label of sample 1 is nan"),
])
def test_npy_labels_of_the_wrong_shape_or_not_finite(tmp_path, y, sqlstate, said):
    (tmp_path / "x.npy").write_bytes(GOOD_X)
    (tmp_path / "y.npy").write_bytes(_npy(y))
    got = _refused(reader_registry.register_npy_reader, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                   sqlstate=sqlstate)
    assert said in got


def test_good_npy_and_npz_files_register(tmp_path):
    (tmp_path / "x.npy").write_bytes(GOOD_X)
    (tmp_path / "y.npy").write_bytes(GOOD_Y)
    (tmp_path / "d.npz").write_bytes(_npz(x=np.ones((10, 4)), y=np.arange(10) % 3))
    assert reader_registry.register_npy_reader(FakeDb(), "r", str(tmp_path / "x.npy"), str(tmp_path / "y.npy")) == 10
    assert reader_registry.register_npz_reader(FakeDb(), "r", str(tmp_path / "d.npz")) == 10


def _zip(**members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return out.getvalue()


@pytest.mark.parametrize("data, sqlstate, said", [
    (b"", "22023", "not a readable npz"),
    (RANDOM, "22023", "not a readable npz"),
    (_npz(x=np.ones((10, 4)), y=np.arange(10))[:300], "22023", "not a readable npz"),
    (_zip(x=RANDOM, y=GOOD_Y), "22023", "array x of npz file"),
    (_zip(x=GOOD_X, y=_npy(np.array([None] * 10, dtype=object))), "22023", "holds Python objects"),
    (_zip(x=GOOD_X[:-8], y=GOOD_Y), "22023", "the file was cut short"),
    (_npz(x=np.ones((10, 4)), y=np.arange(9)), "22023", "x has 10 samples but y has shape (9,)"),
    (_npz(x=np.float32(1), y=np.arange(1)), "22023", "x is a single value"),
    (_npz(x=np.ones((2, 2))), "22023", "has no array y"),
])
def test_bad_npz_files_are_refused(tmp_path, data, sqlstate, said):
    (tmp_path / "d.npz").write_bytes(data)
    assert said in _refused(reader_registry.register_npz_reader, str(tmp_path / "d.npz"), sqlstate=sqlstate)


GOOD_CSV = b"a,b,label\n1,2,x\n3,4,y\n"


@pytest.mark.parametrize("name, data, options, sqlstate, said", [
    ("e.csv", b"", None, "22023", "is empty"),
    ("r.csv", RANDOM, None, "22023", "cannot be read"),
    ("t.csv", GOOD_CSV[:-5], None, "22023", "line 3 of csv file"),
    ("w.csv", b"a,b,label\n1,2,x\n3,y\n", None, "22023", "has 2 fields, the header has 3"),
    ("n.csv", b"a,b,label\n1,nan,x\n3,4,y\n", None, "22000", "not a finite number"),
    ("big.csv", b"a,label\n" + b"1" * 200_000 + b",x\n", None, "22023", "field larger than field limit"),
    ("t.csv.gz", gzip.compress(GOOD_CSV * 100)[:60], None, "22023", "cannot be read"),
    ("r.csv.gz", RANDOM, None, "22023", "cannot be read"),
    ("g.csv", GOOD_CSV, '{"encoding": "nope"}', "22023", "unknown encoding"),
    ("d.csv", GOOD_CSV, '{"delimiter": "ab"}', "22023", "option delimiter must be one character"),
])
def test_bad_csv_files_are_refused(tmp_path, name, data, options, sqlstate, said):
    (tmp_path / name).write_bytes(data)
    assert said in _refused(reader_registry.register_csv_reader, str(tmp_path / name), options=options,
                            sqlstate=sqlstate)


def test_bad_image_folders_are_refused(tmp_path):
    (tmp_path / "file").write_bytes(RANDOM)
    (tmp_path / "none" / "cat").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    assert "does not exist" in _refused(reader_registry.register_imagefolder_reader, str(tmp_path / "nope"),
                                        sqlstate="58P01")
    assert "is not a folder" in _refused(reader_registry.register_imagefolder_reader, str(tmp_path / "file"))
    assert "no class subfolders" in _refused(reader_registry.register_imagefolder_reader, str(tmp_path / "empty"))
    assert "has no samples" in _refused(reader_registry.register_imagefolder_reader, str(tmp_path / "none"))
    assert "option extensions" in _refused(reader_registry.register_imagefolder_reader, str(tmp_path / "none"),
                                           options='{"extensions": 5}')


_LABEL = {"pythonClassName": "tensorflow_datasets.core.features.class_label_feature.ClassLabel",
          "classLabel": {"numClasses": "3"}}
_IMAGE = {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image"}
_INFO = json.dumps({"splits": [{"name": "train", "shardLengths": ["3"]}]}).encode()
_FEATURES = json.dumps({"featuresDict": {"features": {"label": _LABEL, "image": _IMAGE}}}).encode()


@pytest.mark.parametrize("info, features, labels, said", [
    (RANDOM, RANDOM, None, "dataset_info.json of"),
    (b"", b"", None, "is not valid json"),
    (b"[1, 2]", b"[]", None, "do not describe a TFDS dataset"),
    (json.dumps({"splits": [{"name": "train", "shardLengths": ["x"]}]}).encode(), _FEATURES, None,
     "do not describe a TFDS dataset"),
    (json.dumps({"splits": {"a": 1}}).encode(), _FEATURES, None, "do not describe a TFDS dataset"),
    (_INFO, json.dumps({"featuresDict": {"features": [1]}}).encode(), None, "do not describe a TFDS dataset"),
    (_INFO, _FEATURES, RANDOM, "is not utf-8 text"),
])
def test_bad_tfds_directories_are_refused(tmp_path, info, features, labels, said):
    (tmp_path / "dataset_info.json").write_bytes(info)
    (tmp_path / "features.json").write_bytes(features)
    if labels is not None:
        (tmp_path / "label.labels.txt").write_bytes(labels)
    assert said in _refused(reader_registry.register_tfds_reader, str(tmp_path))


def test_tfds_directory_without_its_files_is_missing(tmp_path):
    assert "has no dataset_info.json" in _refused(reader_registry.register_tfds_reader, str(tmp_path),
                                                  sqlstate="58P01")


@pytest.mark.parametrize("query, sqlstate, said", [
    ("SELECT x, y FROM t WHERE " + "(" * 5000 + "1" + ")" * 5000 + " ORDER BY 1", "54001", "nested too deeply"),
    ("SELECT x, y FROM t WHERE id IN (%s) ORDER BY 1" % ",".join(["1"] * 200_000), "54000",
     "is longer than the limit"),
    (RANDOM.decode("latin-1"), "42601", "does not parse"),
    ("", "42601", "does not parse"),
    ("SELECT 1 AS x, 2 AS y ORDER BY 1; SELECT 2", "22023", "must be a SELECT"),
])
def test_bad_sql_reader_queries_are_refused(query, sqlstate, said):
    assert said in _refused(reader_registry.register_sql_reader, query, sqlstate=sqlstate)


def test_a_garbage_checkpoint_is_refused_without_unsafe_advice(tmp_path):
    pytest.importorskip("timm")
    from gpu_daemon.models import read_state_dict

    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x80\x02c__builtin__\neval\nq\x00." + RANDOM[:200])  # a pickle that names a global
    with pytest.raises(ValueError) as info:
        read_state_dict("m", str(path))
    assert "weights_only" not in str(info.value) and "cannot be read as a state dict" in str(info.value)
