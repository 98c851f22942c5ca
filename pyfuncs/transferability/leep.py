"""LEEP: the log expected empirical prediction of the source classifier's outputs.

Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of
Learned Representations", ICML 2020, eq. (1)-(2). Reference: thuml/LogME LEEP.py `LEEP` and
thuml/Transfer-Learning-Library tllib/ranking/leep.py (identical values).

theta (N x Cs): the source model's softmax outputs. The empirical joint P(y, z) =
1/N sum_i theta_iz [y_i = y], P(y | z) = P(y, z) / P(z), and

    LEEP = 1/N sum_i log sum_z P(y_i | z) theta_iz.

A source class z no sample gives any probability (P(z) = 0) is left out of the sums (the
references divide by zero there); it contributes nothing to any prediction.
"""

import numpy as np

from ._inputs import source_probabilities, target_labels


def expected_prediction(theta, y):
    """Per sample, sum_z P(y_i | z) theta_iz: the empirical prediction of its own class (the dummy classifier of
    LEEP eq. 2); source classes no sample gives any probability are left out."""
    p_yz = np.zeros((int(y.max()) + 1, theta.shape[1]))
    np.add.at(p_yz, y, theta)
    p_yz /= len(y)
    p_z = p_yz.sum(axis=0)
    seen = p_z > 0
    return np.einsum("nz,nz->n", theta[:, seen], (p_yz[:, seen] / p_z[seen])[y])


def leep(theta, labels):
    """LEEP of source probabilities (N x Cs, rows summing to 1) for integer target labels; higher is better."""
    y = target_labels(labels)
    return float(np.mean(np.log(expected_prediction(source_probabilities(theta, len(y)), y))))
