"""A small, real model zoo built offline, for the demo and the tests.

No model hub is reachable where shift is demonstrated and tested, so this module makes
its own repository: it draws an upstream image-classification task (grayscale geometric
shapes), briefly pre-trains several small timm architectures on it on the CPU, measures
each one's upstream accuracy on a held-out split (the task-agnostic signal of seed 003),
and writes the weights and a manifest ``zoo.json`` whose entries are the keyword
arguments of ``shift.register_model``. Models differ in family, size and training
length, so their quality differs the way a real repository's does.

Builds are deterministic for a given seed and profile, and idempotent: a second build
into the same directory returns the manifest without training.

    python -m shift_cli.zoo OUT_DIR [--profile demo|test] [--seed N] [--threads N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SHAPES = ("disk", "ring", "square", "frame", "triangle", "cross", "line", "star", "hexagon", "crescent")
IMAGE_SIZE = 32
UPSTREAM_DATASET = "shapes10"
ZOO_VERSION = 1  # bump when drawing or training changes, so old builds are rebuilt


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: a timm architecture and how long it is pre-trained."""

    name: str
    locator: str
    architecture: str
    steps: int
    lr: float = 2e-3
    model_kwargs: tuple = ()  # (key, value) pairs for timm.create_model


@dataclass(frozen=True)
class Profile:
    train_samples: int
    test_samples: int
    batch_size: int
    models: tuple[ZooModel, ...]


PROFILES = {
    # about 2 min on 2 idle CPU cores; five families, a spread of sizes and training lengths
    # (upstream accuracies from about 0.3 to 0.97 with seed 0)
    "demo": Profile(train_samples=4000, test_samples=1000, batch_size=64, models=(
        ZooModel("mobilenetv3-small-050", "mobilenetv3_small_050", "MobileNetV3", steps=150, lr=1e-2),
        ZooModel("regnetx-002", "regnetx_002", "RegNet", steps=150, lr=1e-2),
        ZooModel("resnet10t", "resnet10t", "ResNet", steps=160),
        ZooModel("convnext-atto", "convnext_atto", "ConvNeXt", steps=110, lr=4e-3),
        ZooModel("vit-tiny-p8", "vit_tiny_patch16_224", "ViT", steps=90, lr=1e-3,
                 model_kwargs=(("img_size", IMAGE_SIZE), ("patch_size", 8))),
        ZooModel("resnet14t", "resnet14t", "ResNet", steps=40),
    )),
    # about 20 s: enough for the test suite to load, score and compare real models
    "test": Profile(train_samples=1200, test_samples=400, batch_size=32, models=(
        ZooModel("resnet10t", "resnet10t", "ResNet", steps=40, lr=3e-3),
        ZooModel("convnext-atto", "convnext_atto", "ConvNeXt", steps=50, lr=4e-3),
        ZooModel("regnetx-002", "regnetx_002", "RegNet", steps=60, lr=1e-2),
    )),
}


# -- the upstream task ------------------------------------------------------------------------

def polygon(cx, cy, radius, angle, corners, inner=None):
    """Vertices of a regular polygon (or a star when ``inner`` radius is given)."""
    pts = []
    steps = corners * (2 if inner else 1)
    for k in range(steps):
        r = inner if inner and k % 2 else radius
        a = angle + 2 * math.pi * k / steps
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


def _bar(cx, cy, length, width, angle):
    """Vertices of a rotated rectangle centred at (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))]


def draw_shape(shape: str, rng: np.random.Generator, size: int = IMAGE_SIZE, noise: float = 0.06) -> np.ndarray:
    """One grayscale ``size`` x ``size`` uint8 image of ``shape`` at a random size, place, rotation and contrast."""
    from PIL import Image, ImageDraw

    scale = 4  # draw large and shrink: antialiased edges
    big = size * scale
    bg = int(rng.integers(0, 90))
    fg = int(rng.integers(150, 256))
    im = Image.new("L", (big, big), bg)
    d = ImageDraw.Draw(im)
    r = float(rng.uniform(0.22, 0.4)) * big
    cx, cy = (float(rng.uniform(r + 2, big - r - 2)) for _ in range(2))
    t = float(rng.uniform(0, 2 * math.pi))
    w = max(scale, int(r * rng.uniform(0.22, 0.32)))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "disk":
        d.ellipse(box, fill=fg)
    elif shape == "ring":
        d.ellipse(box, outline=fg, width=w)
    elif shape == "square":
        d.polygon(polygon(cx, cy, r, t, 4), fill=fg)
    elif shape == "frame":
        d.polygon(polygon(cx, cy, r, t, 4), outline=fg, width=w)
    elif shape == "triangle":
        d.polygon(polygon(cx, cy, r, t, 3), fill=fg)
    elif shape == "cross":
        d.polygon(_bar(cx, cy, 2 * r, 0.45 * r, t), fill=fg)
        d.polygon(_bar(cx, cy, 2 * r, 0.45 * r, t + math.pi / 2), fill=fg)
    elif shape == "line":
        d.polygon(_bar(cx, cy, 2 * r, 0.3 * r, t), fill=fg)
    elif shape == "star":
        d.polygon(polygon(cx, cy, r, t, 5, inner=0.45 * r), fill=fg)
    elif shape == "hexagon":
        d.polygon(polygon(cx, cy, r, t, 6), fill=fg)
    elif shape == "crescent":
        d.ellipse(box, fill=fg)
        ox, oy = cx + 0.55 * r * math.cos(t), cy + 0.55 * r * math.sin(t)
        d.ellipse((ox - 0.85 * r, oy - 0.85 * r, ox + 0.85 * r, oy + 0.85 * r), fill=bg)
    else:
        raise ValueError("unknown shape %r; known shapes: %s" % (shape, ", ".join(SHAPES)))
    img = np.asarray(im.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    img += rng.normal(0.0, noise * 255, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def shapes_dataset(n: int, seed: int, size: int = IMAGE_SIZE, classes: tuple[str, ...] = SHAPES,
                   noise: float = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """``n`` balanced, shuffled shape images: x uint8 [n, size, size], y int64 class index into ``classes``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(classes)
    rng.shuffle(y)
    x = np.stack([draw_shape(classes[k], rng, size, noise) for k in y]) if n else np.zeros((0, size, size), np.uint8)
    return x, y.astype(np.int64)


def upstream_task(profile: str = "demo", seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The upstream task a zoo build trains on: x_train, y_train, x_test (held out), y_test."""
    spec = PROFILES[profile]
    x_train, y_train = shapes_dataset(spec.train_samples, seed=seed * 7919 + 1)
    x_test, y_test = shapes_dataset(spec.test_samples, seed=seed * 7919 + 2)
    return x_train, y_train, x_test, y_test


# -- training ---------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print("zoo: " + msg, file=sys.stderr, flush=True)


def model_options(spec: ZooModel, num_classes: int) -> dict:
    opts = {"num_classes": num_classes, "pretrained": False}
    if spec.model_kwargs:
        opts["model_kwargs"] = dict(spec.model_kwargs)
    return opts


def _train(model, spec: ZooModel, x_train, y_train, batch_size: int, seed: int):
    """Pre-train one model on the upstream task (preprocessed tensors); returns it in eval mode."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps, pct_start=0.15)
    order = np.random.default_rng(seed)
    model.train()
    n = len(y_train)
    perm, at = order.permutation(n), 0
    for _ in range(spec.steps):
        if at + batch_size > n:
            perm, at = order.permutation(n), 0
        idx = torch.from_numpy(perm[at:at + batch_size])
        at += batch_size
        xb = x_train[idx]
        flip = torch.rand(len(idx)) < 0.5  # every shape class is closed under mirroring
        xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
        loss = F.cross_entropy(model(xb), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def accuracy(model, x, y, batch_size: int = 256) -> float:
    """Top-1 accuracy of a classifier on a preprocessed tensor."""
    import torch

    correct = 0
    with torch.inference_mode():
        for s in range(0, len(y), batch_size):
            correct += int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
    return correct / max(len(y), 1)


def config_hash(profile: str, seed: int) -> str:
    """Identifies a build: profile contents, seed, code version and library versions."""
    from importlib.metadata import version

    spec = asdict(PROFILES[profile])
    blob = json.dumps({"profile": profile, "spec": spec, "seed": seed, "version": ZOO_VERSION, "shapes": SHAPES,
                       "size": IMAGE_SIZE, "timm": version("timm"), "torch": version("torch").split("+")[0]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_build(out_dir: Path, digest: str) -> list[dict] | None:
    """The manifest of a finished build with this config hash in ``out_dir``, or None."""
    manifest, stamp = out_dir / "zoo.json", out_dir / "zoo.build.json"
    try:
        entries = json.loads(manifest.read_text())
        meta = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("config_hash") != digest or not all(Path(e["checkpoint"]).is_file() for e in entries):
        return None
    return entries


def existing_build(out_dir, profile: str, seed: int, profiles: dict, config_hash) -> tuple:
    """(out_dir resolved, the build's config hash, its manifest if a finished build has that hash, else None)."""
    if profile not in profiles:
        raise ValueError("unknown zoo profile %r; profiles: %s" % (profile, ", ".join(profiles)))
    out_dir = Path(out_dir).resolve()
    digest = config_hash(profile, seed)
    cached = cached_build(out_dir, digest)
    if cached is not None:
        _log("%s is up to date (profile %s, seed %d)" % (out_dir / "zoo.json", profile, seed))
    return out_dir, digest, cached


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a half-written manifest never looks like a finished build


def build_zoo(out_dir: Path, seed: int = 0, profile: str = "demo") -> list[dict]:
    """Build (or reuse) the zoo in ``out_dir``; returns the manifest written to ``out_dir/zoo.json``.

    Each entry holds exactly the keyword arguments of ``shift.register_model``. A build
    stamp ``zoo.build.json`` records the config hash, so a later call with the same seed
    and profile returns the manifest without training.
    """
    out_dir, digest, cached = existing_build(out_dir, profile, seed, PROFILES, config_hash)
    if cached is not None:
        return cached

    import torch

    from gpu_daemon import preprocess as prep
    from gpu_daemon.models import create_timm

    spec = PROFILES[profile]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    x_train, y_train, x_test, y_test = upstream_task(profile, seed)
    _log("drew %d + %d %s images in %.1fs" % (len(y_train), len(y_test), UPSTREAM_DATASET,
                                             time.perf_counter() - started))
    entries, timings = [], {}
    for i, m in enumerate(spec.models):
        t0 = time.perf_counter()
        _log("training %s (%d/%d) ..." % (m.locator, i + 1, len(spec.models)))
        torch.manual_seed(seed * 1000 + i)
        options = model_options(m, len(SHAPES))
        model = create_timm(m.locator, options, pretrained=False, model_id=m.name)
        # train on exactly what the worker will feed the model: its preprocessing and normalisation
        cfg = model.pretrained_cfg
        mean, std = tuple(cfg.get("mean", prep.IMAGENET_MEAN)), tuple(cfg.get("std", prep.IMAGENET_STD))
        xtr = prep.to_batch(x_train, IMAGE_SIZE, mean, std)
        xte = prep.to_batch(x_test, IMAGE_SIZE, mean, std)
        model = _train(model, m, xtr, torch.from_numpy(y_train), spec.batch_size, seed * 1000 + i)
        acc = accuracy(model, xte, torch.from_numpy(y_test))
        path, feature_dim = save_checkpoint(model, out_dir / ("%s.pth" % m.name), xte[:1])
        entries.append(dict(
            model_id="%s.%s" % (UPSTREAM_DATASET, m.name), source="timm", locator=m.locator, checkpoint=str(path),
            input="Vision", upstream_dataset=UPSTREAM_DATASET, upstream_accuracy=round(acc, 4),
            num_params=int(sum(p.numel() for p in model.parameters())), feature_dim=int(feature_dim),
            input_size=IMAGE_SIZE, architecture=m.architecture, options=options))
        timings[m.name] = round(time.perf_counter() - t0, 2)
        _log("trained %s (%d/%d): upstream accuracy %.2f in %.1fs"
             % (m.locator, i + 1, len(spec.models), acc, timings[m.name]))
    total = time.perf_counter() - started
    write_json(out_dir / "zoo.json", entries)
    write_json(out_dir / "zoo.build.json", {
        "config_hash": digest, "profile": profile, "seed": seed, "seconds": round(total, 1),
        "seconds_per_model": timings, "threads": torch.get_num_threads(), "classes": list(SHAPES)})
    _log("built %d models in %.1fs into %s" % (len(entries), total, out_dir))
    return entries


def save_checkpoint(model, path: Path, sample) -> tuple[Path, int]:
    """Write the weights atomically (a reader never sees half a file); also return the feature size."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    with torch.inference_mode():
        return path, int(model.forward_head(model.forward_features(sample), pre_logits=True).shape[1])


def cli(build, profiles, default: str, prog: str, description: str, argv: list[str] | None = None) -> int:
    """The command line of a zoo builder: `prog OUT_DIR [--profile P] [--seed S] [--threads T]`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("out_dir", type=Path, help="directory for the weights and zoo.json")
    parser.add_argument("--profile", choices=sorted(profiles), default=default)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    entries = build(args.out_dir, seed=args.seed, profile=args.profile)
    print(json.dumps(entries, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(build_zoo, PROFILES, "demo", "python -m shift_cli.zoo", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
