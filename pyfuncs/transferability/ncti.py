"""NCTI: the neural-collapse transferability index, its three terms and their combination over a pool.

Wang, Li, Guo, Zhang and Xu, "How Far Pre-trained Models Are from Neural Collapse on the Target
Dataset Informs their Transferability", ICCV 2023, §3 (eq. 4-8). Reference: BUserName/NCTI
metrics.py `NCTI_Score`, which returns the three raw terms:

- features reduced by PCA to 64 components; a linear discriminant analysis (scikit-learn's,
  solver 'svd' when the shrinkage max(exp(-sum of the 32 largest PCA variances), 1e-10) is at
  its floor, else solver 'eigen' with that shrinkage) fitted on them;
- seli: the nuclear norm of the centred LDA projection (within-class variability collapse);
- ncc: the mean LDA probability of the true class (nearest class centre);
- vc: the log of the sum over classes of the nuclear norms of the class's predicted
  probabilities (lower is better).

The index is relative to the pool of models ranked: NCTI = minmax(seli) + minmax(ncc) -
minmax(vc), each term min-max normalised over the models (paper eq. 8): `combine`.

Departures: the reference fails when min(N, D) < 64 (PCA to 64 components); this reduces to
min(64, N, D) components there, and to fewer than 32 sums all of them for the shrinkage. The
reference's PCA picks its solver by the data's shape, an unseeded randomised SVD beyond 500
samples, so its value changes from run to run there; this always uses the exact SVD (the
solver the reference picks on its own test cases, where the values match).
"""

import numpy as np

from ._inputs import features_and_labels

COMPONENTS = 64
SHRINKAGE_COMPONENTS = 32
TERMS = ("seli", "ncc", "vc")


def ncti_terms(features, labels):
    """{'seli', 'ncc', 'vc'} of (N, D) features for integer class labels (the first two higher, vc lower is better)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    f, y = features_and_labels(features, labels)
    classes = int(y.max()) + 1
    pca = PCA(n_components=min(COMPONENTS, *f.shape), svd_solver="full")
    reduced = pca.fit_transform(f, y)
    shrinkage = max(np.exp(-pca.explained_variance_[:SHRINKAGE_COMPONENTS].sum()), 1e-10)
    lda = LinearDiscriminantAnalysis(solver="svd") if shrinkage == 1e-10 else \
        LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(shrinkage))
    projected = lda.fit_transform(reduced, y)
    projected = projected - projected.mean(axis=0, keepdims=True)
    probabilities = lda.predict_proba(reduced)
    class_nuclear = sum(np.linalg.norm(probabilities[y == c], ord="nuc") for c in range(classes))
    return {"seli": float(np.linalg.norm(projected, ord="nuc")),
            "ncc": float(np.mean(probabilities[np.arange(len(y)), y])),
            "vc": float(np.log(class_nuclear))}


def minmax(values):
    """Values scaled to [0, 1] over the pool; all equal (or one model) gives 0 for each."""
    v = np.asarray(values, dtype=np.float64)
    span = v.max() - v.min()
    return np.zeros_like(v) if span == 0 else (v - v.min()) / span


def combine(terms):
    """NCTI of each model of a pool from its terms ({'seli', 'ncc', 'vc'} per model, in the pool's order)."""
    column = {t: minmax([m[t] for m in terms]) for t in TERMS}
    return [float(v) for v in column["seli"] + column["ncc"] - column["vc"]]
