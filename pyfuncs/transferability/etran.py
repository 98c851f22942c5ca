"""ETran: an energy term and an LDA term, combined over the pool of models ranked.

Gholami, Akbari, Wang, Wang, Zhang and Wang, "ETran: Energy-Based Transferability Estimation",
ICCV 2023, §3. Reference: mgholamikn/ETran metrics.py `LDA_Score` and `Energy_Score`, as its
evaluate_metric.py calls them (the energy on the features, percent 0.5, the bottom tail).

- lda: the mean probability of the true class under a linear discriminant with identity
  covariance, softmax_c(x mu_c - 1/2 ||mu_c||^2 + log pi_c). The reference's LDA class calls
  eigh on the non-symmetric inv(Sw) Sb and keeps all D orthonormal eigenvectors V, so its
  coefficients are means V V^T = means whatever the covariance: this computes that value
  directly (same to ~1e-15 on the reference cases).
- energy: per sample E(x) = logsumexp over its feature coordinates; the score is the mean of
  the floor(5 N / 1000) lowest (0.5%, the in-distribution tail the paper argues for).
  Departure: at least one sample is kept (the reference averages none, giving NaN, for N < 200).

The score is relative to the pool: ETran = 0.85 minmax(lda) + 0.15 minmax(energy) over the
models ranked (the reference's evaluate_metric.py weights), `combine`. The paper's third term,
a classification score from an SVD of the features, is left out as the reference leaves it
out of that combination.
"""

import numpy as np
from scipy.special import logsumexp

from ._inputs import class_means, features_and_labels, softmax
from .ncti import minmax

LDA_WEIGHT, ENERGY_WEIGHT = 0.85, 0.15
TAIL_PER_MILLE = 5
TERMS = ("lda", "energy")


def lda_term(f, y):
    classes = int(y.max()) + 1
    means, counts = class_means(f, y, classes)
    scores = f @ means.T - 0.5 * np.einsum("cd,cd->c", means, means) + np.log(counts / len(y))
    return float(np.mean(softmax(scores)[np.arange(len(y)), y]))


def energy_term(f):
    energy = np.sort(logsumexp(f, axis=1))
    keep = max(1, TAIL_PER_MILLE * len(energy) // 1000)
    return float(np.mean(energy[:keep]))


def etran_terms(features, labels):
    """{'lda', 'energy'} of (N, D) features for integer class labels (both higher is better)."""
    f, y = features_and_labels(features, labels)
    return {"lda": lda_term(f, y), "energy": energy_term(f)}


def combine(terms):
    """ETran of each model of a pool from its terms ({'lda', 'energy'} per model, in the pool's order)."""
    combined = LDA_WEIGHT * minmax([m["lda"] for m in terms]) + ENERGY_WEIGHT * minmax([m["energy"] for m in terms])
    return [float(v) for v in combined]
