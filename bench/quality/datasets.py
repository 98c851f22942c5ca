"""Offline image tasks for the search-quality benchmark: narrow upstream domains and VTAB-like downstream tasks.

The benchmark asks whether shift's proxies pick the model that fine-tunes best, in a
repository holding both experts and generalists. Seed 002 (§4.1) evaluates that on
VTAB-1K, whose 19 tasks fall into three groups: *natural* (camera pictures), *specialised*
(specialist equipment: microscopy, remote sensing) and *structured* (counting, object
location, orientation, distance in synthetic scenes); its pools (§4.2) mix *expert*
models, pre-trained on narrow slices of a larger data set, with *generalists* pre-trained
on broad data. No data set or model hub is reachable where shift is tested, so this
module draws small stand-ins for both sides, every one a 32x32 RGB uint8 image:

* ``UPSTREAM``: six narrow pre-training domains (geometric shapes, font glyphs,
  procedural textures, object counts, object positions, handwritten digits), each the
  training set of two expert models, and ``"mixture"``, their union labelled by
  (domain, class): the broad task generalists are trained on (seed 003: a better
  generalist on its upstream task tends to transfer better).
* ``DOWNSTREAM``: ten target tasks in VTAB's three groups. Each is related to some
  upstream domains but not a copy of any (new classes, colours, clutter, distributions),
  so that some experts transfer and others do not, as in seed 002's Expert pool.

Every task is a :class:`TaskSpec`. ``spec.generate(n, seed)`` draws ``n`` images with
balanced, shuffled labels, the same bytes for the same (task, seed) on a machine;
:func:`splits` draws disjoint train / validation / test sets. Only the glyph-based
tasks depend on the machine, through its fonts (every .ttf / .otf under
``/usr/share/fonts`` plus Pillow's bundled font, so they work with no system fonts);
:func:`font_fingerprint` identifies that set for caches.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shift_cli.zoo import SHAPES, draw_shape, polygon

IMAGE_SIZE = 32
SCALE = 4  # vector shapes are drawn 4x larger and box-filtered down: antialiased edges
BIG = IMAGE_SIZE * SCALE
FONT_DIR = Path("/usr/share/fonts")

Renderer = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class TaskSpec:
    """An image-classification task: its classes and a deterministic generator of labelled images."""

    name: str  # short id, used in model and reader names
    kind: str  # "upstream", or the VTAB group of a downstream task: "natural", "specialised", "structured"
    classes: tuple[str, ...]
    description: str  # one line: what the images show and what the label is
    draw: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]  # (n, rng) -> x, y

    def generate(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` images with balanced, shuffled labels: x uint8 [n, 32, 32, 3], y int64 [n] indexing ``classes``."""
        rng = np.random.default_rng([_stable_int(self.name), int(seed)])
        return self.draw(int(n), rng)


def splits(task: TaskSpec, sizes: dict[str, int], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint draws of ``task``, one per split name (e.g. train / validation / test), each from its own seed."""
    return {split: task.generate(n, _stable_int("%d/%s" % (seed, split))) for split, n in sizes.items()}


def _stable_int(text: str) -> int:
    """A seed from a string that, unlike ``hash``, is the same in every process."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    y = np.arange(n, dtype=np.int64) % k
    rng.shuffle(y)
    return y


def _spec(name: str, kind: str, classes, description: str, render: Renderer) -> TaskSpec:
    classes = tuple(classes)

    def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        y = _balanced_labels(n, len(classes), rng)
        if n == 0:
            return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), y
        return render(y, rng), y

    draw.render = render  # the mixture renders each domain's share of its labels with the domain's renderer
    return TaskSpec(name, kind, classes, description, draw)


def _each(draw_one: Callable[[int, np.random.Generator], np.ndarray]) -> Renderer:
    """A renderer from a function drawing one image of a given class."""
    def render(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.stack([draw_one(int(k), rng) for k in y])
    return render


# -- drawing helpers ------------------------------------------------------------------------------

def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _jitter(base, rng: np.random.Generator, amount: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(base[:3], np.float64) + rng.uniform(-amount, amount, 3), 0, 255))


def _contrasting(rng: np.random.Generator, min_distance: float = 110.0) -> tuple[tuple, tuple]:
    """Two random colours far enough apart to read a figure on its ground."""
    while True:
        a, b = _colour(rng), _colour(rng)
        if np.linalg.norm(np.subtract(a, b)) >= min_distance:
            return a, b


def _finish(img, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """A PIL image or float array (any multiple of 32 wide) -> 32x32x3 uint8 with sensor noise."""
    if isinstance(img, Image.Image):
        if img.size != (IMAGE_SIZE, IMAGE_SIZE):
            img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        f = arr.shape[0] // IMAGE_SIZE
        if f > 1:
            arr = arr.reshape(IMAGE_SIZE, f, IMAGE_SIZE, f, 3).mean(axis=(1, 3))
    if noise:
        arr = arr + rng.normal(0.0, noise * 255, arr.shape).astype(np.float32)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _blend(ground: np.ndarray, colour, mask: np.ndarray) -> np.ndarray:
    """Paint ``colour`` over a float H x W x 3 image where ``mask`` (H x W in [0, 1]) says."""
    return ground * (1 - mask[..., None]) + np.asarray(colour, np.float32) * mask[..., None]


def _spectral_noise(rng: np.random.Generator, beta: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """A noise field with power falling as 1/f^beta (0: white, 1: pink, 2: brown), scaled to [0, 1]."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(size, size))
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo + 1e-9)


def _grid(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(c, c)  # xx, yy in pixel units


def _rotated(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _sprite(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float, fill) -> None:
    """A small filled sprite (dSprites-like) centred at (cx, cy) with radius ``r``, on a 4x canvas."""
    if kind == "disk":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        d.polygon(polygon(cx, cy, r * 1.15, angle, 4), fill=fill)
    elif kind == "triangle":
        d.polygon(polygon(cx, cy, r * 1.2, angle, 3), fill=fill)
    elif kind == "ellipse":
        d.polygon([(cx + r * 1.2 * math.cos(t) * math.cos(angle) - r * 0.6 * math.sin(t) * math.sin(angle),
                    cy + r * 1.2 * math.cos(t) * math.sin(angle) + r * 0.6 * math.sin(t) * math.cos(angle))
                   for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)], fill=fill)
    elif kind == "heart":
        d.polygon(_heart(cx, cy, r, angle), fill=fill)
    else:
        raise ValueError(kind)


def _heart(cx, cy, r, angle):
    """A heart pointing along ``angle`` (its tip), radius about ``r``."""
    pts = []
    for t in np.linspace(0, 2 * math.pi, 40, endpoint=False):
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((cx + x * r / 16, cy - (y + 2) * r / 16))  # tip downwards at angle 0 (+y)
    return _rotated(pts, cx, cy, angle - math.pi / 2)


# -- fonts ----------------------------------------------------------------------------------------

# Symbol and dingbat fonts put pictures at the letters' code points: they would draw no letters.
_PICTURE_FONTS = re.compile(r"symbol|dingbat|d050000l|emoji|wingding|webding|awesome|icons?\b|ornament|braille",
                            re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """The machine's text fonts (sorted, so a seed draws the same fonts every time)."""
    paths = []
    if FONT_DIR.is_dir():
        for p in sorted(FONT_DIR.rglob("*")):
            if p.suffix.lower() in (".ttf", ".otf") and not _PICTURE_FONTS.search(p.name):
                try:
                    family = ImageFont.truetype(str(p), 20).getname()[0] or ""
                except OSError:
                    continue
                if not _PICTURE_FONTS.search(family):
                    paths.append(str(p))
    return tuple(paths)


def font_fingerprint() -> str:
    """Identifies the fonts the glyph tasks draw with: part of a zoo's cache key."""
    return hashlib.sha256("\n".join(font_paths()).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=4096)
def _font(index: int, size: int):
    """Font ``index`` of :func:`font_paths` at ``size`` px; the last index is Pillow's bundled font."""
    paths = font_paths()
    if index < len(paths):
        return ImageFont.truetype(paths[index], size)
    return ImageFont.load_default(size=size)


def _glyph_mask(text: str, rng: np.random.Generator, size: tuple[int, int], rotate: float, shift: float,
                stretch: float = 0.0) -> np.ndarray:
    """``text`` in a random font and size, centred with a random shift and rotation: a float 32x32 mask."""
    scale = 2
    font = _font(int(rng.integers(len(font_paths()) + 1)), scale * int(rng.integers(size[0], size[1] + 1)))
    im = Image.new("L", (IMAGE_SIZE * scale * 2, IMAGE_SIZE * scale * 2), 0)  # room to rotate without cropping
    c = IMAGE_SIZE * scale
    dx, dy = rng.uniform(-shift, shift, 2) * scale
    ImageDraw.Draw(im).text((c + dx, c + dy), text, font=font, fill=255, anchor="mm")
    im = im.rotate(float(rng.uniform(-rotate, rotate)), resample=Image.Resampling.BILINEAR, center=(c, c))
    if stretch:
        w = int(round(IMAGE_SIZE * scale * 2 * (1 + rng.uniform(-stretch, stretch))))
        im = im.resize((w, im.height), Image.Resampling.BILINEAR)
        left = (w - IMAGE_SIZE * scale * 2) // 2
        im = im.crop((left, 0, left + IMAGE_SIZE * scale * 2, im.height))
    h = IMAGE_SIZE * scale // 2
    im = im.crop((h, h, h + IMAGE_SIZE * scale, h + IMAGE_SIZE * scale))
    return np.asarray(im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), np.float32) / 255.0


# -- upstream domains -----------------------------------------------------------------------------

def _shape_image(k: int, rng: np.random.Generator) -> np.ndarray:
    gray = draw_shape(SHAPES[k], rng).astype(np.float32)
    return np.clip(np.rint(gray[..., None] * rng.uniform(0.75, 1.0, 3)), 0, 255).astype(np.uint8)  # faint tint


UPPERCASE = tuple("ABDEFGHKMR")


def _glyph_image(k: int, rng: np.random.Generator) -> np.ndarray:
    mask = _glyph_mask(UPPERCASE[k], rng, size=(16, 26), rotate=12, shift=4)
    dark, light = float(rng.uniform(0, 90)), float(rng.uniform(160, 255))
    fg, bg = (dark, light) if rng.random() < 0.5 else (light, dark)
    img = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), bg, np.float32)
    return _finish(_blend(img, (fg,) * 3, mask) * rng.uniform(0.85, 1.0, 3), rng, 0.04)


TEXTURES = ("grating-coarse", "grating-fine", "checkerboard", "plaid", "dot-lattice", "scattered-dots",
            "white-noise", "pink-noise", "brown-noise", "rings")


def _texture_field(name: str, rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] texture of class ``name`` at 64x64 (2x, averaged down later against aliasing)."""
    size = 2 * IMAGE_SIZE
    xx, yy = _grid(size)
    theta = rng.uniform(0, math.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    phase = rng.uniform(0, 2 * math.pi)
    if name == "grating-coarse":
        return 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(1.5, 3.0) * u / size + phase)
    if name == "grating-fine":
        return 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(6.0, 10.0) * u / size + phase)
    if name == "checkerboard":
        p = rng.uniform(10, 20)
        return ((np.floor(u / p + rng.random()) + np.floor(v / p + rng.random())) % 2).astype(np.float32)
    if name == "plaid":
        f = rng.uniform(3, 6) / size
        other = theta + rng.uniform(math.pi / 3, 2 * math.pi / 3)
        u2 = xx * math.cos(other) + yy * math.sin(other)
        return 0.5 + 0.25 * (np.sin(2 * math.pi * f * u + phase) + np.sin(2 * math.pi * f * u2 + rng.uniform(0, 7)))
    if name == "dot-lattice":
        p = rng.uniform(12, 20)
        du = (u / p + rng.random()) % 1 - 0.5
        dv = (v / p + rng.random()) % 1 - 0.5
        return (np.hypot(du, dv) < rng.uniform(0.2, 0.32)).astype(np.float32)
    if name == "scattered-dots":
        field = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(8, 20))):
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2.5, 5)
            field = np.maximum(field, (np.hypot(xx - cx, yy - cy) < r).astype(np.float32))
        return field
    if name == "white-noise":
        return rng.random((size, size)).astype(np.float32)
    if name == "pink-noise":
        return _spectral_noise(rng, 1.0, size)
    if name == "brown-noise":
        return _spectral_noise(rng, 2.0, size)
    if name == "rings":
        cx, cy = rng.uniform(-size / 2, 1.5 * size, 2)
        return 0.5 + 0.5 * np.sin(2 * math.pi * np.hypot(xx - cx, yy - cy) / rng.uniform(8, 18) + phase)
    raise ValueError(name)


def _texture_image(k: int, rng: np.random.Generator) -> np.ndarray:
    field = _texture_field(TEXTURES[k], rng).astype(np.float32)
    lo, hi = _contrasting(rng, 90)
    img = np.asarray(lo, np.float32) + (np.asarray(hi, np.float32) - lo) * field[..., None]
    return _finish(img, rng, 0.03)


def _scatter(rng: np.random.Generator, count: int, radius, margin: float, gap: float = 1.0, tries: int = 400):
    """Up to ``count`` non-overlapping (x, y, r) discs inside the 32x32 frame (pixel units)."""
    placed = []
    for _ in range(tries):
        if len(placed) == count:
            break
        r = float(radius(rng)) if callable(radius) else float(radius)
        x, y = rng.uniform(margin + r, IMAGE_SIZE - margin - r, 2)
        if all(math.hypot(x - px, y - py) >= r + pr + gap for px, py, pr in placed):
            placed.append((float(x), float(y), r))
    return placed


def _count_image(k: int, rng: np.random.Generator) -> np.ndarray:
    count = k + 1
    bg = float(rng.uniform(0, 70))
    im = Image.new("L", (BIG, BIG), int(bg))
    d = ImageDraw.Draw(im)
    for x, y, r in _scatter(rng, count, lambda g: g.uniform(1.8, 3.2), margin=1.0):
        _sprite(d, ("disk", "square")[int(rng.integers(2))], x * SCALE, y * SCALE, r * SCALE,
                float(rng.uniform(0, math.pi)), int(rng.integers(150, 256)))
    return _finish(im, rng, 0.04)


POSITIONS = tuple("%s-%s" % (row, col) for row in ("top", "middle", "bottom") for col in ("left", "centre", "right"))


def _position_image(k: int, rng: np.random.Generator) -> np.ndarray:
    row, col = divmod(k, 3)
    cell = IMAGE_SIZE / 3
    r = float(rng.uniform(2.5, 4.5))
    cx = min(max((col + rng.random()) * cell, r), IMAGE_SIZE - r)
    cy = min(max((row + rng.random()) * cell, r), IMAGE_SIZE - r)
    im = Image.new("L", (BIG, BIG), int(rng.integers(0, 60)))
    _sprite(ImageDraw.Draw(im), ("disk", "square", "triangle")[int(rng.integers(3))], cx * SCALE, cy * SCALE,
            r * SCALE, float(rng.uniform(0, math.pi)), int(rng.integers(150, 256)))
    return _finish(im, rng, 0.05)


@functools.lru_cache(maxsize=1)
def _digit_bank() -> tuple[tuple[np.ndarray, ...], ...]:
    """scikit-learn's 1,797 handwritten 8x8 digits, smoothly upscaled to 32x32, grouped by class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    big = [np.asarray(Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)) for img in d.images]
    return tuple(tuple(b for b, t in zip(big, d.target) if t == k) for k in range(10))


def _affine(img: Image.Image, rng: np.random.Generator, scale: tuple[float, float], rotate: float,
            shear: float, shift: float) -> Image.Image:
    """A random affine warp (scale, rotation in degrees, shear, shift in pixels) about the image centre."""
    s = rng.uniform(*scale)
    a = math.radians(rng.uniform(-rotate, rotate))
    sh = rng.uniform(-shear, shear)
    tx, ty = rng.uniform(-shift, shift, 2)
    fwd = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[1, sh], [0, 1]]) * s
    inv = np.linalg.inv(fwd)
    c = img.width / 2
    off = np.array([c, c]) - inv @ np.array([c + tx, c + ty])
    return img.transform(img.size, Image.Transform.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                         resample=Image.Resampling.BILINEAR)


def _digit_image(k: int, rng: np.random.Generator) -> np.ndarray:
    bank = _digit_bank()[k]
    src = Image.fromarray(bank[int(rng.integers(len(bank)))])
    mask = np.asarray(_affine(src, rng, (0.55, 0.9), 15, 0.25, 4), np.float32) / 255.0
    fg, bg = float(rng.uniform(150, 255)), float(rng.uniform(0, 80))
    if rng.random() < 0.3:  # some dark ink on light paper
        fg, bg = 255 - fg, 255 - bg
    img = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), bg, np.float32)
    return _finish(_blend(img, (fg,) * 3, mask), rng, 0.04)


DIGITS = tuple("0123456789")

UPSTREAM_DOMAINS = (
    _spec("shapes", "upstream", SHAPES, "one grey geometric shape (disk, ring, star, ...) at a random size, place and "
          "rotation; label: the shape", _each(_shape_image)),
    _spec("glyphs", "upstream", UPPERCASE, "one capital letter in a random font, size, place and slant, grey on grey; "
          "label: the letter", _each(_glyph_image)),
    _spec("textures", "upstream", TEXTURES, "a full-frame procedural texture in two random colours (gratings, "
          "checkerboards, dots, noises of different spectra, rings); label: the texture family",
          _each(_texture_image)),
    _spec("counts", "upstream", tuple(str(c) for c in range(1, 9)), "1 to 8 small grey disks and squares on a dark "
          "ground; label: how many", _each(_count_image)),
    _spec("positions", "upstream", POSITIONS, "one small grey sprite on a dark ground; label: the cell of a 3x3 grid "
          "it lies in", _each(_position_image)),
    _spec("digits", "upstream", DIGITS, "a scikit-learn handwritten digit, upscaled with a random affine warp and "
          "contrast; label: the digit", _each(_digit_image)),
)


def _mixture(domains: tuple[TaskSpec, ...]) -> TaskSpec:
    """The union of the narrow domains, labelled by (domain, class): the broad task of the generalists."""
    offsets = np.cumsum([0] + [len(d.classes) for d in domains])
    classes = tuple("%s:%s" % (d.name, c) for d in domains for c in d.classes)

    def render(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.empty((len(y), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for i, d in enumerate(domains):
            at = np.flatnonzero((y >= offsets[i]) & (y < offsets[i + 1]))
            if len(at):
                x[at] = d.draw.render(y[at] - offsets[i], rng)
        return x

    return _spec("mixture", "upstream", classes, "the six upstream domains together; label: (domain, class), %d "
                 "classes" % len(classes), render)


# -- downstream tasks: natural --------------------------------------------------------------------

PHOTO_REGIONS = tuple("%s-%s-%s" % (photo, row, col) for photo in ("china", "flower") for row in ("top", "bottom")
                      for col in ("left", "centre", "right"))


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(Image.fromarray(im) for im in load_sample_images().images)  # china.jpg, flower.jpg


def _photo_patch(k: int, rng: np.random.Generator) -> np.ndarray:
    photo = _photos()[k // 6]
    row, col = divmod(k % 6, 3)
    w, h = photo.size
    side = float(rng.uniform(48, 110))
    cx = (col + rng.random()) * w / 3
    cy = (row + rng.random()) * h / 2
    cx, cy = min(max(cx, side / 2), w - side / 2), min(max(cy, side / 2), h - side / 2)
    patch = photo.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR,
                         box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), reducing_gap=2.0)
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # exposure and white balance; only darker, since brighter would burn the pale sky into a blank patch
    img = np.asarray(patch, np.float32) * rng.uniform(0.7, 1.0) * rng.uniform(0.9, 1.0, 3)
    return _finish(img, rng, 0.03)


OBJECTS = ("apple", "banana", "leaf", "house", "tree", "car", "fish", "mug")


def _draw_object(d: ImageDraw.ImageDraw, name: str, c: float, r: float, rng: np.random.Generator) -> None:
    """Object ``name`` centred at (c, c) with half-size ``r`` on a transparent 4x layer."""
    j = lambda base, a=35: _jitter(base, rng, a) + (255,)  # noqa: E731
    if name == "apple":
        body = j((200, 30, 30)) if rng.random() < 0.7 else j((120, 190, 50))
        d.ellipse((c - r, c - 0.85 * r, c + r, c + r), fill=body)
        d.rectangle((c - 0.07 * r, c - 1.15 * r, c + 0.07 * r, c - 0.7 * r), fill=j((100, 60, 20)))
        d.ellipse((c + 0.05 * r, c - 1.15 * r, c + 0.5 * r, c - 0.85 * r), fill=j((40, 140, 40)))
    elif name == "banana":
        box = (c - r, c - 1.6 * r, c + r, c + 0.4 * r)
        d.arc(box, 25, 155, fill=j((235, 210, 40)), width=int(0.38 * r))
        for t in (25, 155):
            a = math.radians(t)
            d.ellipse((c + r * math.cos(a) - 0.1 * r, c - 0.6 * r + r * math.sin(a) - 0.1 * r,
                       c + r * math.cos(a) + 0.1 * r, c - 0.6 * r + r * math.sin(a) + 0.1 * r), fill=j((90, 70, 20)))
    elif name == "leaf":
        green = j((50, 150, 40), 45)
        d.ellipse((c - r, c - 0.42 * r, c + r, c + 0.42 * r), fill=green)
        d.line((c - 1.3 * r, c, c + 0.9 * r, c), fill=_jitter(np.subtract(green[:3], 40), rng, 10) + (255,),
               width=max(2, int(0.07 * r)))
    elif name == "house":
        d.rectangle((c - 0.75 * r, c - 0.2 * r, c + 0.75 * r, c + r), fill=j((200, 180, 140), 55))
        d.polygon([(c - 0.95 * r, c - 0.2 * r), (c + 0.95 * r, c - 0.2 * r), (c, c - r)], fill=j((150, 40, 30), 40))
        d.rectangle((c - 0.15 * r, c + 0.35 * r, c + 0.15 * r, c + r), fill=j((90, 60, 40)))
        d.rectangle((c + 0.3 * r, c + 0.05 * r, c + 0.6 * r, c + 0.35 * r), fill=j((150, 200, 230)))
    elif name == "tree":
        d.rectangle((c - 0.13 * r, c + 0.1 * r, c + 0.13 * r, c + r), fill=j((110, 70, 30)))
        green = j((40, 130, 40), 40)
        for dx, dy, rr in ((0, -0.35, 0.55), (-0.35, 0.0, 0.42), (0.35, 0.0, 0.42)):
            d.ellipse((c + (dx - rr) * r, c + (dy - rr) * r, c + (dx + rr) * r, c + (dy + rr) * r), fill=green)
    elif name == "car":
        body = _colour(rng, 30, 256) + (255,)
        d.rounded_rectangle((c - r, c - 0.1 * r, c + r, c + 0.45 * r), radius=0.15 * r, fill=body)
        d.polygon([(c - 0.55 * r, c - 0.1 * r), (c - 0.35 * r, c - 0.5 * r), (c + 0.35 * r, c - 0.5 * r),
                   (c + 0.6 * r, c - 0.1 * r)], fill=body)
        d.polygon([(c - 0.42 * r, c - 0.14 * r), (c - 0.28 * r, c - 0.42 * r), (c + 0.3 * r, c - 0.42 * r),
                   (c + 0.46 * r, c - 0.14 * r)], fill=j((140, 180, 210)))
        for wx in (-0.55, 0.55):
            d.ellipse((c + (wx - 0.22) * r, c + 0.23 * r, c + (wx + 0.22) * r, c + 0.67 * r), fill=(25, 25, 25, 255))
    elif name == "fish":
        body = j(((240, 130, 30), (60, 110, 200), (170, 170, 180))[int(rng.integers(3))], 30)
        d.ellipse((c - 0.8 * r, c - 0.45 * r, c + 0.6 * r, c + 0.45 * r), fill=body)
        d.polygon([(c + 0.45 * r, c), (c + r, c - 0.45 * r), (c + r, c + 0.45 * r)], fill=body)
        d.ellipse((c - 0.55 * r, c - 0.18 * r, c - 0.38 * r, c - 0.01 * r), fill=(10, 10, 10, 255))
    elif name == "mug":
        body = _colour(rng, 40, 256) + (255,)
        d.ellipse((c + 0.25 * r, c - 0.45 * r, c + 1.0 * r, c + 0.45 * r), outline=body, width=int(0.16 * r))
        d.rounded_rectangle((c - 0.75 * r, c - 0.75 * r, c + 0.45 * r, c + 0.85 * r), radius=0.1 * r, fill=body)
        d.ellipse((c - 0.75 * r, c - 0.9 * r, c + 0.45 * r, c - 0.6 * r), fill=_jitter(np.multiply(body[:3], 0.6),
                                                                                        rng, 5) + (255,))
    else:
        raise ValueError(name)


OBJECT_SCALE = 2  # objects are drawn at 2x: rotating a 4x layer would double the task's drawing time


def _clutter(rng: np.random.Generator, count: tuple[int, int], scale: int = OBJECT_SCALE) -> Image.Image:
    """A background at ``scale``: a random colour gradient strewn with small random blobs and bars."""
    a, b = np.asarray(_colour(rng), np.float32), np.asarray(_colour(rng), np.float32)
    t = np.linspace(0, 1, IMAGE_SIZE, dtype=np.float32)[:, None, None]
    ground = np.broadcast_to(a + (b - a) * t, (IMAGE_SIZE, IMAGE_SIZE, 3))
    if rng.random() < 0.5:
        ground = ground.transpose(1, 0, 2)
    side = IMAGE_SIZE * scale
    im = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(*count))):
        x, y = rng.uniform(0, side, 2)
        w, h = rng.uniform(2, 7, 2) * scale
        if rng.random() < 0.5:
            d.ellipse((x - w, y - h, x + w, y + h), fill=_colour(rng))
        else:
            d.line((x - w, y - h, x + w, y + h), fill=_colour(rng), width=int(rng.uniform(1, 2.5) * scale))
    return im


def _object_image(k: int, rng: np.random.Generator) -> np.ndarray:
    im = _clutter(rng, (4, 12))
    side = IMAGE_SIZE * OBJECT_SCALE
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    r = float(rng.uniform(0.26, 0.4)) * side
    _draw_object(ImageDraw.Draw(layer), OBJECTS[k], side / 2, r, rng)
    layer = layer.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR,
                         translate=tuple(rng.uniform(-0.12, 0.12, 2) * side))
    if rng.random() < 0.5:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im.paste(layer, (0, 0), layer)
    return _finish(im, rng, 0.03)


def _luminance(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _number_image(k: int, rng: np.random.Generator) -> np.ndarray:
    fg, bg = _contrasting(rng, 120)
    if (_luminance(fg) < _luminance(bg)) == (rng.random() < 0.75):  # mostly light digits on a darker plate
        fg, bg = bg, fg
    bg2 = _jitter(bg, rng, 50)
    t = np.linspace(0, 1, IMAGE_SIZE, dtype=np.float32)[None, :, None]
    img = np.asarray(bg, np.float32) + (np.asarray(bg2, np.float32) - bg) * t
    img = np.broadcast_to(img, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    size = (int(rng.integers(18, 22)), int(rng.integers(24, 30)))
    # neighbouring digits of the house number, cut by the frame (SVHN's distractors)
    text = "%d%d%d" % (rng.integers(10), k, rng.integers(10))
    mask = _glyph_mask(text, rng, size=size, rotate=8, shift=2.5, stretch=0.15)
    return _finish(_blend(img, _jitter(fg, rng, 20), mask), rng, 0.04)


# -- downstream tasks: specialised ------------------------------------------------------------------

CELLS = ("lymphocyte", "neutrophil", "eosinophil", "spindle", "dividing", "macrophage")


def _draw_cell(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, rng: np.random.Generator,
               stain: dict) -> None:
    """One stained cell of ``kind`` on a 4x canvas (coordinates in canvas pixels)."""
    s = SCALE
    a = float(rng.uniform(0, 2 * math.pi))
    cyto, nucleus, granule = stain["cytoplasm"], stain["nucleus"], stain["granule"]
    if kind == "lymphocyte":
        r = rng.uniform(4.5, 7) * s
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=cyto)
        rn = r * rng.uniform(0.72, 0.88)
        d.ellipse((cx - rn, cy - rn, cx + rn, cy + rn), fill=nucleus)
    elif kind in ("neutrophil", "eosinophil"):
        r = rng.uniform(6.5, 9.5) * s
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=cyto)
        if kind == "eosinophil":
            for _ in range(40):
                gx, gy = rng.uniform(-0.8, 0.8, 2) * r
                if gx * gx + gy * gy < (0.8 * r) ** 2:
                    gr = rng.uniform(0.5, 0.9) * s
                    d.ellipse((cx + gx - gr, cy + gy - gr, cx + gx + gr, cy + gy + gr), fill=granule)
        lobes = 2 if kind == "eosinophil" else int(rng.integers(3, 5))
        for i in range(lobes):
            t = a + 2 * math.pi * i / lobes
            lx, ly = cx + 0.38 * r * math.cos(t), cy + 0.38 * r * math.sin(t)
            lr = 0.3 * r
            d.ellipse((lx - lr, ly - lr, lx + lr, ly + lr), fill=nucleus)
    elif kind == "spindle":
        r = rng.uniform(9, 12) * s
        pts = [(cx + r * math.cos(t), cy + 0.28 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24)]
        d.polygon(_rotated(pts, cx, cy, a), fill=cyto)
        pts = [(cx + 0.4 * r * math.cos(t), cy + 0.14 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16)]
        d.polygon(_rotated(pts, cx, cy, a), fill=nucleus)
    elif kind == "dividing":
        r = rng.uniform(4.5, 6) * s
        for sign in (-1, 1):
            px, py = cx + sign * 0.85 * r * math.cos(a), cy + sign * 0.85 * r * math.sin(a)
            d.ellipse((px - r, py - r, px + r, py + r), fill=cyto)
        for sign in (-1, 1):
            px, py = cx + sign * 0.95 * r * math.cos(a), cy + sign * 0.95 * r * math.sin(a)
            d.polygon(_rotated([(px - 0.2 * r, py - 0.6 * r), (px + 0.2 * r, py - 0.6 * r),
                                (px + 0.2 * r, py + 0.6 * r), (px - 0.2 * r, py + 0.6 * r)], px, py, a),
                      fill=tuple(int(v * 0.7) for v in nucleus))  # condensed chromosomes stain darker
    elif kind == "macrophage":
        r = rng.uniform(8.5, 12.5) * s
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=cyto)
        pale = tuple(int(0.5 * v + 0.5 * w) for v, w in zip(cyto, stain["ground"]))
        for _ in range(int(rng.integers(5, 10))):
            vx, vy = rng.uniform(-0.65, 0.65, 2) * r
            vr = rng.uniform(1, 2.2) * s
            d.ellipse((cx + vx - vr, cy + vy - vr, cx + vx + vr, cy + vy + vr), fill=pale)  # vacuoles
        nx, ny = cx + 0.5 * r * math.cos(a), cy + 0.5 * r * math.sin(a)
        d.ellipse((nx - 0.4 * r, ny - 0.3 * r, nx + 0.4 * r, ny + 0.3 * r), fill=nucleus)
    else:
        raise ValueError(kind)


def _cell_image(k: int, rng: np.random.Generator) -> np.ndarray:
    ground = _jitter((235, 205, 220), rng, 20)
    # staining varies from slide to slide
    stain = {"ground": ground, "cytoplasm": _jitter((215, 140, 185), rng, 45),
             "nucleus": _jitter((85, 40, 125), rng, 45), "granule": _jitter((220, 80, 60), rng, 35)}
    tex = _spectral_noise(rng, 2.0)
    img = np.asarray(ground, np.float32) * (0.92 + 0.16 * tex[..., None])
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((BIG, BIG), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):  # neighbours at the edge of the field, of any type
        t = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.55, 0.7) * BIG
        _draw_cell(d, CELLS[int(rng.integers(len(CELLS)))], BIG / 2 + dist * math.cos(t),
                   BIG / 2 + dist * math.sin(t), rng, stain)
    cx, cy = BIG / 2 + rng.uniform(-5, 5, 2) * SCALE
    _draw_cell(d, CELLS[k], cx, cy, rng, stain)
    return _finish(im, rng, 0.04)


TERRAINS = ("cropland", "forest", "pasture", "highway", "residential", "industrial", "river", "lake")


TERRAIN_RES = 2 * IMAGE_SIZE  # drawn at 2x and averaged down: thin roads and field edges stay smooth


def _land(rng: np.random.Generator) -> np.ndarray:
    """Muted green-brown land of low-frequency variation, float (2x) H x W x 3."""
    base = np.asarray(_jitter((110, 130, 70), rng, 30), np.float32)
    return base * (0.8 + 0.4 * _spectral_noise(rng, 2.5, TERRAIN_RES)[..., None])


def _textured(colour, rng: np.random.Generator, beta: float, lo: float, span: float) -> np.ndarray:
    return np.asarray(colour, np.float32) * (lo + span * _spectral_noise(rng, beta, TERRAIN_RES)[..., None])


def _buildings(ground: np.ndarray, u: np.ndarray, v: np.ndarray, pitch: float, size: tuple[float, float],
               palette, rng: np.random.Generator) -> np.ndarray:
    """Rectangular roofs on a rotated lattice (``u``, ``v``), one random palette colour per lot."""
    fu, fv = u / pitch + rng.random(), v / pitch + rng.random()
    lot = (np.floor(fu).astype(np.int64) * 7919 + np.floor(fv).astype(np.int64)) % 64  # lots share 64 colours
    colours = np.asarray(palette, np.float32)[rng.integers(len(palette), size=64)] + rng.uniform(-20, 20, (64, 3))
    half_w, half_h = size
    inside = (np.abs(fu % 1 - 0.5) < half_w) & (np.abs(fv % 1 - 0.5) < half_h)
    return np.where(inside[..., None], colours[lot], ground)


def _terrain_image(k: int, rng: np.random.Generator) -> np.ndarray:
    name = TERRAINS[k]
    res = TERRAIN_RES
    xx, yy = _grid(res)
    theta = rng.uniform(0, math.pi)
    # coordinates along (u) and across (v) a random direction, 0 at the image centre
    u = (xx - res / 2) * math.cos(theta) + (yy - res / 2) * math.sin(theta)
    v = -(xx - res / 2) * math.sin(theta) + (yy - res / 2) * math.cos(theta)
    if name == "cropland":
        palette = np.stack([np.asarray(_jitter(c, rng, 25), np.float32) for c in
                            ((90, 140, 50), (160, 140, 80), (200, 180, 90), (120, 100, 60))])
        edges = np.cumsum(rng.uniform(4, 12, 30)) - 80
        colours = palette[rng.integers(len(palette), size=len(edges) + 1)]
        img = colours[np.searchsorted(edges, u)] * (0.9 + 0.1 * _spectral_noise(rng, 1.0, res)[..., None])
    elif name == "forest":
        img = _textured(_jitter((30, 75, 35), rng, 15), rng, 1.2, 0.6, 0.8)
    elif name == "pasture":
        img = _textured(_jitter((120, 170, 70), rng, 25), rng, 2.5, 0.9, 0.2)
    elif name == "highway":
        across = v - rng.uniform(-12, 12)  # signed distance from the road's axis
        img = _blend(_land(rng), _jitter((120, 120, 120), rng, 20), np.clip(rng.uniform(4, 7) - np.abs(across), 0, 1))
        img = _blend(img, (215, 215, 205), np.clip(1.0 - np.abs(across), 0, 1) * 0.8)  # the centre line
    elif name == "residential":
        img = _buildings(_land(rng), u, v, rng.uniform(10, 14), (0.28, 0.22), ((170, 70, 60), (120, 110, 110)), rng)
    elif name == "industrial":
        yard = np.full((res, res, 3), _jitter((150, 150, 145), rng, 20), np.float32)
        img = _buildings(yard, u, v, rng.uniform(20, 28), (0.42, rng.uniform(0.2, 0.42)),
                         ((205, 205, 210), (175, 180, 185), (120, 130, 150)), rng)
    elif name == "river":
        amp, period = rng.uniform(4, 12), rng.uniform(28, 60)
        course = v - rng.uniform(-10, 10) - amp * np.sin(2 * math.pi * u / period + rng.uniform(0, 7))
        img = _blend(_land(rng), _jitter((40, 80, 140), rng, 25), np.clip(rng.uniform(3, 7) - np.abs(course), 0, 1))
    elif name == "lake":
        water = _textured(_jitter((35, 70, 130), rng, 25), rng, 1.5, 0.9, 0.2)
        shore = _spectral_noise(rng, 3.0, res) + 0.6 * v / res
        img = np.where((shore > np.quantile(shore, rng.uniform(0.55, 0.85)))[..., None], _land(rng), water)
    else:
        raise ValueError(name)
    return _finish(img * rng.uniform(0.85, 1.15), rng, 0.03)  # illumination and sensor gain


LOWERCASE = tuple("abdeghnrty")


def _lowercase_image(k: int, rng: np.random.Generator) -> np.ndarray:
    paper = np.asarray(_jitter((225, 215, 190), rng, 30), np.float32)
    img = paper * (0.85 + 0.2 * _spectral_noise(rng, 1.8)[..., None])
    if rng.random() < 0.5:  # a ruled line, as on a form
        y = int(rng.integers(20, 30))
        img[y] = _jitter((120, 140, 200), rng, 30)
    ink = _jitter(((20, 30, 120), (30, 30, 30), (140, 20, 20), (20, 90, 40))[int(rng.integers(4))], rng, 30)
    mask = _glyph_mask(LOWERCASE[k], rng, size=(18, 30), rotate=20, shift=5)
    return _finish(_blend(img, ink, mask), rng, 0.04)


# -- downstream tasks: structured -------------------------------------------------------------------

def _floor(rng: np.random.Generator) -> Image.Image:
    """A grey CLEVR-like floor: lighter far away (top), at 4x."""
    near, far = rng.uniform(57, 63), rng.uniform(107, 113)
    t = np.linspace(1, 0, IMAGE_SIZE, dtype=np.float32)[:, None]
    ground = np.broadcast_to(near + (far - near) * t, (IMAGE_SIZE, IMAGE_SIZE))
    rgb = np.clip(ground[..., None] * rng.uniform(0.92, 1.08, 3), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((BIG, BIG), Image.Resampling.BILINEAR)


def _vivid(rng: np.random.Generator) -> tuple[int, int, int]:
    """A bright, saturated colour of random hue (CLEVR's palette of rubber and metal objects)."""
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.75, 1.0))
    return tuple(int(255 * c) for c in rgb)


def _clevr_count_image(k: int, rng: np.random.Generator) -> np.ndarray:
    count = k + 3
    im = _floor(rng)
    d = ImageDraw.Draw(im)
    placed = _scatter(rng, count, lambda g: g.uniform(2.0, 2.8), margin=0.5, gap=1.0, tries=2000)
    for x, y, r in sorted(placed, key=lambda p: p[1]):  # far to near, so near objects occlude
        r *= 0.85 + 0.3 * y / IMAGE_SIZE  # perspective: nearer (lower) objects look larger
        x, y, r = x * SCALE, y * SCALE, r * SCALE
        colour = _vivid(rng)
        lit = tuple(min(255, c + 50) for c in colour)  # faces turned to the light
        d.ellipse((x - r, y + 0.6 * r, x + 1.4 * r, y + 1.2 * r), fill=(30, 30, 30))  # shadow
        kind = int(rng.integers(3))
        if kind == 0:  # sphere with a highlight
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            d.ellipse((x - 0.5 * r, y - 0.6 * r, x - 0.1 * r, y - 0.2 * r), fill=tuple(min(255, c + 20) for c in lit))
        elif kind == 1:  # cube: front face and a lighter top
            d.rectangle((x - r, y - 0.6 * r, x + r, y + r), fill=colour)
            d.polygon([(x - r, y - 0.6 * r), (x - 0.5 * r, y - r), (x + 1.3 * r, y - r),
                       (x + r, y - 0.6 * r)], fill=lit)
        else:  # cylinder
            d.rectangle((x - r, y - 0.7 * r, x + r, y + 0.8 * r), fill=colour)
            d.ellipse((x - r, y + 0.5 * r, x + r, y + r), fill=colour)
            d.ellipse((x - r, y - 0.95 * r, x + r, y - 0.45 * r), fill=lit)
    return _finish(im, rng, 0.03)


LOCATION_BINS = 12
DSPRITES = ("square", "ellipse", "heart")


def _location_image(k: int, rng: np.random.Generator) -> np.ndarray:
    r = float(rng.uniform(2.5, 5.0))
    lo, hi = r, IMAGE_SIZE - r
    x = lo + (k + rng.random()) * (hi - lo) / LOCATION_BINS
    y = float(rng.uniform(r, IMAGE_SIZE - r))
    im = Image.new("L", (BIG, BIG), int(rng.integers(0, 40)))
    _sprite(ImageDraw.Draw(im), DSPRITES[int(rng.integers(3))], x * SCALE, y * SCALE, r * SCALE,
            float(rng.uniform(0, 2 * math.pi)), int(rng.integers(170, 256)))
    return _finish(im, rng, 0.05)


ORIENTATION_BINS = 8


def _orientation_image(k: int, rng: np.random.Generator) -> np.ndarray:
    angle = 2 * math.pi * (k + rng.random()) / ORIENTATION_BINS  # the direction the sprite points to
    r = float(rng.uniform(9, 12)) * SCALE
    cx, cy = (BIG / 2 + float(v) for v in rng.uniform(-2.5, 2.5, 2) * SCALE)
    im = Image.new("L", (BIG, BIG), int(rng.integers(0, 40)))
    d = ImageDraw.Draw(im)
    fill = int(rng.integers(170, 256))
    kind = int(rng.integers(3))
    if kind == 0:  # arrow
        pts = [(cx + r, cy), (cx + 0.2 * r, cy - 0.6 * r), (cx + 0.2 * r, cy - 0.22 * r), (cx - r, cy - 0.22 * r),
               (cx - r, cy + 0.22 * r), (cx + 0.2 * r, cy + 0.22 * r), (cx + 0.2 * r, cy + 0.6 * r)]
        d.polygon(_rotated(pts, cx, cy, angle), fill=fill)
    elif kind == 1:  # dSprites' heart, pointing with its tip
        d.polygon(_heart(cx, cy, 0.8 * r, angle), fill=fill)
    else:  # a narrow isosceles triangle
        d.polygon(_rotated([(cx + r, cy), (cx - 0.8 * r, cy - 0.5 * r), (cx - 0.8 * r, cy + 0.5 * r)], cx, cy, angle),
                  fill=fill)
    return _finish(im, rng, 0.05)


DISTANCES = ("near", "medium", "far", "very-far")
DISTANCE_EDGES = (4.0, 8.0, 16.0, 32.0, 64.0)  # metres, as bins of the nearest vehicle's distance


def _distance_image(k: int, rng: np.random.Generator) -> np.ndarray:
    horizon = float(rng.uniform(10, 15))
    sky, grass = _jitter((150, 190, 230), rng, 25), _jitter((80, 130, 60), rng, 25)
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    _, yy = _grid()
    img[:] = np.where((yy < horizon)[..., None], np.asarray(sky, np.float32), np.asarray(grass, np.float32))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((BIG, BIG), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(im)
    h, vx = horizon * SCALE, float(rng.uniform(12, 20)) * SCALE
    lane = float(rng.uniform(0.3, 0.6)) * BIG * 2.2
    d.polygon([(vx - 1, h), (vx + 1, h), (vx + lane, BIG), (vx - lane, BIG)], fill=_jitter((90, 90, 95), rng, 15))
    focal = 40.0 * SCALE  # pinhole camera: a 1.8 m wide car at distance z is focal * 1.8 / z pixels wide
    lo, hi = DISTANCE_EDGES[k], DISTANCE_EDGES[k + 1]
    nearest = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    others = [float(nearest * rng.uniform(1.3, 4.0)) for _ in range(int(rng.integers(0, 3)))]
    for z in sorted([nearest] + others, reverse=True):  # far to near
        scale = focal / z
        base = h + 1.5 * scale  # the camera is 1.5 m above the road
        cx = vx + rng.uniform(-1.6, 1.6) * scale
        w, body_h = 0.9 * scale, 1.4 * scale
        colour = _colour(rng, 20, 256)
        d.rectangle((cx - w, base - body_h, cx + w, base - 0.2 * scale), fill=colour)
        d.rectangle((cx - 0.8 * w, base - body_h, cx + 0.8 * w, base - 0.6 * body_h), fill=(40, 50, 60))
        d.rectangle((cx - w, base - 0.25 * scale, cx - 0.6 * w, base), fill=(20, 20, 20))
        d.rectangle((cx + 0.6 * w, base - 0.25 * scale, cx + w, base), fill=(20, 20, 20))
    return _finish(im, rng, 0.03)


DOWNSTREAM_TASKS = (
    _spec("photos", "natural", PHOTO_REGIONS, "a random patch of one of scikit-learn's two sample photos (a pagoda by "
          "a lake, a dahlia) with colour jitter; label: the photo and which of its 2x3 regions the patch comes from",
          _each(_photo_patch)),
    _spec("objects", "natural", OBJECTS, "one coloured everyday object (apple, banana, car, ...) in front of "
          "cluttered blobs and bars; label: the object", _each(_object_image)),
    _spec("housenumbers", "natural", DIGITS, "a printed digit in a random font and colours, between parts of its "
          "neighbours in a house number (SVHN-like); label: the centre digit", _each(_number_image)),
    _spec("cells", "specialised", CELLS, "a stained blood or tissue cell under a microscope, neighbours at the "
          "edges; label: the cell type", _each(_cell_image)),
    _spec("terrain", "specialised", TERRAINS, "a satellite-like view of land (fields, forest, roads, houses, water) "
          "(EuroSAT-like); label: the land use", _each(_terrain_image)),
    _spec("lowercase", "specialised", LOWERCASE, "one small letter in a random font, coloured ink on textured paper; "
          "label: the letter", _each(_lowercase_image)),
    _spec("count", "structured", tuple(str(c) for c in range(3, 9)), "3 to 8 coloured spheres, cubes and cylinders "
          "on a grey floor (CLEVR-count-like); label: how many", _each(_clevr_count_image)),
    _spec("location", "structured", tuple("x%d" % b for b in range(LOCATION_BINS)), "one white square, ellipse or "
          "heart on black (dSprites-like); label: its horizontal position in %d bins" % LOCATION_BINS,
          _each(_location_image)),
    _spec("orientation", "structured", tuple("%d-%ddeg" % (b * 45, b * 45 + 45) for b in range(ORIENTATION_BINS)),
          "one white arrow, heart or wedge on black (dSprites-orientation-like); label: the direction it points to, "
          "in %d bins" % ORIENTATION_BINS, _each(_orientation_image)),
    _spec("distance", "structured", DISTANCES, "a road scene with one to three cars (KITTI-distance-like); label: how "
          "far the nearest car is (4-8, 8-16, 16-32, 32-64 m)", _each(_distance_image)),
)

UPSTREAM: dict[str, TaskSpec] = {t.name: t for t in UPSTREAM_DOMAINS + (_mixture(UPSTREAM_DOMAINS),)}
DOWNSTREAM: dict[str, TaskSpec] = {t.name: t for t in DOWNSTREAM_TASKS}
