"""H-score and the shrinkage H-score: how well class-conditional means explain the feature covariance.

H-score: Bao, Li, Huang, Chen, Zhang and Wang, "An Information-Theoretic Approach to
Transferability in Task Transfer Learning", ICIP 2019, eq. (1): tr(cov(f)^-1 cov(E[f | y])).
Reference: thuml/Transfer-Learning-Library tllib/ranking/hscore.py `h_score` (np.cov, the
N - 1 normalisation, and numpy's pseudo-inverse with rcond 1e-15).

Shrinkage H-score: Ibrahim, Ponomareva and Mazumder, "Newer is not always better: Rethinking
transferability metrics, their peculiarities, stability and performance", ECML PKDD 2022,
eq. (4): tr(cov_alpha(f)^-1 (1 - alpha) cov(E[f | y])), cov_alpha the Ledoit-Wolf estimate of
the centred features (1/N, scikit-learn's LedoitWolf, as the reference) and alpha its shrinkage;
the between-class term keeps np.cov's 1/(N-1), mixed as in the reference
(tllib/ranking/hscore.py `regularized_h_score`).

When N <= D the sample covariance is singular and the plain H-score degenerates to C - 1
whatever the features; the shrinkage form is the one to use there.
"""

import numpy as np

from ._inputs import class_means, features_and_labels


def _between(f, y, classes):
    """np.cov of the class-mean features g_i = E[f | y_i] (N - 1 normalisation)."""
    means, counts = class_means(f, y, classes)
    centred = means - f.mean(axis=0)
    return (centred.T * counts) @ centred / (len(y) - 1)


def h_score(features, labels):
    """H-score of (N, D) features for integer class labels; higher is better."""
    f, y = features_and_labels(features, labels)
    if len(y) < 2:
        raise ValueError("the H-score needs two samples at least")
    cov_f = np.cov(f, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ _between(f, y, int(y.max()) + 1)))


def shrinkage_h_score(features, labels):
    """Shrinkage H-score (Ledoit-Wolf) of (N, D) features for integer class labels; higher is better."""
    from sklearn.covariance import LedoitWolf

    f, y = features_and_labels(features, labels)
    f = f - f.mean(axis=0, keepdims=True)  # centred for the Ledoit-Wolf estimate, as the reference
    estimate = LedoitWolf(assume_centered=False).fit(f)
    alpha = estimate.shrinkage_
    between = _between(f, y, int(y.max()) + 1)
    return float(np.trace(np.linalg.pinv(estimate.covariance_, rcond=1e-15) @ ((1 - alpha) * between)))
