"""NCE: the negative conditional entropy of the target labels given the source model's predicted labels.

Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification Tasks",
ICCV 2019, eq. (3)-(5). Reference: thuml/LogME NCE.py `NCE` and thuml/Transfer-Learning-Library
tllib/ranking/nce.py (identical values).

z_i = argmax of the source model's outputs, P(y, z) the empirical joint over the N samples:

    NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z)   (natural log).

Pairs with P(y, z) = 0 contribute 0 (the references add 1e-20 inside the log to get the
same); a source class never predicted is left out.
"""

import numpy as np

from ._inputs import DegenerateInput, target_labels


def nce(source_labels, labels):
    """NCE of predicted source classes (N integers) for integer target labels; higher (towards 0) is better."""
    y = target_labels(labels)
    z = np.asarray(source_labels)
    if z.shape != y.shape or not np.issubdtype(z.dtype, np.integer) or (z < 0).any():
        raise DegenerateInput("source labels must be %d non-negative integers" % len(y))
    counts = np.zeros((int(y.max()) + 1, int(z.max()) + 1))
    np.add.at(counts, (y, z), 1.0)
    p_yz = counts / len(y)
    p_z = p_yz.sum(axis=0, keepdims=True)
    nonzero = p_yz > 0
    return float(np.sum(p_yz[nonzero] * np.log((p_yz / np.where(p_z > 0, p_z, 1.0))[nonzero])))
