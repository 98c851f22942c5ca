"""Raw reader samples -> the batch a model takes.

Images become a normalised float batch N x 3 x S x S (most of this module); text
becomes the model tokenizer's batch (:func:`tokenize`); tabular vectors a float matrix
N x d (:func:`to_matrix`).

A sample is what a reader yields (see readers.py): a numpy array or encoded image bytes
(PNG, JPEG, anything Pillow opens). Every model sees its inputs the same way, so cached
features of one sample never depend on which block or batch it was read in.

Layout rule, per sample:
  * 2-D ``H x W`` is grayscale;
  * 3-D is channels-first ``C x H x W`` when the first axis has 1, 3 or 4 entries and the
    last does not, channels-last ``H x W x C`` otherwise (Pillow and numpy convention);
  * 1 channel is replicated to 3, 4 channels (RGBA) drop alpha, 2 (LA) keep the luminance.

Value-range rule, per sample (so the scale never depends on the block-mates):
  * integer dtypes are pixel values: divided by 255, or by 65535 when the sample's max
    exceeds 255 (16-bit images);
  * floats whose max is <= 1 are taken as already in [0, 1]; otherwise they are taken as
    0-255 pixel values (divided by 255), or 16-bit values (65535) when the max exceeds 255,
    or divided by their own max beyond that.
  A reader or model may fix the divisor instead with ``value_max``.

Resizing is a direct bilinear, antialiased resize to S x S (no centre crop): reader
images are often small, and cropping would cut the object out of them.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CHANNEL_COUNTS = (1, 2, 3, 4)


def decode_image(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Encoded image bytes -> uint8 array, H x W (grayscale) or H x W x 3."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(data))) as im:
        im.load()
        if im.mode in ("1", "L", "LA"):
            return np.asarray(im.convert("L"))
        if im.mode.startswith(("I", "F")):  # 16/32-bit integer or float images keep their values
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))


def as_array(sample) -> np.ndarray:
    """One raw sample -> a numpy array (decoding image bytes)."""
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return decode_image(sample)
    if isinstance(sample, torch.Tensor):
        return sample.detach().cpu().numpy()
    arr = np.asarray(sample)
    if arr.dtype == object:
        raise ValueError("cannot read a sample of type %s as an image" % type(sample).__name__)
    return arr


def channels_first(batch: np.ndarray) -> np.ndarray:
    """A batch N x H x W, N x H x W x C or N x C x H x W -> N x C x H x W (a view, no copy)."""
    if batch.ndim == 3:
        return batch[:, None]
    if batch.ndim != 4:
        raise ValueError("an image sample must be 2-D (H x W) or 3-D (H x W x C or C x H x W), not %d-D; "
                         "give the reader a \"shape\" option to reshape flat arrays" % (batch.ndim - 1))
    first, last = batch.shape[1], batch.shape[3]
    if first in _CHANNEL_COUNTS and last not in _CHANNEL_COUNTS:
        return batch
    if last in _CHANNEL_COUNTS:
        return batch.transpose(0, 3, 1, 2)
    raise ValueError("cannot tell the channel axis of image samples of shape %s: neither the first nor the "
                     "last axis has 1, 3 or 4 entries" % (tuple(batch.shape[1:]),))


def value_divisors(batch: torch.Tensor, integer: bool) -> torch.Tensor:
    """Per-sample divisor mapping values to [0, 1], by the module's value-range rule. Shape N x 1 x 1 x 1."""
    peak = batch.flatten(1).amax(dim=1)
    if integer:
        div = torch.where(peak > 255, 65535.0, 255.0)
    else:
        div = torch.where(peak <= 1, 1.0, torch.where(peak <= 255, 255.0,
                                                      torch.where(peak <= 65535, 65535.0, peak)))
    return div.to(torch.float32).view(-1, 1, 1, 1)


def to_three_channels(batch: torch.Tensor) -> torch.Tensor:
    """N x C x H x W with C in 1..4 -> N x 3 x H x W (grayscale replicated, alpha dropped)."""
    c = batch.shape[1]
    if c == 3:
        return batch
    if c in (1, 2):
        return batch[:, :1].expand(-1, 3, -1, -1)
    if c == 4:
        return batch[:, :3]
    raise ValueError("image samples have %d channels; 1, 2, 3 or 4 are supported" % c)


def convert_group(arrays: np.ndarray, size: int, value_max: float | None = None) -> torch.Tensor:
    """Equal-shaped samples stacked as N x ... -> float N x 3 x size x size in [0, 1], one tensor op each step."""
    chw = channels_first(arrays)
    integer = chw.dtype.kind in "ui"  # booleans take the float rule: True -> 1
    x = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))
    x = x / (value_max if value_max else value_divisors(x, integer))
    x = to_three_channels(x)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def to_batch(samples: Sequence | np.ndarray, size: int, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD, value_max: float | None = None) -> torch.Tensor:
    """Raw samples -> float32 tensor N x 3 x size x size, resized and normalised with mean/std.

    ``samples`` is a list of samples or an array whose first axis indexes samples. Samples
    of equal shape and dtype are converted together as one tensor; the result keeps the
    input order.
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    if isinstance(samples, np.ndarray) and samples.dtype != object:
        x = convert_group(samples, size, value_max)
    else:
        arrays = [as_array(s) for s in samples]
        if not arrays:
            return torch.empty(0, 3, size, size)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, a in enumerate(arrays):
            groups[(a.shape, a.dtype.str)].append(i)
        if len(groups) == 1:
            x = convert_group(np.stack(arrays), size, value_max)
        else:
            x = torch.empty(len(arrays), 3, size, size)
            for idx in groups.values():
                x[idx] = convert_group(np.stack([arrays[i] for i in idx]), size, value_max)
    m = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


# -- text and tabular samples -------------------------------------------------------------------

def as_texts(samples) -> list[str]:
    """Raw text samples (str, bytes as UTF-8, numpy strings) -> a list of str."""
    items = samples.tolist() if isinstance(samples, np.ndarray) else list(samples)
    out = []
    for s in items:
        if isinstance(s, (bytes, bytearray, memoryview)):
            s = bytes(s).decode("utf-8", errors="replace")
        elif s is None:
            raise ValueError("a text sample is NULL")
        out.append(s if isinstance(s, str) else str(s))
    return out


def tokenize(tokenizer, samples, max_length: int | None) -> dict[str, torch.Tensor]:
    """Text samples -> the tokenizer's padded, truncated batch (input_ids, attention_mask, ...) as tensors."""
    enc = tokenizer(as_texts(samples), padding=True, truncation=max_length is not None, max_length=max_length,
                    return_tensors="pt")
    return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}


def to_matrix(samples) -> torch.Tensor:
    """Tabular samples (equal-length numeric vectors) -> float32 tensor N x d."""
    if isinstance(samples, torch.Tensor):
        arr = samples.detach().cpu().numpy()
    elif isinstance(samples, np.ndarray) and samples.dtype != object:
        arr = samples
    else:
        rows = [np.asarray(s) for s in samples]
        if rows and any(r.shape != rows[0].shape for r in rows):
            raise ValueError("tabular samples have different lengths: %s"
                             % ", ".join(sorted({str(r.shape) for r in rows})[:3]))
        arr = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError("tabular samples must be numbers, not %s" % arr.dtype)
    return torch.from_numpy(np.ascontiguousarray(arr.reshape(len(arr), -1), dtype=np.float32))
