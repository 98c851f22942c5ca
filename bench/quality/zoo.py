"""The search-quality benchmark's model repository: experts and generalists, pre-trained here.

Seed 002 (§4.2) shows that how well a model-search strategy does depends on the pool:
task-agnostic ranking (by upstream accuracy, the signal seed 003 finds to predict
transfer among models trained on the same data) cannot spot *experts*, models
pre-trained on a narrow domain that match some downstream tasks far better than the
rest, while task-aware proxies struggle in pools of different architectures trained on
one broad data set (its ImNetAccuracies pool). This module builds a repository holding
both kinds, from the upstream tasks of :mod:`bench.quality.datasets`:

* experts: two architectures on each of the six narrow domains. One of the two is
  always ``resnet10t``, so the six ResNet experts form a pool of one architecture
  trained on different data, like seed 002's Expert pool of ResNet-50s; the other
  varies, so experts also differ in family;
* generalists: eight architectures on the ``mixture`` of all domains, four of them also
  trained about three times longer, so that upstream accuracy varies within the same
  data, as in the ImNetAccuracies pool.

Every model is a real timm model created with :func:`gpu_daemon.models.create_timm`, so
the shift worker loads it through its timm loader from the ``checkpoint`` (a state
dict); it is trained on exactly the batches the worker will feed it (its preprocessing
and normalisation at 32x32). Its upstream accuracy is measured on a held-out split of its
own upstream task. The manifest ``zoo.json`` holds one entry per model: the keyword
arguments of ``shift.register_model`` plus ``role`` ("expert" or "generalist"), which
callers strip before registering.

Builds are deterministic for a seed and profile, and idempotent: a build stamp records a
hash of the configuration, the library versions and a sample of the upstream data, and a
second build into the same directory returns the manifest without training.

    python -m bench.quality.zoo OUT_DIR [--profile full|small] [--seed N] [--threads N]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shift_cli.zoo import accuracy, cli, existing_build, model_options, save_checkpoint, write_json

from .datasets import IMAGE_SIZE, UPSTREAM, TaskSpec, font_fingerprint, splits

ZOO_VERSION = 1  # bump when training changes, so old builds are rebuilt
GENERALIST_TASK = "mixture"
# Domains whose classes survive a horizontal mirror; a mirrored glyph, digit or position is
# another class (or none), so those are never flipped.
MIRROR_INVARIANT = frozenset({"shapes", "textures", "counts"})
VIT_KWARGS = (("img_size", IMAGE_SIZE), ("patch_size", 8))  # 16 patches of 8x8 at 32x32


@dataclass(frozen=True)
class BenchModel:
    """One zoo entry: a timm architecture, its upstream task and how long it is pre-trained."""

    upstream: str  # a key of datasets.UPSTREAM
    name: str  # unique within the upstream task; the model id is "<upstream>.<name>"
    locator: str  # timm model name
    architecture: str  # family, for pools and reports
    steps: int
    lr: float = 2e-3
    model_kwargs: tuple = ()  # (key, value) pairs for timm.create_model

    @property
    def model_id(self) -> str:
        return "%s.%s" % (self.upstream, self.name)

    @property
    def role(self) -> str:
        return "generalist" if self.upstream == GENERALIST_TASK else "expert"


@dataclass(frozen=True)
class Profile:
    train_samples: int  # per narrow domain
    mixture_train_samples: int
    test_samples: int  # held out, per upstream task
    batch_size: int
    models: tuple[BenchModel, ...]


# Step counts for ``full`` come from measured times per step on 2 CPU cores (batch 64):
# resnet10t and convnext_atto about 0.2 s, vit_tiny 0.34 s, ghostnet_050 0.13 s, regnetx_002,
# mobilevit_xxs, edgenext_xx_small and lcnet_050 0.1 s, mobilenetv3_small_050 0.12 s.
# Experts get about the same time each (some 20 s), so cheaper families take more steps.
EXPERTS = (
    # (domain, name, timm locator, family, steps, learning rate) of the second expert of each
    # domain; the first is always a resnet10t. MobileNetV3 and LCNet at width 0.5 stay near
    # chance on a narrow domain in this budget, so they appear among the generalists only.
    ("shapes", "mobilevit-xxs", "mobilevit_xxs", "MobileViT", 190, 4e-3),
    ("glyphs", "ghostnet-050", "ghostnet_050", "GhostNet", 130, 1e-2),
    ("textures", "regnetx-002", "regnetx_002", "RegNet", 200, 1e-2),
    ("counts", "edgenext-xx-small", "edgenext_xx_small", "EdgeNeXt", 200, 4e-3),
    ("positions", "convnext-atto", "convnext_atto", "ConvNeXt", 100, 4e-3),
    ("digits", "regnetx-002", "regnetx_002", "RegNet", 200, 2e-2),
)


def _experts(resnet_steps: int) -> tuple[BenchModel, ...]:
    models = []
    for domain, name, locator, family, steps, lr in EXPERTS:
        models.append(BenchModel(domain, "resnet10t", "resnet10t", "ResNet", resnet_steps, 3e-3))
        models.append(BenchModel(domain, name, locator, family, steps, lr))
    return tuple(models)


def _generalists(steps: int, long_steps: int) -> tuple[BenchModel, ...]:
    g = GENERALIST_TASK
    return (
        BenchModel(g, "resnet10t", "resnet10t", "ResNet", steps, 3e-3),
        BenchModel(g, "convnext-atto", "convnext_atto", "ConvNeXt", steps, 4e-3),
        BenchModel(g, "regnetx-002", "regnetx_002", "RegNet", steps, 1e-2),
        BenchModel(g, "mobilenetv3-small-050", "mobilenetv3_small_050", "MobileNetV3", steps, 1e-2),
        BenchModel(g, "vit-tiny-p8", "vit_tiny_patch16_224", "ViT", steps, 1e-3, VIT_KWARGS),
        BenchModel(g, "lcnet-050", "lcnet_050", "LCNet", steps, 1e-2),
        BenchModel(g, "ghostnet-050", "ghostnet_050", "GhostNet", steps, 1e-2),
        BenchModel(g, "mobilevit-xxs", "mobilevit_xxs", "MobileViT", steps, 4e-3),
        # the same data and architecture trained longer: upstream accuracy varies within a family
        BenchModel(g, "resnet10t-long", "resnet10t", "ResNet", long_steps, 3e-3),
        BenchModel(g, "convnext-atto-long", "convnext_atto", "ConvNeXt", long_steps, 4e-3),
        BenchModel(g, "regnetx-002-long", "regnetx_002", "RegNet", long_steps, 1e-2),
        BenchModel(g, "mobilenetv3-small-050-long", "mobilenetv3_small_050", "MobileNetV3", long_steps, 1e-2),
    )


PROFILES = {
    # 24 models, 9 families: 12 experts on six domains, 12 generalists (about 10 min on 2 CPU cores)
    "full": Profile(train_samples=3000, mixture_train_samples=9000, test_samples=600, batch_size=64,
                    models=_experts(100) + _generalists(120, 300)),
    # 6 models, 2 families, two domains and the mixture: for the test suite (about 40 s)
    "small": Profile(train_samples=800, mixture_train_samples=1600, test_samples=300, batch_size=32, models=(
        BenchModel("shapes", "resnet10t", "resnet10t", "ResNet", 50, 3e-3),
        BenchModel("shapes", "regnetx-002", "regnetx_002", "RegNet", 100, 1e-2),
        BenchModel("digits", "resnet10t", "resnet10t", "ResNet", 50, 3e-3),
        BenchModel("digits", "regnetx-002", "regnetx_002", "RegNet", 100, 1e-2),
        BenchModel(GENERALIST_TASK, "resnet10t", "resnet10t", "ResNet", 60, 3e-3),
        BenchModel(GENERALIST_TASK, "regnetx-002", "regnetx_002", "RegNet", 100, 1e-2),
    )),
}


# -- data -------------------------------------------------------------------------------------

def upstream_splits(task: str, profile: str = "full", seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The train and held-out test split a build of ``profile`` uses for upstream ``task``."""
    spec = PROFILES[profile]
    train = spec.mixture_train_samples if task == GENERALIST_TASK else spec.train_samples
    # zoo seeds are offset from the benchmark's downstream seeds only for readability; the tasks differ anyway
    return splits(UPSTREAM[task], {"train": train, "test": spec.test_samples}, seed=seed * 7919 + 3)


def mirror_invariant_classes(task: TaskSpec) -> np.ndarray:
    """Per class: may an image of it be mirrored left-right during training?"""
    if task.name == GENERALIST_TASK:
        return np.array([c.split(":", 1)[0] in MIRROR_INVARIANT for c in task.classes])
    return np.full(len(task.classes), task.name in MIRROR_INVARIANT)


def data_fingerprint() -> str:
    """Identifies what the upstream generators draw: a build is stale when they change."""
    h = hashlib.sha256(font_fingerprint().encode())
    for name in sorted(UPSTREAM):
        x, y = UPSTREAM[name].generate(4, seed=0)
        h.update(name.encode() + x.tobytes() + y.tobytes())
    return h.hexdigest()[:16]


# -- training ---------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print("quality zoo: " + msg, file=sys.stderr, flush=True)


def _pretrain(model, spec: BenchModel, x_train, y_train, flippable, batch_size: int, seed: int):
    """Pre-train one model (AdamW, one-cycle schedule) on preprocessed tensors; returns it in eval mode.

    Like shift_cli.zoo's training loop, except that only mirror-invariant classes are
    flipped: that loop mirrors every image, which relabels glyphs, digits and positions.
    """
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps, pct_start=0.15)
    order = np.random.default_rng(seed)
    flippable = torch.from_numpy(flippable)
    model.train()
    n = len(y_train)
    perm, at = order.permutation(n), 0
    for _ in range(spec.steps):
        if at + batch_size > n:
            perm, at = order.permutation(n), 0
        idx = torch.from_numpy(perm[at:at + batch_size])
        at += batch_size
        xb, yb = x_train[idx], y_train[idx]
        flip = (torch.rand(len(idx)) < 0.5) & flippable[yb]
        xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def config_hash(profile: str, seed: int) -> str:
    """Identifies a build: profile contents, seed, code version, library versions and upstream data."""
    from importlib.metadata import version

    blob = json.dumps({"profile": profile, "spec": asdict(PROFILES[profile]), "seed": seed, "version": ZOO_VERSION,
                       "size": IMAGE_SIZE, "mirror": sorted(MIRROR_INVARIANT), "data": data_fingerprint(),
                       "timm": version("timm"), "torch": version("torch").split("+")[0]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_zoo(out_dir: Path, seed: int = 0, profile: str = "full") -> list[dict]:
    """Build (or reuse) the benchmark zoo in ``out_dir``; returns the manifest written to ``out_dir/zoo.json``."""
    out_dir, digest, cached = existing_build(out_dir, profile, seed, PROFILES, config_hash)
    if cached is not None:
        return cached

    import torch

    from gpu_daemon import preprocess as prep
    from gpu_daemon.models import create_timm

    spec = PROFILES[profile]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = {}
    for task in dict.fromkeys(m.upstream for m in spec.models):  # in order of first use
        t0 = time.perf_counter()
        data[task] = upstream_splits(task, profile, seed)
        _log("drew %s: %d + %d images in %.1fs" % (task, len(data[task]["train"][1]), len(data[task]["test"][1]),
                                                   time.perf_counter() - t0))
    drawn = time.perf_counter() - started
    entries, timings, batches = [], {}, {}
    for i, m in enumerate(spec.models):
        t0 = time.perf_counter()
        task = UPSTREAM[m.upstream]
        (x_train, y_train), (x_test, y_test) = data[m.upstream]["train"], data[m.upstream]["test"]
        torch.manual_seed(seed * 1000 + i)
        options = model_options(m, len(task.classes))
        model = create_timm(m.locator, options, pretrained=False, model_id=m.model_id)
        # train on exactly what the worker will feed the model: its preprocessing and normalisation
        cfg = model.pretrained_cfg
        mean, std = tuple(cfg.get("mean", prep.IMAGENET_MEAN)), tuple(cfg.get("std", prep.IMAGENET_STD))
        key = (m.upstream, mean, std)
        if key not in batches:
            batches = {k: v for k, v in batches.items() if k[0] == m.upstream}  # keep one task's tensors at a time
            batches[key] = (prep.to_batch(x_train, IMAGE_SIZE, mean, std), prep.to_batch(x_test, IMAGE_SIZE, mean, std))
        xtr, xte = batches[key]
        model = _pretrain(model, m, xtr, torch.from_numpy(y_train), mirror_invariant_classes(task), spec.batch_size,
                          seed * 1000 + i)
        acc = accuracy(model, xte, torch.from_numpy(y_test))
        path, feature_dim = save_checkpoint(model, out_dir / ("%s.pth" % m.model_id), xte[:1])
        entries.append(dict(
            model_id=m.model_id, source="timm", locator=m.locator, checkpoint=str(path), input="Vision",
            upstream_dataset=m.upstream, upstream_accuracy=round(acc, 4),
            num_params=int(sum(p.numel() for p in model.parameters())), feature_dim=int(feature_dim),
            input_size=IMAGE_SIZE, architecture=m.architecture, options=options, role=m.role))
        timings[m.model_id] = round(time.perf_counter() - t0, 2)
        _log("trained %s (%d/%d): upstream accuracy %.3f (chance %.3f) in %.1fs"
             % (m.model_id, i + 1, len(spec.models), acc, 1 / len(task.classes), timings[m.model_id]))
    total = time.perf_counter() - started
    write_json(out_dir / "zoo.json", entries)
    write_json(out_dir / "zoo.build.json", {
        "config_hash": digest, "profile": profile, "seed": seed, "seconds": round(total, 1),
        "seconds_drawing": round(drawn, 1), "seconds_per_model": timings, "threads": torch.get_num_threads(),
        "upstream_tasks": {t: {"classes": list(UPSTREAM[t].classes), "description": UPSTREAM[t].description}
                           for t in data}})
    _log("built %d models in %.1fs into %s" % (len(entries), total, out_dir))
    return entries


def main(argv: list[str] | None = None) -> int:
    return cli(build_zoo, PROFILES, "full", "python -m bench.quality.zoo", __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
