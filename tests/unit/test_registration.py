"""Pure helpers of registration: ids from locators, what a file source says about itself."""

import json

import pytest

from pyfuncs import files
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
