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
"""

from __future__ import annotations

import copy
import math
import statistics
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


@dataclass
class Split:
    """Raw samples of one reader (a numpy array or a list) and their class ids."""

    x: object
    y: np.ndarray

    def take(self, idx):
        return self.x[idx] if isinstance(self.x, np.ndarray) else [self.x[i] for i in idx]

    def __len__(self):
        return len(self.y)


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


def _features(loaded, split: Split) -> torch.Tensor:
    """Frozen pre-logits features of a split, in eval mode."""
    loaded.module.eval()
    out = [torch.from_numpy(loaded.extract(loaded.preprocess(split.take(idx)))[0])
           for idx in _batches(len(split), EVAL_BATCH)]
    return torch.cat(out).flatten(1).float()


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
        for idx in _batches(len(split), EVAL_BATCH):
            logits = net(_to_device(loaded.preprocess(split.take(idx)), loaded))
            correct += int((logits.argmax(1).cpu().numpy() == split.y[idx]).sum())
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
    target = torch.from_numpy(train.y.astype(np.int64))
    size = min(batch_size, len(train))
    order, at = rng.permutation(len(train)), 0
    net.train()
    for step in range(steps):
        if at + size > len(train):
            order, at = rng.permutation(len(train)), 0
        idx = order[at:at + size]
        at += size
        logits = net(_to_device(loaded.preprocess(train.take(idx)), loaded))
        loss = F.cross_entropy(logits, target[idx].to(logits.device))
        if not torch.isfinite(loss):
            raise FloatingPointError("loss diverged at step %d with learning rate %g" % (step, lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step:
            on_step(step + 1)
    return net.eval()


def run(loaded, train: Split, validation: Split, test: Split, num_classes: int, params: dict, progress=None) -> dict:
    """The whole protocol; returns test_accuracy, validation_accuracy and the settings tried."""
    require_trainable(loaded)
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        if len(split) and (split.y.min() < 0 or split.y.max() >= num_classes):
            raise ValueError("%s labels fall outside the %d classes of the train reader" % (name, num_classes))
    rates = learning_rates(params)
    total_steps = params["repeats"] * len(rates) * params["steps"]
    initial = copy.deepcopy(loaded.module.state_dict())
    runs = []
    started = time.perf_counter()
    for r in range(params["repeats"]):
        seed = params["seed"] + r
        loaded.module.load_state_dict(initial)
        head = fit_head(_features(loaded, train), train.y, num_classes, seed).to(loaded.tensor_device or loaded.device)
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
                     "runs": runs},
    }
