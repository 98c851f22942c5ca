"""TransRate: the coding rate of the features minus the mean coding rate of each class's.

Huang, Huang, Guo, Yao and Tang, "Frustratingly Easy Transferability Estimation", ICML 2022,
eq. (6)-(7): with R(Z, eps) = 1/2 log det(I + Z^T Z / (n_Z eps)),

    TransRate = R(f, eps) - 1/C sum_c R(f_c, eps),

f centred once over all samples (the class subsets f_c are not centred again) and the class
average unweighted, as thuml/Transfer-Learning-Library tllib/ranking/transrate.py computes it
(eps = 1e-4 there and here). The paper centres and scales features to a unit trace first in
its experiments; the reference does not, nor does this, so values match it.
"""

import numpy as np

from ._inputs import features_and_labels


def coding_rate(z, eps):
    _, log_det = np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))
    return 0.5 * log_det


def transrate(features, labels, eps=1e-4):
    """TransRate of (N, D) features for integer class labels; higher is better."""
    if not eps > 0:
        raise ValueError("eps must be positive")
    f, y = features_and_labels(features, labels)
    f = f - f.mean(axis=0, keepdims=True)
    classes = int(y.max()) + 1
    return float(coding_rate(f, eps) - sum(coding_rate(f[y == c], eps) for c in range(classes)) / classes)
