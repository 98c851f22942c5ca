"""GBC: the Gaussian Bhattacharyya coefficient, the overlap of class-conditional Gaussians.

Pándy, Agostinelli, Uijlings, Ferrari and Mensink, "Transferability Estimation using
Bhattacharyya Class Separability", CVPR 2022, eq. (1)-(3). Reference (TensorFlow):
google-research/google-research stable_transfer/transferability/gbc.py `get_gbc_score`.

Per class c a Gaussian with the class mean mu_c and per-dimension population variance
s_c (clamped at 1e-4); 'spherical' replaces s_c by its mean. Between two classes, with
s = (s_1 + s_2) / 2, the Bhattacharyya distance

    D_B = 1/8 sum_d (mu_1 - mu_2)^2 / s + 1/2 (log s - 1/2 log s_1 - 1/2 log s_2),

the log terms summed over the dimensions ('diagonal') or, as the reference writes the
spherical case, taken once for the scalar variances. GBC = -sum over ordered pairs of classes
of exp(-D_B) (each pair counted twice, as the reference); higher (towards 0) is better.

The paper reduces the features by PCA to 64 dimensions first in its experiments; the
reference function does not, nor does this.
"""

import numpy as np

from ._inputs import class_means, features_and_labels

VARIANCE_FLOOR = 1e-4
GAUSSIAN_TYPES = ("diagonal", "spherical")


def gbc(features, labels, gaussian_type="diagonal"):
    """GBC of (N, D) features for integer class labels; higher (towards 0) is better."""
    if gaussian_type not in GAUSSIAN_TYPES:
        raise ValueError("gaussian_type must be one of %s" % ", ".join(GAUSSIAN_TYPES))
    f, y = features_and_labels(features, labels)
    classes = int(y.max()) + 1
    means, counts = class_means(f, y, classes)
    variances = np.zeros_like(means)
    np.add.at(variances, y, (f - means[y]) ** 2)
    variances = np.maximum(variances / counts[:, None], VARIANCE_FLOOR)
    if gaussian_type == "spherical":
        variances = variances.mean(axis=1, keepdims=True)
    log_var = np.log(variances).sum(axis=1)
    score = 0.0
    for a in range(classes):
        for b in range(classes):
            if a == b:
                continue
            s = (variances[a] + variances[b]) / 2
            distance = np.sum((means[a] - means[b]) ** 2 / s) / 8 + \
                0.5 * (np.log(s).sum() - 0.5 * log_var[a] - 0.5 * log_var[b])
            score -= np.exp(-distance)
    return float(score)
