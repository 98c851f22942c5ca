"""The fine-tuning protocol of seed 002 §4.3, run by a worker for a `finetune` task.

Per run: (i) a new linear layer (softmax classifier) is trained on the frozen
features of the whole training reader; (ii) the obtained network is fine-tuned
as a whole, once per learning rate of the grid, with SGD over a fixed number of
steps; (iii) the network with the highest validation accuracy is kept and its
test accuracy is the run's result. Over `repeats` runs (seeds seed, seed+1, ...)
the median test accuracy is the result, as seed 002 takes the median of 5.

Departures, for a CPU and small readers: the grid is lr, lr/10, ... (seed 002
names two rates without more), the schedule is cosine decay with no warm-up
(its Appendix found warm-up unstable over few steps), and the head of step (i)
is fitted to convergence with L-BFGS instead of SGD, which is deterministic and
takes well under a second on VTAB-1K sizes.

Memory: a reader is read block by block (:class:`StreamedSplit`); the worker's
``shift.worker_memory_mb`` bounds the samples held (a shuffle buffer for SGD, one
block for evaluation) and the head's frozen features. A reader that fits is held and
the protocol is exactly the in-memory one. The floor is one mini-batch's blocks.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEAD_L2 = 1e-4
HEAD_ITERATIONS = 100
MOMENTUM = 0.9
EVAL_BATCH = 256


def _take(x, idx):
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _bytes(x) -> int:
    """Memory of raw samples: array bytes, or the bytes of each encoded image or text."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        return x.nbytes
    # an array that owns its data counts it in getsizeof; a view does not
    return sum(sys.getsizeof(v) + (v.nbytes if isinstance(v, np.ndarray) and v.base is not None else 0) for v in x)


@dataclass
class Split:
    """Raw samples of one reader held in memory (a numpy array or a list) and their class ids."""

    x: object
    y: np.ndarray

    def take(self, idx):
        return _take(self.x, idx)

    def __len__(self):
        return len(self.y)

    def probe(self):
        return self.take([0])

    def check_labels(self, num_classes: int, name: str) -> None:
        _check_labels(self.y, num_classes, name)

    def ordered(self, size, sample_limit=None):
        """(samples, labels) batches in order; with `sample_limit`, of that many samples spread evenly."""
        keep = np.arange(len(self))
        if sample_limit is not None and sample_limit < len(self):
            keep = np.unique(np.linspace(0, len(self) - 1, sample_limit).astype(np.int64))
        for idx in _batches(len(keep), size):
            yield self.take(keep[idx]), self.y[keep[idx]]

    def shuffled(self, size, rng):
        """Endless mini-batches: a permutation of all samples at a time (an epoch), the rest of one dropped."""
        order, at = rng.permutation(len(self)), 0
        while True:
            if at + size > len(self):
                order, at = rng.permutation(len(self)), 0
            idx = order[at:at + size]
            at += size
            yield self.take(idx), self.y[idx]

    def memory(self):
        return {"streamed": False}


def _check_labels(y, num_classes, name):
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError("%s labels fall outside the %d classes of the train reader" % (name, num_classes))


class StreamedSplit:
    """A reader's samples read block by block, so that at most `memory_bytes` of them are held.

    `read(blocks)` yields ``(block, samples, int64 class ids)`` for blocks in increasing order
    (a new pass over the reader each call); `ranges` are the blocks' sample ranges. When the
    whole reader fits, it is read once and held, and the protocol is the in-memory one
    exactly. Otherwise SGD draws its mini-batches from a shuffle buffer: the blocks in a
    random order, as many at a time as fit, the samples of those permuted. This departs from
    seed 002 §4.3's uniform draws over the whole reader in which samples meet in a mini-batch
    (those of the same buffer); an epoch still draws every sample once, but for the remainder
    of each buffer that fills no mini-batch.
    """

    def __init__(self, read, ranges, memory_bytes):
        self.read, self.ranges, self.memory_bytes = read, list(ranges), memory_bytes
        self.n = sum(stop - start for start, stop in self.ranges)
        self._labels = None  # (num_classes, name) to check every block against
        self._held = None
        self._group = 0  # blocks a shuffle buffer holds, once SGD has drawn from it
        reading = self.read([0])
        first = next(reading)
        reading.close()  # a SQL reader's cursor goes now, not when collected
        self._probe = _take(first[1], [0])
        # the largest block's size, from the first block's bytes a sample
        self.block_bytes = _bytes(first[1]) * max(stop - start for start, stop in self.ranges) // len(first[2])
        # the buffer and the block read into it are held at once
        self.buffer_blocks = max(0, memory_bytes // max(1, self.block_bytes) - 1)
        if self.buffer_blocks >= len(self.ranges):
            self._held = self._hold(range(len(self.ranges)))
        del first

    def __len__(self):
        return self.n

    def probe(self):
        return self._probe

    def check_labels(self, num_classes: int, name: str) -> None:
        self._labels = (num_classes, name)
        if self._held is not None:
            self._held.check_labels(num_classes, name)

    def _blocks(self, blocks):
        for _, xs, ys in self.read(sorted(blocks)):
            if self._labels:
                _check_labels(ys, *self._labels)
            yield xs, ys

    def _hold(self, blocks) -> Split:
        """The samples of some blocks in one buffer, filled block by block (never two copies of it)."""
        total = sum(self.ranges[b][1] - self.ranges[b][0] for b in blocks)
        xs, ys, at = None, np.empty(total, dtype=np.int64), 0
        for bx, by in self._blocks(blocks):
            if isinstance(bx, np.ndarray) and bx.dtype != object:
                if xs is None:
                    xs = np.empty((total,) + bx.shape[1:], dtype=bx.dtype)
                xs[at:at + len(by)] = bx
            else:
                xs = [] if xs is None else xs
                xs.extend(bx)
            ys[at:at + len(by)] = by
            at += len(by)
        return Split(xs, ys)

    def ordered(self, size, sample_limit=None):
        """Batches in the reader's order, one block held at a time; with `sample_limit`, only whole blocks
        chosen evenly over the reader up to that many samples (the head's features must fit too)."""
        if self._held is not None:
            yield from self._held.ordered(size, sample_limit)
            return
        blocks = range(len(self.ranges))
        if sample_limit is not None and sample_limit < self.n:
            size_of = self.ranges[0][1] - self.ranges[0][0]
            keep = max(1, sample_limit // size_of)
            blocks = sorted({int(b) for b in np.linspace(0, len(self.ranges) - 1, keep)})
        for xs, ys in self._blocks(blocks):
            for idx in _batches(len(ys), size):
                yield _take(xs, idx), ys[idx]

    def shuffled(self, size, rng):
        if self._held is not None:
            yield from self._held.shuffled(size, rng)
            return
        per_block = self.ranges[0][1] - self.ranges[0][0]
        # at least a mini-batch of blocks: only the one group with the short tail block may give none
        group = self._group = max(self.buffer_blocks, -(-size // per_block))
        while True:
            order = rng.permutation(len(self.ranges))
            for g in range(0, len(order), group):
                buffer = None  # the last buffer goes before the next is read
                buffer = self._hold(order[g:g + group])
                perm = rng.permutation(len(buffer))
                for at in range(0, len(perm) - size + 1, size):
                    idx = perm[at:at + size]
                    yield buffer.take(idx), buffer.y[idx]

    def memory(self):
        per_block = self.ranges[0][1] - self.ranges[0][0]
        return {"streamed": self._held is None, "limit_mb": self.memory_bytes / 2 ** 20,
                "buffer_samples": self.n if self._held is not None else self._group * per_block}


def reader_split(reader: dict, memory_bytes: int, conn=None, relabel=None) -> StreamedSplit:
    """A registered reader as a :class:`StreamedSplit` (``conn``: what readers.iter_blocks takes; ``relabel``
    maps its class ids to the train reader's)."""
    from . import readers

    def read(blocks):
        for block, x, y in readers.iter_blocks(reader, blocks, conn=conn):
            y = np.asarray(y, dtype=np.int64)
            yield block, x, (y if relabel is None else relabel(y))

    ranges = [readers.block_range(reader, b) for b in range(readers.reader_blocks(reader))]
    return StreamedSplit(read, ranges, memory_bytes)


class Classifier(nn.Module):
    """The pre-trained network up to its features, and a new linear head."""

    def __init__(self, loaded, head: nn.Linear):
        super().__init__()
        self.body = loaded.module  # registered, so its parameters train with the head
        self.head = head
        self._features = loaded.extractor

    def forward(self, batch):
        feats, _ = self._features(batch)
        return self.head(feats.flatten(1))


def learning_rates(params) -> list[float]:
    return [params["lr"] / 10 ** i for i in range(params["lr_grid"])]


def require_trainable(loaded):
    if not isinstance(loaded.module, nn.Module):
        raise ValueError("model %s (%s) is not a PyTorch module, so it cannot be fine-tuned; fine-tuning supports "
                         "the timm, torchvision, hf and torchscript sources" % (loaded.model_id, loaded.source))


def _batches(n, size):
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


def _features(loaded, split, memory_bytes=None) -> tuple[torch.Tensor, np.ndarray]:
    """Frozen pre-logits features of a split and their labels, in eval mode.

    Under `memory_bytes` the features of as many samples as fit are kept (whole blocks spread
    over the reader), since a feature row may take more memory than its sample."""
    loaded.module.eval()
    limit = None
    if memory_bytes is not None:
        dim = int(np.prod(loaded.extract(loaded.preprocess(split.probe()))[0].shape[1:]))
        limit = max(1, memory_bytes // (4 * dim))
    feats, labels = [], []
    for x, y in split.ordered(EVAL_BATCH, sample_limit=limit):
        feats.append(torch.from_numpy(loaded.extract(loaded.preprocess(x))[0]).flatten(1).float())
        labels.append(y)
    return torch.cat(feats), np.concatenate(labels)


def fit_head(feats: torch.Tensor, y: np.ndarray, num_classes: int, seed: int) -> nn.Linear:
    """Step (i): a softmax classifier on frozen features, L2-regularised, fitted with L-BFGS."""
    torch.manual_seed(seed)
    head = nn.Linear(feats.shape[1], num_classes)
    target = torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=HEAD_ITERATIONS, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(feats), target) + HEAD_L2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def accuracy(net: nn.Module, loaded, split: Split) -> float:
    if not len(split):
        return 0.0
    net.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in split.ordered(EVAL_BATCH):
            logits = net(_to_device(loaded.preprocess(x), loaded))
            correct += int((logits.argmax(1).cpu().numpy() == y).sum())
    return correct / len(split)


def _to_device(batch, loaded):
    where = loaded.tensor_device or loaded.device
    if isinstance(batch, torch.Tensor):
        return batch.to(where, torch.float32)
    return {k: v.to(where) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def fine_tune(net: nn.Module, loaded, train: Split, lr: float, steps: int, batch_size: int, seed: int,
              on_step=None) -> nn.Module:
    """Step (ii): SGD with momentum on the whole network, cosine-decayed learning rate."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    batches = train.shuffled(min(batch_size, len(train)), rng)
    net.train()
    for step in range(steps):
        x, y = next(batches)
        logits = net(_to_device(loaded.preprocess(x), loaded))
        loss = F.cross_entropy(logits, torch.from_numpy(np.asarray(y, dtype=np.int64)).to(logits.device))
        if not torch.isfinite(loss):
            raise FloatingPointError("loss diverged at step %d with learning rate %g" % (step, lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step:
            on_step(step + 1)
    return net.eval()


def run(loaded, train, validation, test, num_classes: int, params: dict, progress=None, memory_bytes=None) -> dict:
    """The whole protocol; returns test_accuracy, validation_accuracy and the settings tried.

    The splits are :class:`Split` (held) or :class:`StreamedSplit` (read block by block); with
    `memory_bytes`, the head's frozen features are kept within half of it."""
    require_trainable(loaded)
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        split.check_labels(num_classes, name)
    rates = learning_rates(params)
    total_steps = params["repeats"] * len(rates) * params["steps"]
    initial = copy.deepcopy(loaded.module.state_dict())
    runs = []
    started = time.perf_counter()
    for r in range(params["repeats"]):
        seed = params["seed"] + r
        loaded.module.load_state_dict(initial)
        feats, labels = _features(loaded, train, memory_bytes and memory_bytes // 2)
        head = fit_head(feats, labels, num_classes, seed).to(loaded.tensor_device or loaded.device)
        del feats
        net = Classifier(loaded, head)
        head_validation = accuracy(net, loaded, validation)
        start = copy.deepcopy(net.state_dict())
        tried = []
        for k, lr in enumerate(rates):
            net.load_state_dict(start)
            done_before = (r * len(rates) + k) * params["steps"]
            try:
                fine_tune(net, loaded, train, lr, params["steps"], params["batch_size"], seed,
                          on_step=progress and (lambda s, d=done_before: progress((d + s) / total_steps)))
            except FloatingPointError as e:
                tried.append({"lr": lr, "validation_accuracy": 0.0, "test_accuracy": 0.0, "diverged": str(e)})
                continue
            tried.append({"lr": lr, "validation_accuracy": accuracy(net, loaded, validation),
                          "test_accuracy": accuracy(net, loaded, test)})
        # ties go to the first (largest) rate, so the choice does not depend on float noise in the order
        best = max(tried, key=lambda t: t["validation_accuracy"])
        runs.append({"seed": seed, "head_validation_accuracy": head_validation, "chosen_lr": best["lr"],
                     "validation_accuracy": best["validation_accuracy"], "test_accuracy": best["test_accuracy"],
                     "tried": tried})
    return {
        "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "validation_accuracy": statistics.median(r["validation_accuracy"] for r in runs),
        "seconds": time.perf_counter() - started,
        "settings": {"protocol": "seed 002 §4.3", "learning_rates": rates, "momentum": MOMENTUM,
                     "head": {"solver": "lbfgs", "l2": HEAD_L2, "iterations": HEAD_ITERATIONS},
                     "samples": {"train": len(train), "validation": len(validation), "test": len(test)},
                     "memory": dict(train.memory(), head_samples=len(labels)),
                     "runs": runs},
    }
