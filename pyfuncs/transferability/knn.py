"""kNN: the leave-one-out k-nearest-neighbour accuracy on the training reader's features.

The training-free baseline of the transferability literature (e.g. the kNN row of Agostinelli
et al., "How stable are Transferability Metrics evaluations?", ECCV 2022): each training sample
is classified by the majority of its k nearest other training samples. Unlike the KNN scorer of
pyfuncs.proxies, which classifies a test reader, it needs only the training reader. The
neighbour search, its ties (the earlier sample is nearer) and its vote (the smallest label wins a
tie) are pyfuncs.proxies.nn_accuracy's, with each sample's own row left out.
"""

import numpy as np

from ..proxies import first_k
from ._inputs import features_and_labels


def knn_accuracy(features, labels, k=5, metric="cosine", block=1024):
    """Leave-one-out k-NN accuracy in [0, 1] of (N, D) features for integer class labels; higher is better."""
    f, y = features_and_labels(features, labels)
    k = int(k)
    if not 1 <= k < len(y):
        raise ValueError("k=%d neighbours asked of %d samples (each is left out of its own)" % (k, len(y)))
    if metric == "cosine":
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        f = f / np.where(norms == 0, 1.0, norms)
        offset = np.zeros(len(f))
        scale = 1.0
    elif metric == "euclidean":
        offset = np.einsum("nd,nd->n", f, f)
        scale = 2.0
    else:
        raise ValueError("unknown nearest-neighbour metric %r" % metric)
    classes = int(y.max()) + 1
    correct = 0
    for start in range(0, len(y), block):
        rows = np.arange(start, min(start + block, len(y)))
        d = offset[None, :] - scale * (f[rows] @ f.T)  # the squared distance less the row's own norm
        d[np.arange(len(rows)), rows] = np.inf  # a sample is not its own neighbour
        order = first_k(d, k)
        votes = np.zeros((len(rows), classes), np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), y[order].ravel()), 1)
        correct += int(np.sum(votes.argmax(axis=1) == y[rows]))
    return correct / len(y)
