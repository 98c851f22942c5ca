"""Task embeddings: their checks, the index projection, and the Task2Vec distances (numpy only).

A Task2Vec embedding (Achille et al., Task2Vec, ICCV 2019; seed 000 §3.3) is the
diagonal Fisher information of a probe network's weights, averaged per filter:
`fisher`, one value per filter. Beside it each row stores `scale`, one reference
value per filter: for the variational Fisher the prior precision 1/lambda^2 of the
filter's layer, for the Monte-Carlo Fisher the mean Fisher of the filter's layer
(see gpu_daemon/task2vec.py). Both are shift.task_embeddings columns.

Distances (lower is more similar):

- symmetric: d_sym(Fa, Fb) = d_cos(Fa / (Fa + Fb), Fb / (Fa + Fb)), the paper's
  symmetric Task2Vec distance, the division element-wise;
- normalized_cosine: the cosine distance of the filter variances 1/F normalised by
  the prior variances, (scale / F): what seed 002 Appendix H ranks tasks by (the
  "normalized cosine" of the reference code);
- asymmetric: d_asym(a -> b) = d_sym(a, b) - alpha * d_sym(a, t0), with t0 the
  trivial embedding of a: every filter's Fisher replaced by its layer's reference
  value `scale` (the reference code's trivial embedding puts each filter's variance
  at its layer's prior, i.e. the posterior of a task that teaches the probe nothing).

Only the normalised cosine is a cosine of fixed per-task vectors, so only it can be
served by an index: `index_vector` is a seeded Gaussian projection of the unit
normalised vector to INDEX_DIM values, whose cosine approximates it.
"""

import functools

import numpy as np

from .errors import INVALID_PARAMETER, ShiftError

INDEX_DIM = 256          # shift.task_embeddings.index_vector is vector(256)
PROJECTION_SEED = 20190  # fixed: every index vector of every row comes from the same projection
EPS = 1e-12
DISTANCES = ("symmetric", "normalized_cosine", "asymmetric")
INDEXED = ("normalized_cosine",)  # the cosine forms HNSW serves


def _cosine_distance(u, v):
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 1.0
    return float(1.0 - np.dot(u, v) / (nu * nv))


def symmetric(fa, fb):
    """d_sym(Fa, Fb) = d_cos(Fa / (Fa + Fb), Fb / (Fa + Fb)) (Task2Vec §3, "symmetric TASK2VEC distance")."""
    fa, fb = np.asarray(fa, dtype=np.float64), np.asarray(fb, dtype=np.float64)
    total = fa + fb
    total[total == 0] = 1.0  # a filter with no information in either task adds 0 / 1 to both
    return _cosine_distance(fa / total, fb / total)


def normalized(fisher, scale):
    """The filter variances 1/F over the prior variances 1/scale: scale / F (seed 002's normalised cosine)."""
    fisher, scale = np.asarray(fisher, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    return scale / np.maximum(fisher, EPS * max(float(np.mean(np.abs(fisher))), EPS))


def normalized_cosine(fa, sa, fb, sb):
    return _cosine_distance(normalized(fa, sa), normalized(fb, sb))


def trivial(scale):
    """The trivial embedding t0: each filter's Fisher at its layer's reference value."""
    return np.asarray(scale, dtype=np.float64)


def asymmetric(fa, sa, fb, alpha):
    """d_asym(a -> b) = d_sym(a, b) - alpha * d_sym(a, t0) (Task2Vec §3, "asymmetric TASK2VEC distance")."""
    return symmetric(fa, fb) - alpha * symmetric(fa, trivial(sa))


def distance(name, a, b, alpha=0.0):
    """Distance `name` from embedding a to b, each a dict with 'embedding' and 'scale'."""
    if name == "symmetric":
        return symmetric(a["embedding"], b["embedding"])
    if name == "normalized_cosine":
        return normalized_cosine(a["embedding"], a["scale"], b["embedding"], b["scale"])
    if name == "asymmetric":
        return asymmetric(a["embedding"], a["scale"], b["embedding"], alpha)
    raise ShiftError("unknown task distance %r" % name, INVALID_PARAMETER, hint="choose one of %s" % ", ".join(DISTANCES))


@functools.lru_cache(maxsize=8)  # a 8,512 x 256 draw costs ~20 ms: once per dimension
def projection(dim, seed=PROJECTION_SEED):
    """The dim x INDEX_DIM Gaussian matrix of the index vectors of dim-long embeddings."""
    return np.random.default_rng([seed, dim]).standard_normal((dim, INDEX_DIM), dtype=np.float64)


def index_vector(fisher, scale):
    """The unit INDEX_DIM-long projection of the unit normalised vector: its cosine approximates normalized_cosine."""
    v = normalized(fisher, scale)
    v = v / np.linalg.norm(v)
    p = v @ projection(len(v))
    return p / np.linalg.norm(p)


def check(fisher, scale, dim=None):
    """A computed embedding is stored only when it is whole: finite, non-negative, of the right length."""
    fisher, scale = np.asarray(fisher, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if fisher.ndim != 1 or scale.shape != fisher.shape or (dim is not None and len(fisher) != dim):
        raise ValueError("task embedding has shape %s (scale %s), expected %s values"
                         % (fisher.shape, scale.shape, dim if dim is not None else "one row of"))
    if not len(fisher):
        raise ValueError("task embedding is empty: the probe has no filters left after skip_layers")
    for what, v in (("fisher", fisher), ("scale", scale)):
        if not np.isfinite(v).all():
            raise ValueError("task embedding has %d non-finite %s values of %d" % (int((~np.isfinite(v)).sum()), what,
                                                                                   len(v)))
        if not np.isfinite(v.astype(np.float32)).all():
            raise ValueError("task embedding has %s values beyond the range of real" % what)
        if (v < 0).any():
            raise ValueError("task embedding has negative %s values" % what)
    if not fisher.any():
        raise ValueError("task embedding is all zeros: the probe's gradients vanished on this reader")


def settings_difference(a, b):
    """The first setting (sorted by name) in which two embeddings' settings differ, or None."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return None
