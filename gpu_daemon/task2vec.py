"""Task2Vec embeddings of a reader, run by a worker for a `datasim` task (seed 000 §3.3-§3.4).

Achille et al., Task2Vec (ICCV 2019): a fixed probe network gets a new linear
classifier head fitted on the reader's features; the embedding is the diagonal
of the Fisher information of the probe's weights on the task, averaged over the
weights of each filter, one value per filter (8,512 for a ResNet-34 probe).

Two estimates of the Fisher, as the paper and its reference code have:

- montecarlo: F = E_x E_{y ~ p_w(y|x)} [(d log p_w(y|x) / dw)^2], the labels sampled
  from the model's predictive distribution, the squared gradient taken per sample
  (the reference code squares the gradient of a batch mean, which underestimates F
  by mixing samples; per-sample squares are the definition);
- variational: the robust Fisher of the paper (§3 "Robust Fisher computation"):
  a posterior N(w, diag(sigma^2)) per filter under a prior N(0, lambda^2) per layer,
  fitted by minimising the cross-entropy of the noisy network plus beta times the
  KL term; the embedding is 1 / sigma^2 per filter.

The reader is streamed block by block twice or more (features for the head, then
the Fisher passes), never held whole; only the probe's pre-logits features of at
most max_samples samples are kept. Departure: the head is fitted with L-BFGS to
convergence (gpu_daemon.finetune.fit_head), deterministic where the reference code's
10 epochs of Adam depend on the batch order; the objective is the same.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .finetune import fit_head
from .models import last_linear

VARIATIONAL_BETA = 1e-7       # weight of the KL term, the reference code's default
VARIATIONAL_LR = 1e-2         # Adam, for the log-variances (the reference code's)
HEAD_LR = 5e-4                # Adam, for the head during the variational fit (the reference code's)
VARIANCE_SCALING = 0.05       # initial sigma^2 = 0.05 * the variance of the filter's weights (reference code)
PER_SAMPLE_CHUNK = 16         # per-sample gradients computed this many at a time

Blocks = Callable[[], Iterator[tuple[object, np.ndarray]]]  # a fresh stream of (xs, class ids) per call


class ProbeError(ValueError):
    """The probe or the reader cannot make a Task2Vec embedding; nothing is stored."""


def weight_layers(module: nn.Module, skip_layers: int) -> list[tuple[str, nn.Module]]:
    """The probe's filters: its convolution and linear layers in registration order, less the source
    classifier (the task's own head replaces it) and the first `skip_layers`."""
    head = last_linear(module)
    layers = [(n, m) for n, m in module.named_modules()
              if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and n != head]
    if skip_layers >= len(layers):
        raise ProbeError("skip_layers is %d but the probe has only %d convolution and linear layers"
                         % (skip_layers, len(layers)))
    return layers[skip_layers:]


def filter_means(values: torch.Tensor) -> np.ndarray:
    """Per-filter means of a weight-shaped tensor: one value per output channel."""
    return values.detach().reshape(values.shape[0], -1).mean(dim=1).double().cpu().numpy()


class Probe(nn.Module):
    """The probe's body up to its pre-logits features, and the task's head."""

    def __init__(self, loaded, head: nn.Linear):
        super().__init__()
        self.body = loaded.module
        self.head = head
        self._features = loaded.extractor

    def forward(self, x):
        feats, _ = self._features(x)
        return self.head(feats.flatten(1))


def require_probe(loaded):
    if not isinstance(loaded.module, nn.Module):
        raise ProbeError("probe %s (%s) is not a PyTorch module; a Task2Vec probe is a timm, torchvision or "
                         "torchscript model" % (loaded.model_id, loaded.source))


def _inputs(loaded, xs, reader_id):
    try:
        return loaded.preprocess(xs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ProbeError("the samples of reader %s are not inputs probe %s reads (%s): %s"
                         % (reader_id, loaded.model_id, loaded.modality, str(e).splitlines()[0][:200])) from None


def batches(blocks: Blocks, batch_size: int) -> Iterator[tuple[object, np.ndarray]]:
    """Mini-batches of raw samples over a stream of blocks, in the reader's order."""
    for xs, ys in blocks():
        for start in range(0, len(ys), batch_size):
            stop = min(len(ys), start + batch_size)
            yield (xs[start:stop] if isinstance(xs, np.ndarray) else xs[start:stop]), np.asarray(ys[start:stop])


def features(loaded, blocks: Blocks, batch_size: int, reader_id: str) -> tuple[torch.Tensor, np.ndarray]:
    """Pre-logits features and class ids of the samples the stream gives (the head's training data)."""
    feats, labels = [], []
    with torch.no_grad():
        for xs, ys in batches(blocks, batch_size):
            f, _ = loaded.extractor(_inputs(loaded, xs, reader_id))
            feats.append(f.flatten(1).float().cpu())
            labels.append(ys.astype(np.int64))
    return torch.cat(feats), np.concatenate(labels)


def sample_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """y ~ p_w(y|x): one label per row from the softmax of the logits."""
    probs = F.softmax(logits.detach().float(), dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).view(-1).to(logits.device)


def squared_gradients(net: nn.Module, weights: dict[str, nn.Parameter], x: torch.Tensor,
                      y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sum over the samples of the squared per-sample gradients of -log p(y_i|x_i) w.r.t. `weights`.

    Per-sample gradients come from torch.func (vmap of grad) where the probe allows it, else
    from one backward pass per sample: the same numbers, more slowly.
    """
    try:
        return _squared_gradients_vmap(net, weights, x, y)
    except (RuntimeError, NotImplementedError, ValueError):
        return _squared_gradients_loop(net, weights, x, y)


def _squared_gradients_vmap(net, weights, x, y):
    from torch.func import functional_call, grad, vmap

    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in weights}
    fixed.update(dict(net.named_buffers()))

    def loss(w, xi, yi):
        out = functional_call(net, {**fixed, **w}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    w = {n: p.detach() for n, p in weights.items()}
    sums = {n: torch.zeros_like(p) for n, p in w.items()}
    for start in range(0, len(y), PER_SAMPLE_CHUNK):
        g = vmap(grad(loss), in_dims=(None, 0, 0))(w, x[start:start + PER_SAMPLE_CHUNK],
                                                    y[start:start + PER_SAMPLE_CHUNK])
        for n in sums:
            sums[n] += g[n].square().sum(dim=0)
    return sums


def _squared_gradients_loop(net, weights, x, y):
    sums = {n: torch.zeros_like(p) for n, p in weights.items()}
    params = list(weights.values())
    for i in range(len(y)):
        loss = F.cross_entropy(net(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for n, g in zip(weights, grads):
            if g is not None:
                sums[n] += g.square()
    return sums


def monte_carlo_fisher(net: Probe, loaded, layers, blocks: Blocks, settings: dict, reader_id: str,
                       progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-filter Monte-Carlo Fisher, and per filter the mean Fisher of its layer (its `scale`)."""
    weights = {"body." + n + ".weight": m.weight for n, m in layers}
    generator = torch.Generator().manual_seed(settings["seed"])
    sums = {n: torch.zeros_like(p) for n, p in weights.items()}
    count = 0
    total = settings["epochs"] * settings["_samples"]
    for _epoch in range(settings["epochs"]):
        for xs, _ys in batches(blocks, settings["batch_size"]):
            x = _inputs(loaded, xs, reader_id)
            with torch.no_grad():
                y = sample_labels(net(x), generator)
            for n, s in squared_gradients(net, weights, x, y).items():
                sums[n] += s
            count += len(y)
            if progress:
                progress(0.2 + 0.8 * count / total)
    per_filter = [filter_means(sums[n] / count) for n in weights]
    scale = [np.full(len(f), f.mean()) for f in per_filter]
    return np.concatenate(per_filter), np.concatenate(scale)


class _NoisyLayer:
    """Gaussian noise on a layer's weights, sigma^2 per filter, by the local reparametrisation trick
    (Kingma et al. 2015), as the paper's variational Fisher does: a forward hook adds the noise of
    the weights to the layer's output."""

    def __init__(self, name, module, generator):
        self.name, self.module, self.generator = name, module, generator
        w = module.weight.detach()
        per_filter = w.reshape(w.shape[0], -1).var(dim=1, unbiased=True) if w[0].numel() > 1 else w.square().view(-1)
        self.logvar0 = nn.Parameter((per_filter * VARIANCE_SCALING + 1e-8).log())
        self.loglambda2 = nn.Parameter((w.square().mean() + 1e-8).log())
        self.handle = module.register_forward_hook(self.hook)

    def variance(self):
        shape = (-1,) + (1,) * (self.module.weight.dim() - 1)
        return self.logvar0.exp().view(shape).expand_as(self.module.weight)

    def hook(self, module, inputs, output):
        x = inputs[0]
        var = self.variance()
        if isinstance(module, nn.Linear):
            out_var = F.linear(x.square() + 1e-2, var)
        else:
            if module.padding_mode != "zeros":
                raise ProbeError("layer %s pads by %s; the variational Fisher supports zero padding"
                                 % (self.name, module.padding_mode))
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[module.weight.dim() - 2]
            out_var = conv(x.square() + 1e-2, var, None, module.stride, module.padding, module.dilation,
                           module.groups)
        if out_var.shape != output.shape:
            raise ProbeError("layer %s changes its input before its convolution, so the variational Fisher "
                             "cannot add noise to it; use method => 'montecarlo' or skip_layers" % self.name)
        noise = torch.randn(output.shape, generator=self.generator, device=output.device, dtype=output.dtype)
        return output + out_var.clamp_min(0).sqrt() * noise

    def kl(self):
        """KL(N(w, sigma^2) || N(0, lambda^2)) of the layer's weights, up to constants of the paper's form."""
        w, var, lam2 = self.module.weight, self.variance(), self.loglambda2.exp()
        k = w.numel()
        return ((w.square().sum() + var.sum()) / lam2 + k * self.loglambda2 - var.log().sum() - k)


def variational_fisher(net: Probe, loaded, layers, blocks: Blocks, settings: dict, reader_id: str,
                       progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-filter 1 / sigma^2 of the fitted posterior, and the layer's prior precision 1 / lambda^2."""
    where = loaded.tensor_device or loaded.device
    generator = torch.Generator(device=where).manual_seed(settings["seed"])
    noisy = [_NoisyLayer(n, m, generator) for n, m in layers]
    try:
        frozen = [p for p in net.body.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        variational = [v for layer in noisy for v in (layer.logvar0, layer.loglambda2)]
        opt = torch.optim.Adam([{"params": variational}, {"params": net.head.parameters(), "lr": HEAD_LR}],
                               lr=VARIATIONAL_LR, betas=(0.9, 0.999))
        count, total = 0, settings["epochs"] * settings["_samples"]
        for _epoch in range(settings["epochs"]):
            for xs, ys in batches(blocks, settings["batch_size"]):
                x = _inputs(loaded, xs, reader_id)
                target = torch.from_numpy(ys.astype(np.int64)).to(where)
                loss = F.cross_entropy(net(x), target) + VARIATIONAL_BETA * sum(layer.kl() for layer in noisy)
                if not torch.isfinite(loss):
                    raise FloatingPointError("the variational Fisher's loss diverged")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                count += len(ys)
                if progress:
                    progress(0.2 + 0.8 * count / total)
        fisher = [np.exp(-layer.logvar0.detach().double().cpu().numpy()) for layer in noisy]
        scale = [np.full(len(f), math.exp(-float(layer.loglambda2.detach()))) for f, layer in zip(fisher, noisy)]
        for p in frozen:
            p.requires_grad_(True)
    finally:
        for layer in noisy:
            layer.handle.remove()
    return np.concatenate(fisher), np.concatenate(scale)


METHODS = {"montecarlo": monte_carlo_fisher, "variational": variational_fisher}


def embed(loaded, blocks: Blocks, num_classes: int, settings: dict, reader_id: str, progress=None) -> dict:
    """The Task2Vec embedding of the samples `blocks` streams: fisher and scale per filter, and facts."""
    require_probe(loaded)
    if settings["method"] not in METHODS:
        raise ProbeError("unknown Fisher method %r; choose %s" % (settings["method"], " or ".join(METHODS)))
    started = time.perf_counter()
    torch.manual_seed(settings["seed"])
    loaded.module.eval()  # batch norm statistics stay those of the probe
    layers = weight_layers(loaded.module, settings["skip_layers"])
    feats, y = features(loaded, blocks, settings["batch_size"], reader_id)
    if len(np.unique(y)) < 2:
        raise ProbeError("reader %s has samples of one class only; a Task2Vec embedding needs two or more"
                         % reader_id)
    if progress:
        progress(0.1)
    where = loaded.tensor_device or loaded.device
    head = fit_head(feats, y, num_classes, settings["seed"]).to(where)
    net = Probe(loaded, head)
    net.eval()
    fisher, scale = METHODS[settings["method"]](net, loaded, layers, blocks, dict(settings, _samples=len(y)),
                                                reader_id, progress)
    return {"fisher": fisher, "scale": scale, "num_samples": int(len(y)),
            "seconds": time.perf_counter() - started,
            "layers": [n for n, _ in layers]}


def limited(blocks: Iterable[tuple[object, np.ndarray]], max_samples: int) -> Iterator[tuple[object, np.ndarray]]:
    """The first max_samples samples of a stream of (xs, ys) blocks."""
    left = max_samples
    for xs, ys in blocks:
        if left <= 0:
            return
        if len(ys) > left:
            xs, ys = xs[:left], ys[:left]
        left -= len(ys)
        yield xs, ys
