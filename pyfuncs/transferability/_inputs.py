"""Checks shared by the transferability metrics: what every metric assumes of its arrays."""

import numpy as np


class DegenerateInput(ValueError):
    """Arrays a metric cannot score: the message says which and why (shift maps it to SQLSTATE 22023)."""


def target_labels(labels, min_classes=2):
    """int64 labels renumbered 0..C-1 over the classes present, in increasing order of their label.

    A reader whose training samples lack a class scores as if that class did not exist (the
    references assume every class in 0..C-1 occurs)."""
    y = np.asarray(labels)
    if y.ndim != 1 or not len(y):
        raise DegenerateInput("labels must be a non-empty vector, not of shape %s" % (y.shape,))
    if not np.issubdtype(y.dtype, np.integer):
        raise DegenerateInput("labels must be integers, not %s" % y.dtype)
    _, y = np.unique(y, return_inverse=True)
    classes = int(y.max()) + 1
    if classes < min_classes:
        raise DegenerateInput("%d class%s among the samples; the metric needs at least %d"
                              % (classes, "" if classes == 1 else "es", min_classes))
    return y.astype(np.int64)


def features_and_labels(features, labels, min_classes=2):
    """float64 (N, D) features, finite and not all equal, and target_labels."""
    f = np.asarray(features, dtype=np.float64)
    y = target_labels(labels, min_classes)
    if f.ndim != 2 or len(f) != len(y):
        raise DegenerateInput("features of shape %s do not match %d labels" % (f.shape, len(y)))
    if not np.isfinite(f).all():
        raise DegenerateInput("features hold NaN or infinite values")
    if len(f) > 1 and not np.ptp(f, axis=0).any():
        raise DegenerateInput("the features are the same for every sample: nothing tells the classes apart")
    return f, y


def source_probabilities(theta, n):
    """float64 (N, Cs) rows of a source classifier's probabilities, checked."""
    p = np.asarray(theta, dtype=np.float64)
    if p.ndim != 2 or len(p) != n:
        raise DegenerateInput("source probabilities of shape %s do not match %d samples" % (p.shape, n))
    if not np.isfinite(p).all() or (p < 0).any():
        raise DegenerateInput("source probabilities must be finite and non-negative")
    if not np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-6):
        raise DegenerateInput("source probabilities must sum to 1 per sample (apply a softmax to logits)")
    return p


def softmax(logits):
    """Row-wise softmax of float64 logits, shifted by the row maximum."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def class_means(f, y, classes):
    """(C, D) class means and (C,) counts."""
    counts = np.bincount(y, minlength=classes)
    means = np.zeros((classes, f.shape[1]))
    np.add.at(means, y, f)
    return means / counts[:, None], counts
