"""Model loading and feature extraction agree with calling the libraries directly."""

import copy
import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from gpu_daemon import preprocess as prep
from gpu_daemon.models import LOADERS, load_model

ATOL = 1e-4


def _images(n=4, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _row(model_id, source, locator, **kw):
    row = dict(model_id=model_id, source=source, locator=locator, checkpoint=None, input_size=None, options={})
    row.update(kw)
    return row


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_timm_checkpoint_matches_library(tmp_path):
    ref = timm.create_model("resnet10t", pretrained=False, num_classes=5).eval()
    path = tmp_path / "resnet10t.pth"
    torch.save({"state_dict": ref.state_dict()}, path)  # a wrapped checkpoint, as training scripts write

    model = load_model(_row("r10", "timm", "resnet10t", checkpoint=str(path), input_size=64,
                            options={"num_classes": 5}))
    assert model.input_size == 64
    assert model.num_params == sum(p.numel() for p in ref.parameters())
    assert model.feature_dim == 512 and model.num_classes == 5
    assert model.mean == tuple(ref.pretrained_cfg["mean"])

    x = model.preprocess(_images())
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    feats, logits = model.extract(x)
    with torch.inference_mode():
        want_feats = ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()
        want_logits = ref(x).numpy()
    assert feats.dtype == np.float32 and feats.shape == (4, 512)
    np.testing.assert_allclose(feats, want_feats, atol=ATOL)
    np.testing.assert_allclose(logits, want_logits, atol=ATOL)


def test_timm_default_input_size_and_model_kwargs(tmp_path):
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8,
                            depth=2).eval()
    path = tmp_path / "vit.pth"
    torch.save(ref.state_dict(), path)
    opts = {"num_classes": 3, "pretrained": False, "model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2}}
    model = load_model(_row("vit", "timm", "vit_tiny_patch16_224", checkpoint=str(path), options=opts))
    assert model.input_size == 32 and model.feature_dim == 192
    x = model.preprocess(_images(2, size=32))
    feats, logits = model.extract(x)
    with torch.inference_mode():
        np.testing.assert_allclose(feats, ref.forward_head(ref.forward_features(x), pre_logits=True), atol=ATOL)
        np.testing.assert_allclose(logits, ref(x), atol=ATOL)


def test_torchvision_checkpoint_matches_library(tmp_path):
    ref = torchvision.models.resnet18(num_classes=5).eval()
    path = tmp_path / "resnet18.pth"
    torch.save({k: v for k, v in ref.state_dict().items()}, path)

    model = load_model(_row("tv18", "torchvision", "resnet18", checkpoint=str(path), input_size=64,
                            options={"num_classes": 5}))
    assert model.num_params == sum(p.numel() for p in ref.parameters())
    assert model.feature_dim == 512 and model.num_classes == 5
    assert model.mean == prep.IMAGENET_MEAN

    x = model.preprocess(_images())
    feats, logits = model.extract(x)
    trunk = copy.deepcopy(ref)
    trunk.fc = nn.Identity()
    with torch.inference_mode():
        np.testing.assert_allclose(feats, trunk(x).numpy(), atol=ATOL)
        np.testing.assert_allclose(logits, ref(x).numpy(), atol=ATOL)


def test_torchvision_classifier_sequential_and_feature_layer(tmp_path):
    ref = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    path = tmp_path / "mnv3.pth"
    torch.save(ref.state_dict(), path)
    model = load_model(_row("mnv3", "torchvision", "mobilenet_v3_small", checkpoint=str(path), input_size=64,
                            options={"num_classes": 4}))
    assert model.feature_dim == ref.classifier[-1].in_features and model.num_classes == 4
    x = model.preprocess(_images(2))
    feats, _ = model.extract(x)
    trunk = copy.deepcopy(ref)
    trunk.classifier[-1] = nn.Identity()
    with torch.inference_mode():
        np.testing.assert_allclose(feats, trunk(x).numpy(), atol=ATOL)

    # a named layer: features are its input (here the pooled 576-d vector before the classifier)
    named = load_model(_row("mnv3b", "torchvision", "mobilenet_v3_small", checkpoint=str(path), input_size=64,
                            options={"num_classes": 4, "feature_layer": "classifier"}))
    assert named.feature_dim == 576
    feats, _ = named.extract(x)
    with torch.inference_mode():
        want = ref.avgpool(ref.features(x)).flatten(1)
    np.testing.assert_allclose(feats, want.numpy(), atol=ATOL)


def test_torchvision_weights_give_eval_size_and_stats():
    from gpu_daemon.models import torchvision_eval_config

    # a lookup of the weights' metadata only; nothing is downloaded
    assert torchvision_eval_config("vit_b_16", "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1")[0] == 384
    assert torchvision_eval_config("resnet18", "DEFAULT") == (224, prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    assert torchvision_eval_config("resnet18", None)[0] == 224


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 3)

    @torch.jit.export
    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.body(x))


@pytest.mark.parametrize("with_method", [True, False])
def test_torchscript(tmp_path, with_method):
    net = _Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the TorchScript format
        if with_method:
            scripted = torch.jit.script(net)
        else:
            scripted = torch.jit.trace(nn.Sequential(net.body, net.fc).eval(), torch.zeros(1, 3, 32, 32))
    path = tmp_path / "net.pt"
    scripted.save(str(path))

    model = load_model(_row("ts", "torchscript", str(path), input_size=32))
    assert model.num_params == sum(p.numel() for p in net.parameters())
    x = model.preprocess(_images(3, size=32))
    feats, logits = model.extract(x)
    with torch.inference_mode():
        if with_method:
            assert model.feature_dim == 8 and model.num_classes == 3
            np.testing.assert_allclose(feats, net.body(x).numpy(), atol=ATOL)
            np.testing.assert_allclose(logits, net(x).numpy(), atol=ATOL)
        else:
            assert model.feature_dim == 3 and logits is None
            np.testing.assert_allclose(feats, net.fc(net.body(x)).numpy(), atol=ATOL)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.pth"
    for source, locator in (("timm", "resnet10t"), ("torchvision", "resnet18")):
        with pytest.raises(ValueError, match=r"checkpoint .*nope\.pth of model m1 does not exist"):
            load_model(_row("m1", source, locator, checkpoint=str(missing)))
    with pytest.raises(ValueError, match="TorchScript file .* of model m2 does not exist"):
        load_model(_row("m2", "torchscript", str(missing)))


def test_bad_rows_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="source 'keras'.*supported sources: timm, torchvision, torchscript, hf"):
        load_model(_row("m3", "keras", "bert-base-uncased"))
    assert set(LOADERS) == {"timm", "torchvision", "torchscript", "hf", "onnx", "tfhub"}
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        load_model(_row("m4", "timm", "no_such_net", options={"pretrained": False}))
    ref = timm.create_model("resnet10t", pretrained=False, num_classes=5)
    path = tmp_path / "r.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(ValueError, match="does not fit model m5"):
        load_model(_row("m5", "timm", "resnet10t", checkpoint=str(path), options={"num_classes": 7}))
    with pytest.raises(ValueError, match="no layer 'nope'"):
        load_model(_row("m6", "timm", "resnet10t", checkpoint=str(path),
                        options={"num_classes": 5, "feature_layer": "nope"}))


# -- preprocessing ------------------------------------------------------------------------------

def test_preprocess_layouts_ranges_and_bytes():
    import io

    from PIL import Image

    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    want = torch.from_numpy(gray.astype(np.float32) / 255)

    def one(sample, **kw):
        return prep.to_batch([sample], 16, mean, std, **kw)[0]

    for sample in (gray, gray[:, :, None], gray[None], np.repeat(gray[:, :, None], 3, axis=2),
                   np.repeat(gray[None], 3, axis=0), gray.astype(np.float64), gray.astype(np.float32) / 255,
                   gray.astype(np.int64), gray.astype(np.uint16) * 257):
        out = one(sample)
        assert out.shape == (3, 16, 16)
        torch.testing.assert_close(out, want.expand(3, -1, -1), atol=1e-5, rtol=0)

    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    torch.testing.assert_close(one(buf.getvalue()), want.expand(3, -1, -1), atol=1e-6, rtol=0)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    torch.testing.assert_close(one(buf.getvalue()), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=2)
    torch.testing.assert_close(one(rgba), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(one(gray.astype(np.float32), value_max=510.0), want.expand(3, -1, -1) / 2)


def test_preprocess_batch_resize_normalise_and_mixed_shapes():
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, size=(5, 20, 30, 3), dtype=np.uint8)
    mean, std = prep.IMAGENET_MEAN, prep.IMAGENET_STD
    out = prep.to_batch(batch, 24, mean, std)
    assert out.shape == (5, 3, 24, 24)
    ref = torch.nn.functional.interpolate(torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255, size=(24, 24),
                                          mode="bilinear", antialias=True)
    ref = (ref - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref)
    # a list of mixed shapes keeps its order, and each sample comes out as if alone
    mixed = [batch[0], batch[1, :10, :10], batch[2], batch[3, :, :, 0]]
    out = prep.to_batch(mixed, 24, mean, std)
    for i, s in enumerate(mixed):
        torch.testing.assert_close(out[i], prep.to_batch([s], 24, mean, std)[0])
    with pytest.raises(ValueError, match="shape"):
        prep.to_batch([np.zeros(12, np.float32)], 8)
