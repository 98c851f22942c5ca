"""Load a registered model and extract its features (seed 000 §3.4, "Inference Task").

A row of ``shift.models`` becomes a :class:`LoadedModel`: the model ready on one device,
its preprocessing, and an extractor returning the penultimate ("pre-logits") features
and, where the model has a classifier head, its source-task logits.

How a model is loaded and where its features are taken depends on the source; the
strategies are a small registry, ``LOADERS``, keyed by ``shift.models.source``. A loader
is a function ``loader(row, device) -> dict`` returning:

  * ``module``: the model (an ``nn.Module`` is moved to the device and put in eval mode);
  * ``extractor``: ``batch -> (features, logits or None)``, where ``batch`` is what
    :meth:`LoadedModel.preprocess` returns and the outputs are tensors or arrays with one
    row per sample;
  * ``input_size``, ``mean``, ``std``: how images are resized and normalised (vision);
  * optional: ``modality`` (``"Vision"``, ``"Text"`` or ``"Tabular"``: what preprocess
    takes; default the row's ``input``), ``modality_known`` (the library said so, rather
    than the registration), ``tokenizer`` and ``max_length`` (text), ``forward`` (``batch
    -> model output``, for ``options.feature_layer`` hooks), ``num_params``,
    ``feature_dim`` and ``num_classes`` (``None``: measured by one forward pass),
    ``metadata`` (``upstream_dataset``, ``upstream_accuracy`` where the library knows
    them), ``tensor_device`` (where preprocess puts tensors; ``"cpu"`` for models that
    run outside torch).

Adding a source, or a model whose layers are unusual, is one such function: register it
with ``LOADERS["mysource"] = my_loader`` (the ``source`` CHECK of ``shift.models`` lists
the sources the database accepts). Seed 000 §3.4 notes that models without a standard
interface need a hook naming the layer whose input is the feature vector; any PyTorch
row may give one as ``options["feature_layer"]`` (a dotted module path such as ``"fc"``,
``"classifier.3"`` or ``"heads"``), an ONNX row the name of a tensor in its graph.

Options read from ``shift.models.options``:
  * all sources: ``feature_layer``, ``mean``, ``std``, ``value_max``;
  * timm: ``num_classes``, ``pretrained`` (default true, used only without a checkpoint),
    ``model_kwargs`` (extra ``timm.create_model`` arguments, e.g. ``img_size``);
  * torchvision: ``num_classes``, ``weights`` (a torchvision weights name, used only
    without a checkpoint), ``model_kwargs``;
  * hf: ``pooling`` (``prelogits``, ``pooler``, ``cls`` or ``mean``), ``head`` (false:
    ignore a classification head), ``model_class`` (a transformers class name),
    ``max_length``, ``revision``, ``trust_remote_code``, ``local_files_only``;
  * onnx: ``input_name``, ``feature_output``, ``logits_output``, ``layout``
    (``NCHW`` or ``NHWC``);
  * tfhub: ``signature``, ``output`` (the features' key in a dict output),
    ``logits_output``, ``tags``.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import preprocess as prep

DEFAULT_INPUT_SIZE = 224
MODALITIES = ("Vision", "Text", "Tabular")

# extractor(batch) -> (features [n, ...], logits [n, c] or None); tensors or arrays
Extractor = Callable[[Any], "tuple[Any, Any | None]"]


@dataclass
class LoadedModel:
    """A model ready for inference on one device."""

    model_id: str
    source: str
    module: Any
    device: str
    input_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_params: int | None
    feature_dim: int | None
    num_classes: int | None
    extractor: Extractor = field(repr=False)
    value_max: float | None = None
    load_seconds: float = 0.0
    modality: str = "Vision"
    modality_known: bool = False
    tokenizer: Any = field(default=None, repr=False)
    max_length: int | None = None
    tensor_device: str | None = None
    metadata: dict = field(default_factory=dict)

    def preprocess(self, batch_x):
        """Raw reader samples -> the model's input batch on its device.

        Vision: a normalised float tensor N x 3 x S x S; Text: the tokenizer's dict of
        tensors (input_ids, attention_mask, ...); Tabular: a float tensor N x d.
        """
        where = self.tensor_device or self.device
        if self.modality == "Text":
            return {k: v.to(where) for k, v in prep.tokenize(self.tokenizer, batch_x, self.max_length).items()}
        if self.modality == "Tabular":
            return prep.to_matrix(batch_x).to(where)
        x = prep.to_batch(batch_x, self.input_size or DEFAULT_INPUT_SIZE, self.mean, self.std, self.value_max)
        return x.to(where)

    def extract(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        """Pre-logits features (float32 n x d) and source-task logits (float32 n x c, or None)."""
        where = self.tensor_device or self.device
        with torch.inference_mode():
            if isinstance(batch, torch.Tensor):
                batch = batch.to(where, torch.float32)
            elif isinstance(batch, dict):
                batch = {k: v.to(where) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            feats, logits = self.extractor(batch)
            feats = as_rows(feats)
            if logits is not None:
                logits = as_rows(logits)
        return feats, logits

    def describe(self) -> dict:
        """What loading measured, as ``shift.models`` columns (None where unknown)."""
        vision = self.modality == "Vision"
        return dict(
            num_params=self.num_params, feature_dim=self.feature_dim, num_classes=self.num_classes,
            input_size=self.input_size if vision else None,
            input=self.modality if self.modality_known else None,
            input_mean=[float(v) for v in self.mean] if vision else None,
            input_std=[float(v) for v in self.std] if vision else None,
            upstream_dataset=self.metadata.get("upstream_dataset"),
            upstream_accuracy=self.metadata.get("upstream_accuracy"))


def as_rows(x) -> np.ndarray:
    """A torch tensor, TensorFlow tensor or array with one row per sample -> float32 n x d."""
    if isinstance(x, torch.Tensor):
        return x.flatten(1).float().cpu().numpy()
    arr = np.asarray(x)
    return arr.reshape(arr.shape[0], -1).astype(np.float32, copy=False)


# -- shared helpers -------------------------------------------------------------------------

def _require_file(model_id: str, path: str, what: str) -> str:
    if not path or not os.path.isfile(path):
        raise ValueError("%s %s of model %s does not exist on this worker; copy it there or register the model "
                         "again with a path every worker can read" % (what, path, model_id))
    return path


def _require_library(module: str, source: str, extra: str, model_id: str):
    """Import an optional framework, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError("model %s has source %s, which needs %s on the worker (%s); install it with "
                         "pip install 'shift[%s]'" % (model_id, source, module, e, extra)) from None


def read_state_dict(model_id: str, path: str) -> dict[str, torch.Tensor]:
    """A local checkpoint -> state dict, unwrapping {"state_dict": ...}/{"model": ...} and DDP prefixes."""
    from timm.models import load_state_dict

    _require_file(model_id, path, "checkpoint")
    try:
        return load_state_dict(path, use_ema=False, device="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file gets the same advice
        raise ValueError("checkpoint %s of model %s cannot be read as a state dict: %s"
                         % (path, model_id, _unreadable_reason(e))) from None


def _unreadable_reason(error: Exception) -> str:
    """Why a checkpoint did not load, without torch's advice to load it unsafely (weights_only=False)."""
    text = str(error)
    if "weights_only" in text or "pickle" in text.lower():
        return ("it is not a file of tensors that loads without running code; save the model's state_dict with "
                "torch.save, or as safetensors")
    return _first_line(error)[:300]


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


def _output_logits(out):
    if isinstance(out, torch.Tensor):
        return out
    return getattr(out, "logits", None)


def hook_extractor(module: nn.Module, layer: str, model_id: str, forward: Callable | None = None) -> Extractor:
    """Features = the input of ``layer`` (captured by a forward pre-hook); logits = the model output.

    ``forward(batch)`` runs the model (default ``module(batch)``); an output that is not a
    tensor gives logits from its ``logits`` attribute (Hugging Face outputs), else none.
    """
    try:
        target = module.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n][-8:]
        raise ValueError("model %s has no layer %r for options.feature_layer; its last layers are %s"
                         % (model_id, layer, ", ".join(names))) from None
    captured: list[torch.Tensor] = []

    def grab(_mod, args, kwargs=None):
        captured.append(args[0] if args else next(iter((kwargs or {}).values())))

    try:
        target.register_forward_pre_hook(grab, with_kwargs=True)
    except (RuntimeError, TypeError) as e:  # TorchScript modules take no hooks
        raise ValueError("model %s cannot take a hook on layer %s (%s); export a forward_features method instead"
                         % (model_id, layer, e)) from None
    forward = forward or module

    def run(x):
        captured.clear()
        out = forward(x)
        if not captured:
            raise RuntimeError("layer %s of model %s was not called in forward" % (layer, model_id))
        return captured[-1], _output_logits(out)

    return run


def _option_stats(options: dict, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(float(v) for v in options.get("mean", mean)), tuple(float(v) for v in options.get("std", std))


def _count_params(module) -> int | None:
    if isinstance(module, nn.Module):
        return int(sum(p.numel() for p in module.parameters()))
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:300]


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


def timm_upstream_dataset(tag: str | None) -> str | None:
    """The dataset a timm pretrained tag says the classifier was trained on last ("ft_in1k" -> imagenet-1k)."""
    found = re.findall(r"(?:^|_)in(1|12|21|22)k(?=$|_)", tag or "")
    return "imagenet-%sk" % found[-1] if found else None


def load_timm(row: dict, device: str) -> dict:
    options = row.get("options") or {}
    model_id = row["model_id"]
    metadata = {}
    if row.get("checkpoint"):
        _require_file(model_id, row["checkpoint"], "checkpoint")
        module = create_timm(row["locator"], options, pretrained=False, model_id=model_id)
        _load_weights(model_id, module, row["checkpoint"])
    else:
        pretrained = bool(options.get("pretrained", True))
        try:
            module = create_timm(row["locator"], options, pretrained=pretrained, model_id=model_id)
        except (OSError, RuntimeError) as e:  # hub unreachable, no such weights
            if not pretrained:
                raise
            raise ValueError("model %s: timm cannot fetch the pretrained weights of %r (%s); give a local "
                             "checkpoint or options.pretrained false" % (model_id, row["locator"], _first_line(e))) \
                from e
        if pretrained:
            metadata["upstream_dataset"] = timm_upstream_dataset(
                (getattr(module, "pretrained_cfg", None) or {}).get("tag"))
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
                feature_dim=feature_dim, num_classes=num_classes, modality="Vision", metadata=metadata)


# -- torchvision ----------------------------------------------------------------------------

def _torchvision_weights(locator: str, weights: str):
    import torchvision

    return torchvision.models.get_weight(weights) if "." in weights else \
        torchvision.models.get_model_weights(locator)[weights]


def torchvision_eval_config(locator: str, weights: str | None) -> tuple[int, tuple, tuple]:
    """Input side, mean and std that torchvision's weights were evaluated with (ImageNet defaults otherwise)."""
    default = (DEFAULT_INPUT_SIZE, prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    if not weights:
        return default
    try:
        t = _torchvision_weights(locator, weights).transforms()
        return int(t.crop_size[0]), tuple(t.mean), tuple(t.std)
    except (KeyError, ValueError, AttributeError, TypeError):
        return default  # an unknown name fails with a clear message when the model is built


def torchvision_upstream(locator: str, weights: str | None) -> dict:
    """Upstream dataset and top-1 accuracy (a fraction) from torchvision's weights metadata."""
    if not weights:
        return {}
    try:
        metrics = _torchvision_weights(locator, weights).meta.get("_metrics") or {}
    except (KeyError, ValueError, AttributeError, TypeError):
        return {}
    for dataset, values in metrics.items():
        if isinstance(values, dict) and values.get("acc@1") is not None:
            return {"upstream_dataset": dataset, "upstream_accuracy": float(values["acc@1"]) / 100.0}
    return {}


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
    except (OSError, RuntimeError) as e:  # the weights cannot be downloaded
        raise ValueError("model %s: torchvision cannot fetch weights %s of %r (%s); give a local checkpoint"
                         % (model_id, weights, row["locator"], _first_line(e))) from e
    if row.get("checkpoint"):
        _load_weights(model_id, module, row["checkpoint"])
    layer = options.get("feature_layer") or last_linear(module)
    if layer is None:
        raise ValueError("model %s has no linear classifier to take features before; name the layer whose input "
                         "is the feature vector in options.feature_layer" % model_id)
    head = module.get_submodule(layer) if not options.get("feature_layer") else None
    size, mean, std = torchvision_eval_config(row["locator"], weights)
    mean, std = _option_stats(options, mean, std)
    metadata = torchvision_upstream(row["locator"], weights) if kwargs.get("num_classes") is None else {}
    return dict(module=module, extractor=hook_extractor(module, layer, model_id), handles_feature_layer=True,
                input_size=size, mean=mean, std=std,
                feature_dim=head.in_features if head is not None else None,
                num_classes=head.out_features if head is not None else None, modality="Vision", metadata=metadata)


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


# -- Hugging Face transformers --------------------------------------------------------------

HF_POOLINGS = ("prelogits", "pooler", "cls", "mean")


def _quiet(fn, *args, **kwargs):
    """Call a from_pretrained, None when the directory or repository has no such component."""
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def hf_image_config(image_processor, config) -> tuple[int, tuple, tuple]:
    """Input side, mean and std of a Hugging Face vision model, from its image processor."""
    size = None
    if image_processor is not None:
        crop = getattr(image_processor, "crop_size", None)
        sizes = getattr(image_processor, "size", None)
        if crop is not None and getattr(image_processor, "do_center_crop", False):
            size = _side(crop)
        if size is None and sizes is not None:
            size = _side(sizes)
    if size is None:
        image_size = getattr(config, "image_size", None)
        size = int(image_size if isinstance(image_size, int) else image_size[-1]) if image_size else DEFAULT_INPUT_SIZE
    mean = getattr(image_processor, "image_mean", None) or prep.IMAGENET_MEAN
    std = getattr(image_processor, "image_std", None) or prep.IMAGENET_STD
    if isinstance(mean, (int, float)):
        mean, std = (mean,) * 3, (std,) * 3
    return int(size), tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _side(sizes) -> int | None:
    get = sizes.get if isinstance(sizes, dict) else (lambda k: getattr(sizes, k, None))
    for key in ("height", "shortest_edge", "width"):
        if get(key):
            return int(get(key))
    return int(sizes) if isinstance(sizes, int) else None


def pool_hidden(out, pooling: str, mask: torch.Tensor | None, model_id: str) -> torch.Tensor:
    """One vector per sample from a transformers base-model output."""
    if pooling == "pooler":
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise ValueError("model %s has no pooler output; set options.pooling to mean or cls" % model_id)
        return pooled
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    if hidden.dim() == 4:  # convolutional: N x C x H x W
        if pooling == "cls":
            raise ValueError("model %s is convolutional and has no cls token; set options.pooling to mean" % model_id)
        return hidden.mean(dim=(2, 3))
    if pooling == "cls":
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _hf_model_class(transformers, config, options, modality, model_id):
    """The transformers class to load: options.model_class, else the classifier the config names, else AutoModel."""
    archs = list(getattr(config, "architectures", None) or [])
    use_head = options.get("head", True)
    if options.get("model_class"):
        cls = getattr(transformers, options["model_class"], None)
        if cls is None:
            raise ValueError("model %s: transformers has no class %r for options.model_class"
                             % (model_id, options["model_class"]))
        return cls
    if use_head and modality == "Vision" and any(a.endswith("ForImageClassification") for a in archs):
        return transformers.AutoModelForImageClassification
    if use_head and modality == "Text" and any(a.endswith("ForSequenceClassification") for a in archs):
        return transformers.AutoModelForSequenceClassification
    return transformers.AutoModel


def _hf_extractor(module, base, forward, pooling, has_head, model_id):
    """Pre-logits through a hook on the classifier, or the base model's output pooled as `pooling` says."""
    if pooling == "prelogits":
        return hook_extractor(module, last_linear(module), model_id, forward)
    captured = []
    if base is not module:
        base.register_forward_hook(lambda _m, _a, out: captured.append(out))

    def extractor(batch):
        captured.clear()
        out = forward(batch)
        hidden = captured[-1] if captured else out
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        logits = out.logits if has_head and hasattr(out, "logits") else None
        return pool_hidden(hidden, pooling, mask, model_id), logits

    return extractor


def load_hf(row: dict, device: str) -> dict:
    """A transformers model from the hub or a ``save_pretrained`` directory, vision or text.

    Vision models take their input size and normalisation from the image processor saved
    with them; text models take their tokenizer. Features are the classifier's input for
    a model with a classification head (``pooling`` ``prelogits``, the default then),
    else the pooled base-model output: ``mean`` over tokens (text default), ``pooler``
    output (vision default, where there is one), or the ``cls`` token.
    """
    model_id = row["model_id"]
    transformers = _require_library("transformers", "hf", "hf", model_id)
    transformers.utils.logging.disable_progress_bar()  # worker logs are read line by line
    options = row.get("options") or {}
    where = row.get("checkpoint") or row["locator"]
    kwargs = {k: options[k] for k in ("revision", "trust_remote_code", "local_files_only")
              if options.get(k) is not None}
    try:
        config = transformers.AutoConfig.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError("model %s: hugging face model %r cannot be loaded (%s); check the hub id, or give a "
                         "directory written by save_pretrained" % (model_id, where, _first_line(e))) from e

    hint = (row.get("input") or "").title()
    image_processor = tokenizer = None
    if hint != "Text":
        image_processor = _quiet(transformers.AutoImageProcessor.from_pretrained, where, **kwargs)
    if image_processor is None:
        tokenizer = _quiet(transformers.AutoTokenizer.from_pretrained, where, **kwargs)
    if image_processor is None and tokenizer is None:
        if hint == "Text" or not (hasattr(config, "num_channels") or hasattr(config, "image_size")):
            raise ValueError("model %s: %s has neither an image processor nor a tokenizer; save one with "
                             "save_pretrained next to the model" % (model_id, where))
    modality = "Vision" if tokenizer is None else "Text"

    cls = _hf_model_class(transformers, config, options, modality, model_id)
    try:
        module = cls.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as e:
        raise ValueError("model %s: hugging face weights of %r cannot be loaded (%s)"
                         % (model_id, where, _first_line(e))) from e

    base = getattr(module, "base_model", module)
    has_head = base is not module and hasattr(module, "config") and getattr(module.config, "num_labels", 0) and \
        cls is not transformers.AutoModel
    pooling = options.get("pooling") or ("prelogits" if has_head else "mean" if modality == "Text" else "pooler")
    if pooling not in HF_POOLINGS:
        raise ValueError("model %s: options.pooling must be one of %s, not %r"
                         % (model_id, ", ".join(HF_POOLINGS), pooling))
    if pooling == "prelogits" and not has_head:
        raise ValueError("model %s has no classification head to take pre-logits from; set options.pooling to "
                         "mean, cls or pooler" % model_id)

    def forward(batch):
        return module(**batch) if isinstance(batch, dict) else module(pixel_values=batch)

    extractor = _hf_extractor(module, base, forward, pooling, has_head, model_id)
    parts = dict(module=module, extractor=extractor, forward=forward, modality=modality, modality_known=True,
                 num_classes=int(module.config.num_labels) if has_head else None, feature_dim=None)
    if modality == "Vision":
        size, mean, std = hf_image_config(image_processor, config)
        parts["input_size"] = size
        parts["mean"], parts["std"] = _option_stats(options, mean, std)
    else:
        limits = [options.get("max_length"), getattr(tokenizer, "model_max_length", None),
                  getattr(config, "max_position_embeddings", None)]
        limits = [int(v) for v in limits if v and int(v) < 1_000_000]
        parts.update(tokenizer=tokenizer, input_size=None, mean=prep.IMAGENET_MEAN, std=prep.IMAGENET_STD,
                     max_length=int(options["max_length"]) if options.get("max_length") else min(limits + [512]))
    return parts


# -- ONNX -----------------------------------------------------------------------------------

def _onnx_providers(ort, device: str) -> list[str]:
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = str(device).partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _onnx_with_output(onnx, graph_model, path, layer, model_id):
    """The model (a path or serialised bytes) with tensor `layer` among its outputs, for options.feature_layer."""
    names = {o for n in graph_model.graph.node for o in n.output}
    if layer not in names:
        near = [n for n in names if layer.lower() in n.lower()][:5] or sorted(names)[-5:]
        raise ValueError("model %s has no tensor %r for options.feature_layer; tensors include %s"
                         % (model_id, layer, ", ".join(near)))
    if layer in {o.name for o in graph_model.graph.output}:
        return path
    whole = onnx.load(path)  # with external data, to re-serialise the whole model
    whole.graph.output.append(onnx.helper.ValueInfoProto(name=layer))
    return whole.SerializeToString()


def load_onnx(row: dict, device: str) -> dict:
    """An ONNX file run by onnxruntime.

    Features are the output named by ``options.feature_output``, else an output named
    ``features`` or ``pre_logits``, else the tensor named by ``options.feature_layer``
    (any tensor of the graph, exposed as an extra output), else the first output. Logits
    are ``options.logits_output``, else an output named ``logits``. A 4-D input is an
    image batch (NCHW, or NHWC when its last axis has 1 or 3 entries), a 2-D input a
    batch of feature vectors.
    """
    model_id = row["model_id"]
    ort = _require_library("onnxruntime", "onnx", "onnx", model_id)
    onnx = _require_library("onnx", "onnx", "onnx", model_id)
    options = row.get("options") or {}
    path = _require_file(model_id, row["locator"], "ONNX file")
    try:
        graph_model = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001 -- protobuf raises several types for a bad file
        raise ValueError("ONNX file %s of model %s cannot be read: %s" % (path, model_id, _first_line(e))) from e
    num_params = int(sum(int(np.prod(t.dims)) for t in graph_model.graph.initializer))
    layer = options.get("feature_layer")
    source = _onnx_with_output(onnx, graph_model, path, layer, model_id) if layer else path
    del graph_model
    try:
        session = ort.InferenceSession(source, providers=_onnx_providers(ort, device))
    except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types
        raise ValueError("ONNX file %s of model %s cannot be loaded by onnxruntime: %s"
                         % (path, model_id, _first_line(e))) from e
    inputs = {i.name: i for i in session.get_inputs()}
    inp = inputs.get(options.get("input_name")) if options.get("input_name") else session.get_inputs()[0]
    if inp is None:
        raise ValueError("model %s has no input %r; its inputs are %s" % (model_id, options["input_name"],
                                                                          ", ".join(inputs)))
    if "int" in inp.type:
        raise ValueError("model %s takes integer input %s (token ids); register text models with source hf"
                         % (model_id, inp.name))
    outputs = [o.name for o in session.get_outputs()]
    feature_out = options.get("feature_output") or layer or \
        next((n for n in ("features", "pre_logits") if n in outputs), None) or outputs[0]
    logits_out = options.get("logits_output") or ("logits" if "logits" in outputs and feature_out != "logits"
                                                  else None)
    for name in (feature_out, logits_out):
        if name is not None and name not in outputs:
            raise ValueError("model %s has no output %r; its outputs are %s" % (model_id, name, ", ".join(outputs)))
    fetch = [feature_out] + ([logits_out] if logits_out else [])
    shape = list(inp.shape)
    parts = dict(module=session, num_params=num_params, tensor_device="cpu", handles_feature_layer=True,
                 feature_dim=None, num_classes=None)
    if len(shape) == 4:
        nhwc = options.get("layout", "").upper() == "NHWC" or (
            not options.get("layout") and shape[-1] in (1, 3) and shape[1] not in (1, 3))
        spatial = shape[1:3] if nhwc else shape[2:4]
        fixed = [s for s in spatial if isinstance(s, int) and s > 0]
        mean, std = _option_stats(options, prep.IMAGENET_MEAN, prep.IMAGENET_STD)
        parts.update(modality="Vision", modality_known=True, input_size=fixed[0] if fixed else DEFAULT_INPUT_SIZE,
                     mean=mean, std=std)
    elif len(shape) == 2:
        width = shape[1] if isinstance(shape[1], int) and shape[1] > 0 else None
        parts.update(modality="Tabular", modality_known=True, input_size=None, probe_width=width,
                     mean=prep.IMAGENET_MEAN, std=prep.IMAGENET_STD)
        nhwc = False
    else:
        raise ValueError("model %s takes a %d-D input %s; shift feeds 4-D image batches or 2-D feature batches"
                         % (model_id, len(shape), inp.name))
    dtype = np.float16 if "float16" in inp.type else np.float32

    def run(x):
        arr = x.detach().cpu().numpy()
        if nhwc:
            arr = arr.transpose(0, 2, 3, 1)
        out = session.run(fetch, {inp.name: np.ascontiguousarray(arr, dtype=dtype)})
        return out[0], out[1] if logits_out else None

    parts["extractor"] = run
    return parts


# -- TF-Hub ---------------------------------------------------------------------------------

def import_tensorflow():
    """Import TensorFlow safely next to torch.

    TensorFlow and triton (which torch and transformers import lazily) both carry LLVM;
    loading triton's extension after TensorFlow's crashes the process, the other way
    round works. So triton, where installed, is imported first.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    import tensorflow

    return tensorflow


def _tf_device(tf, device: str) -> str:
    if str(device).startswith("cuda"):
        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            try:
                tf.config.experimental.set_memory_growth(g, True)  # leave GPU memory to torch models
            except RuntimeError:
                pass  # already initialised
        if gpus:
            return "/GPU:%s" % (str(device).partition(":")[2] or "0")
    return "/CPU:0"


def _tf_input_spec(fn):
    """(args, kwargs) input specs of a restored tf.function or a signature, or None."""
    concrete = getattr(fn, "concrete_functions", None)
    if concrete:
        return concrete[0].structured_input_signature
    return getattr(fn, "structured_input_signature", None)


def _tf_image_side(spec) -> int | None:
    import tensorflow as tf

    flat = [s for s in tf.nest.flatten(spec) if isinstance(s, tf.TensorSpec)] if spec else []
    for s in flat:
        dims = s.shape.as_list() if s.shape.rank is not None else []
        if len(dims) == 4 and dims[1] and dims[2]:
            return int(dims[1])
    return None


def _tf_num_params(tf, hub, obj, locator: str) -> int | None:
    variables = getattr(obj, "variables", None)
    if variables:
        return int(sum(int(np.prod(v.shape)) for v in variables))
    try:
        path = locator if os.path.isdir(locator) else hub.resolve(locator)
        names = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    except Exception:  # noqa: BLE001 -- a model without a variables checkpoint has no count to give
        return None
    return int(sum(int(np.prod(shape)) for name, shape in names
                   if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") and "OPTIMIZER_SLOT" not in name)) or None


def load_tfhub(row: dict, device: str) -> dict:
    """A TF-Hub handle or a SavedModel directory, loaded with ``tensorflow_hub.load``.

    TF-Hub image models take float32 NHWC batches in [0, 1] (mean 0, std 1 here). The
    model is called as ``obj(images)`` (with ``training=False`` when it takes that
    argument), or through ``obj.signatures[options.signature]``. Features are its output,
    or ``output[options.output]`` for a dict output (``default`` or the only key when
    unnamed); ``options.logits_output`` names the logits in a dict output. Feature-vector
    handles have no logits.
    """
    model_id = row["model_id"]
    try:
        tf = import_tensorflow()
    except ImportError:
        tf = _require_library("tensorflow", "tfhub", "tf", model_id)  # raises with the install hint
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # tensorflow-hub 0.16.1
        hub = _require_library("tensorflow_hub", "tfhub", "tf", model_id)
    options = row.get("options") or {}
    locator = row.get("checkpoint") or row["locator"]
    if options.get("feature_layer"):
        raise ValueError("model %s: TF-Hub models take no layer hooks; name an output of the model in options.output"
                         % model_id)
    try:
        obj = hub.load(locator, tags=options.get("tags"))
    except Exception as e:  # noqa: BLE001 -- network, missing files and bad SavedModels raise many types
        raise ValueError("model %s: TF-Hub model %r cannot be loaded (%s); check the handle, or give a SavedModel "
                         "directory" % (model_id, locator, _first_line(e))) from e
    signature = options.get("signature")
    if signature:
        if signature not in obj.signatures:
            raise ValueError("model %s has no signature %r; it has %s" % (model_id, signature,
                                                                         ", ".join(obj.signatures) or "none"))
        fn = obj.signatures[signature]
        args, kwargs = fn.structured_input_signature
        input_key = next(iter(kwargs)) if kwargs else None
        call = (lambda t: fn(**{input_key: t})) if input_key else fn
        sized = kwargs or args
    else:
        if not callable(obj):
            raise ValueError("model %s is not callable; name one of its signatures (%s) in options.signature"
                             % (model_id, ", ".join(obj.signatures) or "none"))
        spec = _tf_input_spec(obj.__call__)
        training = bool(spec) and ("training" in (spec[1] or {}) or len(spec[0] or ()) > 1)
        call = (lambda t: obj(t, training=False)) if training else obj
        sized = spec[0] if spec else None
    tf_device = _tf_device(tf, device)
    output, logits_output = options.get("output"), options.get("logits_output")

    def pick(out, key, what):
        if not isinstance(out, dict):
            return out
        if key is None:
            key = "default" if "default" in out else next(iter(out)) if len(out) == 1 else None
        if key not in out:
            raise ValueError("model %s returns %s; name the %s in options.%s"
                             % (model_id, ", ".join(sorted(out)), what,
                                "output" if what == "features" else "logits_output"))
        return out[key]

    def run(x):
        images = tf.constant(x.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy())
        with tf.device(tf_device):
            out = call(images)
        feats = pick(out, output, "features").numpy()
        logits = pick(out, logits_output, "logits").numpy() if logits_output else None
        return feats, logits

    mean, std = _option_stats(options, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return dict(module=obj, extractor=run, tensor_device="cpu", input_size=_tf_image_side(sized) or DEFAULT_INPUT_SIZE,
                mean=mean, std=std, num_params=_tf_num_params(tf, hub, obj, locator), feature_dim=None,
                num_classes=None, modality="Vision")


# source -> loader(row, device) -> dict (see the module docstring); feature_dim / num_classes of None
# are measured by one forward pass.
LOADERS: dict[str, Callable[[dict, str], dict[str, Any]]] = {
    "timm": load_timm,
    "torchvision": load_torchvision,
    "torchscript": load_torchscript,
    "hf": load_hf,
    "onnx": load_onnx,
    "tfhub": load_tfhub,
}


def _probe_batch(model: LoadedModel, width: int | None):
    """One dummy sample in the model's modality, preprocessed, or None when its shape is unknown."""
    if model.modality == "Text":
        return model.preprocess(["shift"])
    if model.modality == "Tabular":
        return model.preprocess(np.zeros((1, width), np.float32)) if width else None
    size = model.input_size or DEFAULT_INPUT_SIZE
    return model.preprocess(np.zeros((1, size, size, 3), np.uint8))


def load_model(row: dict, device: str = "cpu") -> LoadedModel:
    """A ``shift.models`` row -> a :class:`LoadedModel` ready on ``device``."""
    started = time.perf_counter()
    model_id = row.get("model_id", "?")
    loader = LOADERS.get(row.get("source"))
    if loader is None:
        raise ValueError("model %s has source %r, which this worker cannot load yet; supported sources: %s"
                         % (model_id, row.get("source"), ", ".join(LOADERS)))
    options = row.get("options") or {}
    parts = loader(row, device)
    module = parts["module"]
    if isinstance(module, nn.Module):
        module = module.to(device).eval()
    extractor = parts["extractor"]
    feature_dim, num_classes = parts.get("feature_dim"), parts.get("num_classes")
    if options.get("feature_layer") and not parts.get("handles_feature_layer"):
        extractor = hook_extractor(module, options["feature_layer"], model_id, parts.get("forward"))
        feature_dim = None
    modality = parts.get("modality") or (row.get("input") if row.get("input") in MODALITIES else "Vision")
    input_size = row.get("input_size") or parts.get("input_size")
    model = LoadedModel(
        model_id=model_id, source=row["source"], module=module, device=str(device),
        input_size=int(input_size) if input_size else None,
        mean=tuple(parts.get("mean", prep.IMAGENET_MEAN)), std=tuple(parts.get("std", prep.IMAGENET_STD)),
        num_params=parts.get("num_params") or _count_params(module), feature_dim=feature_dim, num_classes=num_classes,
        extractor=extractor, value_max=options.get("value_max"), modality=modality,
        modality_known=bool(parts.get("modality_known")), tokenizer=parts.get("tokenizer"),
        max_length=parts.get("max_length"), tensor_device=parts.get("tensor_device"),
        metadata={k: v for k, v in (parts.get("metadata") or {}).items() if v is not None})
    if model.feature_dim is None:
        batch = _probe_batch(model, parts.get("probe_width"))
        if batch is not None:
            feats, logits = model.extract(batch)
            model.feature_dim = int(feats.shape[1])
            model.num_classes = model.num_classes or (None if logits is None else int(logits.shape[1]))
    model.load_seconds = time.perf_counter() - started
    return model
