"""Hugging Face, ONNX and TF-Hub models: shift's features equal the library's on the same inputs.

Each test writes its model locally (save_pretrained, an ONNX export, a SavedModel) and
compares ``LoadedModel.extract`` with calling transformers, onnxruntime or tensorflow-hub
directly on the batch ``LoadedModel.preprocess`` made.
"""

import numpy as np
import pytest
import torch

from gpu_daemon import preprocess as prep
from gpu_daemon.models import load_model, timm_upstream_dataset, torchvision_upstream
from tests import artifacts

# tensorflow-hub 0.16.1 imports pkg_resources
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
ATOL = 1e-5


def _row(model_id, source, locator, **kw):
    row = dict(model_id=model_id, source=source, locator=locator, checkpoint=None, input_size=None, options={},
               input="Vision")
    row.update(kw)
    return row


# -- Hugging Face transformers ------------------------------------------------------------------

def test_hf_vision_with_head_matches_library(tmp_path):
    import transformers as T

    path = artifacts.hf_vision(tmp_path / "vit")
    model = load_model(_row("vit", "hf", str(path)))
    d = model.describe()
    assert (d["input"], d["input_size"], d["feature_dim"], d["num_classes"]) == ("Vision", 32, 16, 4)
    assert d["input_mean"] == pytest.approx([0.5, 0.4, 0.3]) and d["input_std"] == pytest.approx([0.2, 0.25, 0.3])
    ref = T.ViTForImageClassification.from_pretrained(path).eval()
    assert d["num_params"] == sum(p.numel() for p in ref.parameters())

    imgs = artifacts.images(3)
    x = model.preprocess(imgs)
    # at the model's own size, shift's preprocessing is the image processor's
    want_x = T.AutoImageProcessor.from_pretrained(path)(images=list(imgs), return_tensors="pt").pixel_values
    torch.testing.assert_close(x, want_x, atol=1e-5, rtol=0)
    feats, logits = model.extract(x)
    with torch.inference_mode():
        out = ref(pixel_values=x)
        pre = ref.vit(pixel_values=x).last_hidden_state[:, 0]  # the classifier's input
    np.testing.assert_allclose(feats, pre.numpy(), atol=ATOL)
    np.testing.assert_allclose(logits, out.logits.numpy(), atol=ATOL)


@pytest.mark.parametrize("pooling", [None, "cls", "mean"])
def test_hf_vision_without_head_pools(tmp_path, pooling):
    import transformers as T

    path = artifacts.hf_vision(tmp_path / "vit", head=False)
    model = load_model(_row("vit", "hf", str(path), options={"pooling": pooling} if pooling else {}))
    x = model.preprocess(artifacts.images(2))
    feats, logits = model.extract(x)
    assert logits is None and model.num_classes is None
    with torch.inference_mode():
        out = T.ViTModel.from_pretrained(path).eval()(pixel_values=x)
    want = {None: out.pooler_output, "cls": out.last_hidden_state[:, 0],
            "mean": out.last_hidden_state.mean(dim=1)}[pooling]
    np.testing.assert_allclose(feats, want.numpy(), atol=ATOL)


def test_hf_text_with_head_and_tokenizer_matches_library(tmp_path):
    import transformers as T

    path = artifacts.hf_text(tmp_path / "bert")
    model = load_model(_row("bert", "hf", str(path)))  # registered as Vision: the library says Text
    assert model.modality == "Text" and model.describe()["input"] == "Text"
    assert model.max_length == 64 and model.feature_dim == 16 and model.num_classes == 3
    texts = artifacts.TEXTS[:4]
    batch = model.preprocess(np.array(texts))  # numpy strings, as npz and tfds readers give them
    feats, logits = model.extract(batch)
    ref = T.BertForSequenceClassification.from_pretrained(path).eval()
    enc = T.AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        np.testing.assert_allclose(feats, ref.bert(**enc).pooler_output.numpy(), atol=ATOL)  # the classifier's input
        np.testing.assert_allclose(logits, ref(**enc).logits.numpy(), atol=ATOL)
    # padding does not change a text's features: each sample is the same alone
    alone, _ = model.extract(model.preprocess(texts[1:2]))
    np.testing.assert_allclose(alone, feats[1:2], atol=ATOL)


def test_hf_text_mean_tokens_and_pooler(tmp_path):
    import transformers as T

    path = artifacts.hf_text(tmp_path / "bert", head=False)
    texts = artifacts.TEXTS[2:6]
    enc = T.AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = T.AutoModel.from_pretrained(path).eval()(**enc)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    model = load_model(_row("bert", "hf", str(path), input="Text"))  # default: mean over real tokens
    feats, logits = model.extract(model.preprocess(texts))
    assert logits is None
    np.testing.assert_allclose(feats, mean.numpy(), atol=ATOL)
    pooled = load_model(_row("bert", "hf", str(path), input="Text", options={"pooling": "pooler"}))
    np.testing.assert_allclose(pooled.extract(pooled.preprocess(texts))[0], out.pooler_output.numpy(), atol=ATOL)


def test_hf_errors(tmp_path):
    path = artifacts.hf_text(tmp_path / "bert", head=False)
    with pytest.raises(ValueError, match="no classification head to take pre-logits"):
        load_model(_row("b", "hf", str(path), options={"pooling": "prelogits"}))
    with pytest.raises(ValueError, match="options.pooling must be one of"):
        load_model(_row("b", "hf", str(path), options={"pooling": "max"}))
    with pytest.raises(ValueError, match="hugging face model .* cannot be loaded"):
        load_model(_row("b", "hf", str(tmp_path / "nothing"), options={"local_files_only": True}))


# -- ONNX ------------------------------------------------------------------------------------------

def test_onnx_features_and_logits_match_onnxruntime(tmp_path):
    import onnxruntime as ort

    net = artifacts.torch_net()
    path = artifacts.onnx_export(tmp_path / "net.onnx", net)
    model = load_model(_row("o", "onnx", str(path)))
    assert (model.input_size, model.feature_dim, model.num_classes) == (24, 8, 5)
    assert model.num_params == sum(p.numel() for p in net.parameters())
    x = model.preprocess(artifacts.images(3, size=24))
    feats, logits = model.extract(x)
    want_f, want_l = ort.InferenceSession(str(path)).run(["features", "logits"], {"x": x.numpy()})
    np.testing.assert_allclose(feats, want_f, atol=ATOL)
    np.testing.assert_allclose(logits, want_l, atol=ATOL)
    with torch.inference_mode():
        np.testing.assert_allclose(feats, net(x)[0].numpy(), atol=1e-4)


def test_onnx_feature_layer_exposes_an_inner_tensor(tmp_path):
    import onnx
    from torch import nn

    net = artifacts.torch_net()
    single = nn.Sequential(net.body, net.fc).eval()
    path = artifacts.onnx_export(tmp_path / "single.onnx", single, outputs=("logits",))
    flat = next(n.output[0] for n in onnx.load(str(path)).graph.node if n.op_type == "Flatten")
    plain = load_model(_row("o1", "onnx", str(path)))
    assert plain.feature_dim == 5 and plain.num_classes is None  # only the output: features are the logits
    model = load_model(_row("o2", "onnx", str(path), options={"feature_layer": flat}))
    assert model.feature_dim == 8 and model.num_classes == 5
    x = model.preprocess(artifacts.images(2, size=24))
    feats, logits = model.extract(x)
    with torch.inference_mode():
        np.testing.assert_allclose(feats, net.body(x).numpy(), atol=1e-4)
        np.testing.assert_allclose(logits, single(x).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="no tensor 'nope' for options.feature_layer"):
        load_model(_row("o3", "onnx", str(path), options={"feature_layer": "nope"}))


def test_onnx_tabular_input(tmp_path):
    import warnings

    from torch import nn

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp, (torch.zeros(1, 6),), str(path), dynamo=False, input_names=["x"],
                          output_names=["out"], dynamic_axes={"x": {0: "n"}})
    model = load_model(_row("mlp", "onnx", str(path), input="Tabular"))
    assert model.modality == "Tabular" and model.feature_dim == 2 and model.describe()["input_size"] is None
    rows = np.random.default_rng(1).normal(size=(5, 6))
    feats, _ = model.extract(model.preprocess(list(rows)))
    with torch.inference_mode():
        np.testing.assert_allclose(feats, mlp(torch.from_numpy(rows).float()).numpy(), atol=1e-5)


def test_onnx_missing_file(tmp_path):
    with pytest.raises(ValueError, match="ONNX file .* of model m does not exist on this worker"):
        load_model(_row("m", "onnx", str(tmp_path / "gone.onnx")))


# -- TF-Hub ----------------------------------------------------------------------------------------

def _tf():
    if not artifacts.has_tensorflow():
        pytest.skip("tensorflow, tensorflow-hub and tensorflow-datasets are not installed: pip install 'shift[tf]'")
    from gpu_daemon.models import import_tensorflow

    import_tensorflow()
    import tensorflow_hub

    return tensorflow_hub


def test_tfhub_saved_model_matches_hub_load(tmp_path):
    hub = _tf()
    path = artifacts.tf_saved_model(tmp_path / "sm")
    model = load_model(_row("tf", "tfhub", str(path)))
    assert model.input_size == 32 and model.mean == (0.0, 0.0, 0.0) and model.std == (1.0, 1.0, 1.0)
    assert model.feature_dim == 8 and model.num_classes is None and model.num_params == 3 * 3 * 3 * 8 + 8 * 5
    imgs = artifacts.images(3)
    feats, logits = model.extract(model.preprocess(imgs))
    assert logits is None
    want = hub.load(str(path))(imgs.astype(np.float32) / 255.0).numpy()  # TF-Hub images are NHWC in [0, 1]
    np.testing.assert_allclose(feats, want, atol=ATOL)


def test_tfhub_signature_with_named_outputs(tmp_path):
    hub = _tf()
    path = artifacts.tf_saved_model(tmp_path / "sig", signature=True)
    opts = {"signature": "serving_default", "output": "feature_vector", "logits_output": "logits"}
    model = load_model(_row("tf", "tfhub", str(path), options=opts))
    assert model.input_size == 32 and model.feature_dim == 8 and model.num_classes == 5
    imgs = artifacts.images(2)
    feats, logits = model.extract(model.preprocess(imgs))
    want = hub.load(str(path)).signatures["serving_default"](images=imgs.astype(np.float32) / 255.0)
    np.testing.assert_allclose(feats, want["feature_vector"].numpy(), atol=ATOL)
    np.testing.assert_allclose(logits, want["logits"].numpy(), atol=ATOL)
    with pytest.raises(ValueError, match="returns feature_vector, logits; name the features in options.output"):
        load_model(_row("tf2", "tfhub", str(path), options={"signature": "serving_default"}))
    with pytest.raises(ValueError, match="TF-Hub model .* cannot be loaded"):
        load_model(_row("tf3", "tfhub", str(tmp_path / "nothing")))


# -- metadata the libraries know ------------------------------------------------------------------

def test_upstream_metadata_from_the_libraries():
    assert timm_upstream_dataset("a1_in1k") == "imagenet-1k"
    assert timm_upstream_dataset("in22k_ft_in1k") == "imagenet-1k"
    assert timm_upstream_dataset("augreg_in21k") == "imagenet-21k"
    assert timm_upstream_dataset("laion2b") is None and timm_upstream_dataset(None) is None
    # a lookup of torchvision's weights metadata; nothing is downloaded
    assert torchvision_upstream("resnet18", "IMAGENET1K_V1") == {"upstream_dataset": "ImageNet-1K",
                                                                "upstream_accuracy": pytest.approx(0.69758)}
    assert torchvision_upstream("resnet18", None) == {}


def test_text_and_tabular_preprocessing():
    assert prep.as_texts([b"caf\xc3\xa9", "x", np.str_("y"), 3]) == ["café", "x", "y", "3"]
    with pytest.raises(ValueError, match="NULL"):
        prep.as_texts(["a", None])
    m = prep.to_matrix([np.arange(3), np.arange(3.0)])
    assert m.dtype == torch.float32 and m.shape == (2, 3)
    assert prep.to_matrix(np.zeros((4, 2, 2), np.uint8)).shape == (4, 4)
    with pytest.raises(ValueError, match="different lengths"):
        prep.to_matrix([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="must be numbers"):
        prep.to_matrix(["a", "b"])



def test_describe_records_what_loading_measured(tmp_path):
    import re

    from gpu_daemon import describe

    calls = []

    class Conn:
        def execute(self, sql, params=None):
            calls.append((sql, params))

    net = artifacts.torch_net()
    model = load_model(_row("o", "onnx", str(artifacts.onnx_export(tmp_path / "net.onnx", net))))
    assert describe.describe_model(Conn(), "o", load=lambda m: model) == {"model_id": "o", "status": "ready",
                                                                         "error": None}
    sql, params = calls[-1]
    assert set(re.findall(r"%\((\w+)\)s", sql)) <= set(params)
    assert (params["num_params"], params["feature_dim"], params["num_classes"], params["input_size"],
            params["input"]) == (sum(p.numel() for p in net.parameters()), 8, 5, 24, "Vision")

    def unreachable(model_id):
        raise ValueError("model %s: the hub cannot be reached" % model_id)

    out = describe.describe_model(Conn(), "gone", load=unreachable)
    assert out["status"] == "failed" and "the hub cannot be reached" in out["error"]
    assert "load_error" in calls[-1][0] and "the hub cannot be reached" in calls[-1][1][0]
    with pytest.raises(ValueError, match="counted by the server"):
        describe.describe_reader({"kind": "csv", "source": "/x.csv"})
