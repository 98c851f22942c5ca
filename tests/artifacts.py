"""Small model and dataset artifacts written locally, one per source and reader kind (no network).

Each builder writes what a practitioner would have on disk (a ``save_pretrained``
directory, an ONNX export, a SavedModel, a TFDS prepared directory, ...) and returns its
path; the tests then compare what shift computes from it with the library's own result.
"""

import os
from pathlib import Path

import numpy as np

TEXTS = ["the cat sat on the mat", "a dog runs fast", "red cat", "the blue dog sat", "a slow red dog runs",
         "cat", "the mat is blue", "dog and cat"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + \
    "the a cat dog sat on mat runs fast slow red blue is and".split()


def images(n=6, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def png_bytes(array):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def has_tensorflow():
    """Whether the tf extra is installed, without importing it (see gpu_daemon.models.import_tensorflow)."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorflow_hub", "tensorflow_datasets"))


def readable(path):
    """Let the server's OS user read what a test wrote under a private temporary directory."""
    path = Path(path)
    for p in [path, *path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o055)
    for root, dirs, names in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for n in names:
            os.chmod(os.path.join(root, n), 0o644)
    return path


# -- models ------------------------------------------------------------------------------------------

def hf_vision(path, head=True, seed=0):
    """A tiny ViT (with a 4-class head, or without) and its image processor, by save_pretrained."""
    import torch
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, num_labels=4)
    model = T.ViTForImageClassification(cfg) if head else T.ViTModel(cfg)
    model.save_pretrained(path)
    T.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                        image_std=[0.2, 0.25, 0.3]).save_pretrained(path)
    return Path(path)


def hf_text(path, head=True, seed=0):
    """A tiny BERT (with a 3-class head, or without) and its WordPiece tokenizer, by save_pretrained."""
    import torch
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=3, max_position_embeddings=64)
    model = T.BertForSequenceClassification(cfg) if head else T.BertModel(cfg)
    model.save_pretrained(path)
    T.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(path)
    return Path(path)


def torch_net(seed=0):
    """A small convolutional net whose forward returns (features, logits)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            f = self.body(x)
            return f, self.fc(f)

    torch.manual_seed(seed)
    return Net().eval()


def onnx_export(path, net, size=24, outputs=("features", "logits")):
    """An ONNX export of ``net`` (dynamic batch) with named outputs."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, input_names=["x"],
                          output_names=list(outputs), dynamic_axes={"x": {0: "n"}})
    return Path(path)


def onnx_export_tabular(path, net, width):
    """An ONNX export of a model over feature vectors (dynamic batch), output named "out"."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, width),), str(path), dynamo=False, input_names=["x"],
                          output_names=["out"], dynamic_axes={"x": {0: "n"}})
    return Path(path)


def tf_saved_model(path, size=32, signature=False):
    """A SavedModel of a small TF module: ``__call__(images) -> features``; with ``signature``, a
    ``serving_default`` signature returning {"feature_vector", "logits"}."""
    from gpu_daemon.models import import_tensorflow

    tf = import_tensorflow()

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([3, 3, 3, 8], seed=[1, 2]))
            self.d = tf.Variable(tf.random.stateless_normal([8, 5], seed=[3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        def __call__(self, x):
            return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, self.w, 1, "SAME")), axis=[1, 2])

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def both(self, x):
            f = self.__call__(x)
            return {"feature_vector": f, "logits": tf.matmul(f, self.d)}

    net = Net()
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.both} if signature else None)
    return Path(path)


# -- datasets ----------------------------------------------------------------------------------------

def image_folder(root, counts=(("cat", 3), ("dog", 4), ("emu", 2)), size=12, seed=0):
    """Class subfolders of PNG files (one nested folder and one non-image file to skip); returns root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for cls, n in counts:
        for i in range(n):
            sub = root / cls / ("nested" if i == n - 1 else "")
            sub.mkdir(parents=True, exist_ok=True)
            (sub / ("img%02d.png" % (9 - i))).write_bytes(
                png_bytes(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)))
        (root / cls / "notes.txt").write_text("not an image")
    return root


def hf_dataset(path, kind="image", n=7, seed=0):
    """A ``datasets`` dataset by save_to_disk: images with a ClassLabel, arrays with string labels, or texts."""
    import datasets

    rng = np.random.default_rng(seed)
    if kind == "image":
        from PIL import Image

        feats = datasets.Features({"image": datasets.Image(),
                                   "label": datasets.ClassLabel(names=["cat", "dog", "emu"])})
        data = {"image": [Image.fromarray(a) for a in rng.integers(0, 256, size=(n, 10, 10, 3), dtype=np.uint8)],
                "label": [int(v) for v in rng.integers(0, 3, size=n)]}
        ds = datasets.DatasetDict({"train": datasets.Dataset.from_dict(data, features=feats),
                                   "test": datasets.Dataset.from_dict(data, features=feats).select([0, 1])})
    elif kind == "array":
        ds = datasets.Dataset.from_dict({"x": rng.normal(size=(n, 6)).astype(np.float32).tolist(),
                                         "label": [["b", "a", "c"][i % 3] for i in range(n)]})
    else:
        ds = datasets.Dataset.from_dict({"text": TEXTS[:n], "label": [i % 2 for i in range(n)]})
    ds.save_to_disk(str(path))
    return Path(path)


def tfds_dataset(data_dir, n_train=10, n_test=4):
    """A TFDS prepared directory of 8x8 PNG images with a 3-name ClassLabel; returns the version directory."""
    from gpu_daemon.models import import_tensorflow

    import_tensorflow()
    import tensorflow_datasets as tfds

    class ShiftTiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 3)),
                "label": tfds.features.ClassLabel(names=["cat", "dog", "emu"])}), supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(n_train, 0), "test": self._generate_examples(n_test, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": int(i % 3)}

    builder = ShiftTiny(data_dir=str(data_dir))
    builder.download_and_prepare()
    return Path(builder.data_dir)
