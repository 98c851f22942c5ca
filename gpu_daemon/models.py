"""Load a registered model and extract its features (seed 000 §3.4, "Inference Task").

A row of ``shift.models`` becomes a :class:`LoadedModel`: the module in eval mode on one
device, its preprocessing, and an extractor returning the penultimate ("pre-logits")
features and, where the model has a classifier head, its source-task logits.

How features are taken depends on the source; the strategies are a small registry,
``LOADERS``, keyed by ``shift.models.source``. Seed 000 §3.4 notes that models without a
standard interface need a hook naming the layer whose input is the feature vector; any
row may give one as ``options["feature_layer"]`` (a dotted module path such as
``"fc"``, ``"classifier.3"`` or ``"heads"``).

Options read from ``shift.models.options``:
  * all sources: ``feature_layer``, ``mean``, ``std``, ``value_max``;
  * timm: ``num_classes``, ``pretrained`` (default true, used only without a checkpoint),
    ``model_kwargs`` (extra ``timm.create_model`` arguments, e.g. ``img_size``);
  * torchvision: ``num_classes``, ``weights`` (a torchvision weights name, used only
    without a checkpoint), ``model_kwargs``.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import preprocess as prep

SUPPORTED_SOURCES = ("timm", "torchvision", "torchscript")
DEFAULT_INPUT_SIZE = 224

# forward(batch) -> (features [n, ...], logits [n, c] or None)
Extractor = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass
class LoadedModel:
    """A model ready for inference on one device."""

    model_id: str
    source: str
    module: nn.Module
    device: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_params: int
    feature_dim: int
    num_classes: int | None
    extractor: Extractor = field(repr=False)
    value_max: float | None = None
    load_seconds: float = 0.0

    def preprocess(self, batch_x) -> torch.Tensor:
        """Raw reader samples -> normalised float tensor N x 3 x S x S on this model's device."""
        x = prep.to_batch(batch_x, self.input_size, self.mean, self.std, self.value_max)
        return x.to(self.device)

    def extract(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """Pre-logits features (float32 n x d) and source-task logits (float32 n x c, or None)."""
        with torch.inference_mode():
            feats, logits = self.extractor(batch.to(self.device, torch.float32))
            feats = feats.flatten(1).float().cpu().numpy()
            if logits is not None:
                logits = logits.flatten(1).float().cpu().numpy()
        return feats, logits


# -- shared helpers -------------------------------------------------------------------------

def _require_file(model_id: str, path: str, what: str) -> str:
    if not path or not os.path.isfile(path):
        raise ValueError("%s %s of model %s does not exist on this worker; copy it there or register the model "
                         "again with a path every worker can read" % (what, path, model_id))
    return path


def read_state_dict(model_id: str, path: str) -> dict[str, torch.Tensor]:
    """A local checkpoint -> state dict, unwrapping {"state_dict": ...}/{"model": ...} and DDP prefixes."""
    from timm.models import load_state_dict

    _require_file(model_id, path, "checkpoint")
    try:
        return load_state_dict(path, use_ema=False, device="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file gets the same advice
        raise ValueError("checkpoint %s of model %s cannot be read as a state dict: %s" % (path, model_id, e)) from e


def _load_weights(model_id: str, module: nn.Module, path: str) -> None:
    state = read_state_dict(model_id, path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise ValueError("checkpoint %s does not fit model %s (%s); check the locator and options.num_classes"
                         % (path, model_id, detail[:300])) from e


def last_linear(module: nn.Module) -> str | None:
    """Dotted name of the last nn.Linear registered in a module: the classifier of most torchvision models."""
    name = None
    for n, m in module.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return name


def hook_extractor(module: nn.Module, layer: str, model_id: str) -> Extractor:
    """Features = the input of ``layer`` (captured by a forward pre-hook); logits = the model output."""
    try:
        target = module.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n][-8:]
        raise ValueError("model %s has no layer %r for options.feature_layer; its last layers are %s"
                         % (model_id, layer, ", ".join(names))) from None
    captured: list[torch.Tensor] = []

    def grab(_mod, args):
        captured.append(args[0])

    try:
        target.register_forward_pre_hook(grab)
    except RuntimeError as e:  # TorchScript modules take no hooks
        raise ValueError("model %s cannot take a hook on layer %s (%s); export a forward_features method instead"
                         % (model_id, layer, e)) from None

    def run(x):
        captured.clear()
        out = module(x)
        if not captured:
            raise RuntimeError("layer %s of model %s was not called in forward" % (layer, model_id))
        return captured[-1], out if isinstance(out, torch.Tensor) else None

    return run


def _probe(extractor: Extractor, size: int, device: str) -> tuple[int, int | None]:
    """Feature and logit widths by one forward pass, for models that do not declare them."""
    with torch.inference_mode():
        feats, logits = extractor(torch.zeros(1, 3, size, size, device=device))
    return feats.flatten(1).shape[1], None if logits is None else logits.flatten(1).shape[1]


def _option_stats(options: dict, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(float(v) for v in options.get("mean", mean)), tuple(float(v) for v in options.get("std", std))


def _count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# -- timm -----------------------------------------------------------------------------------

def create_timm(locator: str, options: dict, pretrained: bool, model_id: str = "") -> nn.Module:
    """``timm.create_model`` with the row's options; shared by the loader and the demo zoo."""
    import timm

    kwargs = dict(options.get("model_kwargs") or {})
    if options.get("num_classes") is not None:
        kwargs["num_classes"] = int(options["num_classes"])
    try:
        return timm.create_model(locator, pretrained=pretrained, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError("model %s: timm has no model %r; see timm.list_models()" % (model_id, locator)) from e
        raise


def timm_input_size(module: nn.Module, options: dict) -> int:
    """The square input side a timm model was built for."""
    img_size = (options.get("model_kwargs") or {}).get("img_size")
    if img_size:
        return int(img_size if isinstance(img_size, int) else img_size[-1])
    cfg = getattr(module, "pretrained_cfg", None) or {}
    return int(cfg.get("input_size", (3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE))[-1])


def load_timm(row: dict, device: str) -> dict:
    options = row.get("options") or {}
    model_id = row["model_id"]
    if row.get("checkpoint"):
        _require_file(model_id, row["checkpoint"], "checkpoint")
        module = create_timm(row["locator"], options, pretrained=False, model_id=model_id)
        _load_weights(model_id, module, row["checkpoint"])
    else:
        module = create_timm(row["locator"], options, pretrained=bool(options.get("pretrained", True)),
                             model_id=model_id)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    mean, std = _option_stats(options, cfg.get("mean", prep.IMAGENET_MEAN), cfg.get("std", prep.IMAGENET_STD))
    num_classes = int(getattr(module, "num_classes", 0) or 0) or None

    def run(x):
        feats = module.forward_features(x)
        pre = module.forward_head(feats, pre_logits=True)
        # forward_head again rather than the bare classifier: distilled heads average two outputs
        return pre, module.forward_head(feats) if num_classes else None

    feature_dim = getattr(module, "head_hidden_size", None) or getattr(module, "num_features", None)
    return dict(module=module, extractor=run, input_size=timm_input_size(module, options), mean=mean, std=std,
                feature_dim=feature_dim, num_classes=num_classes)


# -- torchvision ----------------------------------------------------------------------------

def torchvision_eval_config(locator: str, weights: str | None) -> tuple[int, tuple, tuple]:
    """Input side, mean and std that torchvision's weights were evaluated with (ImageNet defaults otherwise)."""
    import torchvision

    default = (DEFAULT_INPUT_SIZE, prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    if not weights:
        return default
    try:
        w = torchvision.models.get_weight(weights) if "." in weights else \
            torchvision.models.get_model_weights(locator)[weights]
        t = w.transforms()
        return int(t.crop_size[0]), tuple(t.mean), tuple(t.std)
    except (KeyError, ValueError, AttributeError, TypeError):
        return default  # an unknown name fails with a clear message when the model is built


def load_torchvision(row: dict, device: str) -> dict:
    import torchvision

    options = row.get("options") or {}
    model_id = row["model_id"]
    kwargs = dict(options.get("model_kwargs") or {})
    if options.get("num_classes") is not None:
        kwargs["num_classes"] = int(options["num_classes"])
    weights = None if row.get("checkpoint") else options.get("weights")
    if row.get("checkpoint"):
        _require_file(model_id, row["checkpoint"], "checkpoint")
    try:
        module = torchvision.models.get_model(row["locator"], weights=weights, **kwargs)
    except ValueError as e:
        raise ValueError("model %s: torchvision cannot build %r: %s; see torchvision.models.list_models()"
                         % (model_id, row["locator"], e)) from e
    if row.get("checkpoint"):
        _load_weights(model_id, module, row["checkpoint"])
    layer = options.get("feature_layer") or last_linear(module)
    if layer is None:
        raise ValueError("model %s has no linear classifier to take features before; name the layer whose input "
                         "is the feature vector in options.feature_layer" % model_id)
    head = module.get_submodule(layer) if not options.get("feature_layer") else None
    size, mean, std = torchvision_eval_config(row["locator"], weights)
    mean, std = _option_stats(options, mean, std)
    return dict(module=module, extractor=hook_extractor(module, layer, model_id),
                input_size=size, mean=mean, std=std,
                feature_dim=head.in_features if head is not None else None,
                num_classes=head.out_features if head is not None else None)


# -- TorchScript ----------------------------------------------------------------------------

def load_torchscript(row: dict, device: str) -> dict:
    options = row.get("options") or {}
    model_id = row["model_id"]
    path = _require_file(model_id, row["locator"], "TorchScript file")
    try:
        with warnings.catch_warnings():
            # deprecated upstream in favour of torch.export, but TorchScript files are what users have
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(path, map_location=device)
    except RuntimeError as e:
        raise ValueError("TorchScript file %s of model %s cannot be loaded: %s"
                         % (path, model_id, str(e).splitlines()[0])) from e
    # Hooks cannot be added to a scripted module, so features are a method or the output.
    if hasattr(module, "forward_features"):
        def run(x):
            return module.forward_features(x), module(x)
    else:
        def run(x):
            return module(x), None
    mean, std = _option_stats(options, prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    return dict(module=module, extractor=run, input_size=DEFAULT_INPUT_SIZE, mean=mean, std=std,
                feature_dim=None, num_classes=None)


# source -> loader(row, device) -> dict(module, extractor, input_size, mean, std, feature_dim, num_classes);
# feature_dim / num_classes of None are measured by one forward pass.
LOADERS: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    "timm": load_timm,
    "torchvision": load_torchvision,
    "torchscript": load_torchscript,
}


def load_model(row: dict, device: str = "cpu") -> LoadedModel:
    """A ``shift.models`` row -> a :class:`LoadedModel` in eval mode on ``device``."""
    started = time.perf_counter()
    model_id = row.get("model_id", "?")
    loader = LOADERS.get(row.get("source"))
    if loader is None:
        raise ValueError("model %s has source %r, which this worker cannot load yet; supported sources: %s"
                         % (model_id, row.get("source"), ", ".join(SUPPORTED_SOURCES)))
    options = row.get("options") or {}
    parts = loader(row, device)
    module = parts["module"].to(device).eval()
    extractor = parts["extractor"]
    if options.get("feature_layer") and row["source"] != "torchvision":
        extractor = hook_extractor(module, options["feature_layer"], model_id)
        parts["feature_dim"] = None
    input_size = int(row.get("input_size") or parts["input_size"])
    feature_dim, num_classes = parts["feature_dim"], parts["num_classes"]
    if feature_dim is None:
        feature_dim, probed_classes = _probe(extractor, input_size, device)
        num_classes = num_classes or probed_classes
    return LoadedModel(
        model_id=model_id, source=row["source"], module=module, device=str(device), input_size=input_size,
        mean=parts["mean"], std=parts["std"], num_params=_count_params(module), feature_dim=int(feature_dim),
        num_classes=num_classes, extractor=extractor, value_max=options.get("value_max"),
        load_seconds=time.perf_counter() - started)
