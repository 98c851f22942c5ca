"""What each transferability metric costs next to the inference it ranks: N = 5,000 samples, D = 2,048.

Times every metric of pyfuncs/transferability on synthetic features of a ResNet-50's width
(N x 2,048, C classes with Gaussian class means; LEEP and NCE on 1,000 source-class logits),
and the inference of a ResNet-50 (torchvision, random weights, 224 x 224, batches of 32, eval
mode, no gradients) on the same number of samples: timed on --inference-samples of them and
scaled linearly to N, since the full 5,000 take minutes on two cores. Prints each metric's
seconds and its share of that inference time (target: at most 10%).

    .venv/bin/python bench/transferability.py [--n 5000] [--dim 2048] [--classes 10] [--inference-samples 256]
        [--device cpu|cuda] [--out FILE]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyfuncs import transferability as T  # noqa: E402


def features(n, dim, classes, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    means = rng.normal(0, 1.5 / np.sqrt(dim), (classes, dim))
    f = np.maximum(means[y] + rng.normal(size=(n, dim)), 0).astype(np.float32)  # post-ReLU, as pooled CNN features
    logits = (f @ rng.normal(0, 2 / np.sqrt(dim), (dim, 1000))).astype(np.float32)
    return f, y, logits


def softmax(z):
    z = np.asarray(z, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


METRICS = {
    "LogME": lambda f, y, z: T.logme(f, y),
    "HScore": lambda f, y, z: T.h_score(f, y),
    "ShrinkageHScore": lambda f, y, z: T.shrinkage_h_score(f, y),
    "GBC": lambda f, y, z: T.gbc(f, y),
    "TransRate": lambda f, y, z: T.transrate(f, y),
    "SFDA": lambda f, y, z: T.sfda(f, y),
    "NLEEP": lambda f, y, z: T.nleep(f, y),
    "NCTI (terms)": lambda f, y, z: T.ncti_terms(f, y),
    "ETran (terms)": lambda f, y, z: T.etran_terms(f, y),
    "KNNLeaveOneOut": lambda f, y, z: T.knn_accuracy(f, y),
    "LEEP": lambda f, y, z: T.leep(softmax(z), y),
    "NCE": lambda f, y, z: T.nce(np.argmax(z, axis=1), y),
}


def inference_seconds(n, samples, device, batch=32):
    """Seconds a ResNet-50 takes on n samples, timed on `samples` of them after one warm-up batch."""
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.no_grad():
        model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        done = 0
        while done < samples:
            model(x)
            done += batch
        if device == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / done * n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--inference-samples", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    f, y, z = features(args.n, args.dim, args.classes)
    inference = inference_seconds(args.n, args.inference_samples, args.device)
    print("ResNet-50 inference on %d samples (224 px, %s): %.1f s (timed on %d)"
          % (args.n, args.device, inference, args.inference_samples))
    rows = []
    for name, metric in METRICS.items():
        started = time.perf_counter()
        metric(f, y, z)
        seconds = time.perf_counter() - started
        rows.append((name, seconds, seconds / inference))
        print("%-16s %8.2f s  %6.1f%% of the inference" % (name, seconds, 100 * seconds / inference))
    if args.out:
        lines = ["# Transferability metrics: time per model next to its inference", "",
                 "`bench/transferability.py %s` on %s: N = %d, D = %d, %d classes (LEEP and NCE: 1,000 source "
                 "classes); ResNet-50 inference on the same %d samples (224 px, %s, batch 32): %.1f s, timed on %d "
                 "samples and scaled." % (" ".join(argv or sys.argv[1:]), time.strftime("%Y-%m-%d"), args.n,
                                          args.dim, args.classes, args.n, args.device, inference,
                                          args.inference_samples), "",
                 "| metric | seconds | share of the inference |", "| --- | ---: | ---: |"]
        lines += ["| %s | %.2f | %.1f%% |" % (name, s, 100 * r) for name, s, r in rows]
        args.out.write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
