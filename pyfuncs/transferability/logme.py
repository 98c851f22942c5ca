"""LogME: the logarithm of the maximum evidence of a Bayesian linear model on the features.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021 (eq. 2-4), computed by the fixed-point iteration of You et al.,
"Ranking and Tuning Pre-trained Models: A New Paradigm for Exploiting Model Hubs", JMLR 2022
(arXiv 2110.10545, Algorithm 2). Reference: thuml/LogME, LogME.py `LogME._fit_fixed_point`.

Per class c, with y the 0/1 indicator of c, the model y = f w + noise, prior w ~ N(0, 1/alpha),
noise ~ N(0, 1/beta); alpha and beta maximise the evidence

    L = D/2 log alpha + N/2 log beta - 1/2 log|A| - beta/2 ||f m - y||^2 - alpha/2 ||m||^2 - N/2 log 2 pi,
    A = alpha I + beta f^T f,  m = beta A^-1 f^T y,

and the score is the mean over classes of L / N. The iteration, its start (alpha = beta = 1),
its 11 steps at most, its stopping rule |t' - t| / t <= 1e-3 on t = alpha / beta and the 1e-5
added to the denominators are the reference's, so values match it (to ~1e-12 relative).

One departure, a fix: log|A| is the sum over all D eigenvalues alpha + beta sigma_i of A, the
D - k zero singular values of f (k = rank, < D when N < D or the features are rank-deficient)
included as D - k terms log alpha. The reference sums only the k non-zero ones, which is wrong
when N < D (thuml/LogME issue #23; the unmerged PR #24 pads them, and its values are the ones
this matches there).

Everything is computed from f^T f and f^T y (`statistics`), so features read block by block
give the same value as features held whole.
"""

import numpy as np

from ._inputs import features_and_labels

# the reference's singular-value floor: directions of f with smaller singular values are its null space
RANK_TOLERANCE = 1e-10


def statistics(blocks, classes, dim):
    """(f^T f, f^T Y, class counts, N) accumulated over (features, labels) blocks, in float64."""
    gram, cross = np.zeros((dim, dim)), np.zeros((dim, classes))
    counts, n = np.zeros(classes, np.int64), 0
    for f, y in blocks:
        f = np.asarray(f, dtype=np.float64)
        gram += f.T @ f
        np.add.at(cross.T, y, f)
        counts += np.bincount(y, minlength=classes)
        n += len(y)
    return gram, cross, counts, n


def from_statistics(gram, cross, counts, n):
    """LogME from f^T f (D x D), f^T Y (D x C, Y one-hot), class counts and N."""
    dim = gram.shape[0]
    sigma, v = np.linalg.eigh(gram)
    sigma, v = sigma[::-1], v[:, ::-1]  # descending, as an SVD gives them
    singular = np.sqrt(np.clip(sigma, 0, None))
    k = min(int(np.sum(singular > RANK_TOLERANCE)), n)  # f^T f has rank N at most: the rest is rounding
    sigma, singular, v = sigma[:k], singular[:k], v[:, :k]
    # x = u^T y with u = f v / s, the coordinates of y on the left singular vectors
    x = (v.T @ cross) / singular[:, None]
    return float(np.mean([_evidence(sigma, x[:, c], float(counts[c]), n, dim) for c in range(cross.shape[1])]))


def _evidence(sigma, x, yy, n, dim):
    """L / N of one class by the fixed point; x: y's coordinates on the singular vectors, yy = ||y||^2."""
    x2 = x * x
    residual_x2 = yy - x2.sum()  # the part of y outside the span of f
    alpha = beta = 1.0
    for _ in range(11):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / t) ** 2).sum() + residual_x2
        alpha = gamma / (m2 + 1e-5)
        beta = (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= 1e-3:
            break
    log_det = np.log(alpha + beta * sigma).sum() + (dim - len(sigma)) * np.log(alpha)
    evidence = (dim / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * log_det
                - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
    return evidence / n


def logme(features, labels):
    """LogME of (N, D) features for integer class labels; higher is better."""
    f, y = features_and_labels(features, labels)
    return from_statistics(*statistics([(f, y)], int(y.max()) + 1, f.shape[1]))
