"""SFDA: self-challenging Fisher discriminant analysis.

Shao, Zhao, Ge, Lin, Yuan, Chen and Luo, "Not All Models Are Equal: Predicting Model
Transferability in a Self-challenging Fisher Space", ECCV 2022, §3.2-3.3. Reference:
TencentARC/SFDA metrics.py `SFDA_Score` and its class `SFDA`.

Stage 1, regularised FDA (eq. 3-4): priors pi_c, class means mu_c, the within-class scatter
Sw = sum_c pi_c cov_c (population covariances), shrunk to Sw_l = (1 - l) Sw + l tr(Sw)/D I with
l = max(exp(-5 lambda_max(Sw)), 1e-10), lambda_max by three steps of the power iteration from
Sw's row sums (as the reference, so l is the same). The class posteriors are a softmax of
x Sw_l^-1 mu_c - 1/2 mu_c^T Sw_l^-1 mu_c + log pi_c.

The reference obtains Sw_l^-1 mu_c as mu_c V V^T from the generalised eigenvectors V of
(Sb, Sw_l), which satisfy V^T Sw_l V = I, so V V^T = Sw_l^-1 and Sb changes nothing but their
order; this solves Sw_l z = mu_c directly (same value, fewer operations).

ConfMix (eq. 5): the stage-1 posteriors pass through a second softmax (the reference does
this, "to soften" them), then every sample moves towards the mean of the other classes' means,
x <- p x + (1 - p) mean_{c' != y} mu_c', p its softened probability of its own class. Stage 2
is the same FDA, with stage 1's l, on the moved samples; the score is the mean probability of
the true class (no log, as the reference; eq. 6 has one).

When N <= D the within-class scatter is singular and the score tends to 1.0 for any features.
"""

import numpy as np

from ._inputs import class_means, features_and_labels, softmax


def _largest_eigenvalue(a, steps=3):
    """The reference's estimate of a's largest eigenvalue: `steps` double power-iteration steps."""
    x = a.sum(axis=1)
    for _ in range(steps):
        y = a @ x
        y /= np.linalg.norm(y)
        x = a @ y
        x /= np.linalg.norm(x)
    return float(x @ a @ y)


def _fda_probabilities(f, y, classes, shrinkage=None):
    """Class posteriors of the regularised FDA fitted on (f, y), and the shrinkage it used."""
    means, counts = class_means(f, y, classes)
    priors = counts / len(y)
    dim = f.shape[1]
    within = np.zeros((dim, dim))
    for c in range(classes):
        centred = f[y == c] - means[c]
        within += priors[c] * (centred.T @ centred) / counts[c]
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * _largest_eigenvalue(within)), 1e-10)
    shrunk = (1.0 - shrinkage) * within
    shrunk.flat[::dim + 1] += shrinkage * np.trace(within) / dim
    coef = np.linalg.solve(shrunk, means.T).T  # mu_c Sw_l^-1
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    return softmax(f @ coef.T + intercept), shrinkage


def sfda(features, labels):
    """SFDA score of (N, D) features for integer class labels, in (0, 1]; higher is better."""
    f, y = features_and_labels(features, labels)
    classes = int(y.max()) + 1
    rows = np.arange(len(y))
    first, shrinkage = _fda_probabilities(f, y, classes)
    own = softmax(first)[rows, y][:, None]  # the second softmax of the reference
    means, _ = class_means(f, y, classes)
    others = (means.sum(axis=0) - means) / (classes - 1)
    mixed = own * f + (1 - own) * others[y]
    second, _ = _fda_probabilities(mixed, y, classes, shrinkage)
    return float(np.mean(second[rows, y]))
