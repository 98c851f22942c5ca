"""N-LEEP: LEEP with a Gaussian mixture over the (PCA-reduced) features in place of the source head.

Li, Jia, Zhu, Ye, Wang, Li, Gong and Pan, "Ranking Neural Checkpoints", CVPR 2021, §4.2.
Reference: TencentARC/SFDA metrics.py `NLEEP` (called with component_ratio=5).

Features are reduced by PCA to the components that keep 80% of the variance, a Gaussian
mixture of component_ratio x C components (scikit-learn's defaults: full covariances, k-means
start) is fitted, and its posteriors stand in for the source probabilities theta of LEEP.
As the reference, the score is the mean of the empirical prediction of the true class, with no
log (the paper takes the log, as LEEP does).

The mixture's start is random: here it is seeded (`seed`), so a value is reproducible. The
reference uses numpy's global generator; with seed 0 this equals its call after
np.random.seed(0) under the same scikit-learn. The value still depends on the sample order
(0.04-16% on the reference cases), which is the order of the reader.
"""

import numpy as np

from ._inputs import features_and_labels
from .leep import expected_prediction


def nleep(features, labels, component_ratio=5, seed=0):
    """N-LEEP of (N, D) features for integer class labels, in (0, 1]; higher is better."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    f, y = features_and_labels(features, labels)
    if int(component_ratio) < 1:
        raise ValueError("component_ratio must be at least 1")
    classes = int(y.max()) + 1
    reduced = PCA(n_components=0.8).fit_transform(f)
    components = int(component_ratio) * classes
    if components > len(y):
        raise ValueError("%d mixture components asked of %d samples; lower component_ratio"
                         % (components, len(y)))
    theta = GaussianMixture(n_components=components, random_state=seed).fit(reduced).predict_proba(reduced)
    return float(np.mean(expected_prediction(theta, y)))
