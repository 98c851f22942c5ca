"""Proxy estimators on cached features (seed 000 §3.4 "Proxy Task").

Each proxy maps (train features, train labels, test features, test labels,
params) to a test accuracy in [0, 1]. They run wherever features are: in a
worker for proxy tasks, or inside PostgreSQL.
"""

import numpy as np


_UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2  # u = 2^-24
_PROBE_ROWS = 128  # test samples of the first block, which decide whether float32 is worth it
# float32 costs about half of float64, and each undecided sample a float64 row more: beyond this
# fraction of undecided samples the float32 pass stops paying for itself
_MOSTLY_UNSURE = 0.3


def nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine", k=1, block=1024):
    """k-nearest-neighbour accuracy with cosine dissimilarity or Euclidean (L2) distance.

    Seed 000 §3.4: "the nearest neighbor (NN) accuracy for two different distance
    functions (cosine dissimilarity, and Euclidean, L2 distance)"; seed 002's
    task-aware kNN strategy with k neighbours. Each test sample gets the class
    most of its k nearest training samples have.

    Ties: among training samples at the same distance the one that comes first
    is nearer (scikit-learn's brute force does the same for k = 1); when
    several classes get the most votes, the smallest class label wins, as in
    scikit-learn's KNeighborsClassifier with uniform weights. Test samples are
    processed in blocks so memory stays O(block x n_train).

    Precision: distances are computed in float32, about twice as fast as
    float64 for the matrix product that dominates (features are stored as
    float32 anyway). Their error is bounded a priori (_Points.error_bound); a
    test sample whose k-th and (k+1)-th nearest float32 cannot tell apart is
    decided again in float64, so the neighbours are those of a float64
    computation, ties included. When float32 cannot decide many samples of the
    first block (crowded features, as from untrained networks), the rest is
    computed in float64 directly.
    """
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    if metric not in ("cosine", "euclidean"):
        raise ValueError("unknown nearest-neighbour metric %r" % metric)
    k = int(k)
    if not 1 <= k <= len(train_y):
        raise ValueError("k=%d neighbours asked of %d training samples" % (k, len(train_y)))
    classes, train_class = np.unique(train_y, return_inverse=True)
    train, test = _Points(train_x, metric), _Points(test_x, metric)
    use_float32 = k < len(train_y)
    correct, start, size = 0, 0, min(block, _PROBE_ROWS)
    while start < len(test_y):
        rows = np.arange(start, min(start + size, len(test_y)))
        if use_float32:
            nearest, unsure = _nearest32(train, test, rows, k)
            if unsure.any():
                nearest[unsure] = _nearest64(train, test.rows64(rows[unsure]), k)
            use_float32 = unsure.mean() <= _MOSTLY_UNSURE
        else:
            nearest = _nearest64(train, test.rows64(rows), k)
        if k == 1:
            predicted = train_y[nearest[:, 0]]
        else:
            votes = np.zeros((len(nearest), len(classes)), dtype=np.int64)
            np.add.at(votes, (np.arange(len(nearest))[:, None], train_class[nearest]), 1)
            predicted = classes[np.argmax(votes, axis=1)]  # argmax: the first, i.e. smallest, of tied classes
        correct += int(np.sum(predicted == test_y[rows]))
        start, size = start + len(rows), block
    return correct / len(test_y)


def _nearest32(train, test, rows, k):
    """The k nearest training samples of each test row by float32 distance, and which rows it cannot decide."""
    dist = train.offset32[None, :] - train.scale * (test.x32[rows] @ train.x32.T)
    order = np.argpartition(dist, k, axis=1)[:, :k + 1]
    kth = np.take_along_axis(dist, order, axis=1)
    first = np.argsort(kth, axis=1)  # the k nearest by float32, then the (k+1)-th
    order = np.take_along_axis(order, first, axis=1)
    kth = np.take_along_axis(kth, first, axis=1)
    # every sample beyond the k nearest is certainly farther when d_(k+1) - bound > d_(k) + bound
    unsure = kth[:, k] - kth[:, k - 1] <= 2 * train.error_bound(test.norm[rows])
    return order[:, :k], unsure


def _nearest64(train, a64, k):
    """The k nearest training samples of each row of a64 in float64; equal distances go to the smaller index."""
    dist = train.offset64[None, :] - train.scale * (a64 @ train.x64.T)
    if k == 1:
        return np.argmin(dist, axis=1)[:, None]  # argmin: the first of equally near samples
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(dist, nearest, axis=1).max(axis=1, keepdims=True)
    # argpartition picks arbitrarily among samples tied at the k-th distance: redo those rows exactly
    for row in np.nonzero(np.count_nonzero(dist <= kth, axis=1) > k)[0]:
        candidates = np.nonzero(dist[row] <= kth[row, 0])[0]
        nearest[row] = candidates[np.argsort(dist[row, candidates], kind="stable")[:k]]
    return nearest


class _Points:
    """Samples as both precisions use them: distance(a, b) = offset_b - scale * <a, b>.

    Cosine: rows normalised in float64, offset 1, scale 1. Euclidean: ||a-b||^2
    without the ||a||^2 term, which is constant per test row: offset ||b||^2,
    scale 2.
    """

    def __init__(self, x, metric):
        self.cosine = metric == "cosine"
        x64 = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x64, axis=1)
        if self.cosine:
            self.inverse_norm = 1.0 / np.where(norms == 0, 1.0, norms)
            self.x32 = (x64 * self.inverse_norm[:, None]).astype(np.float32)
            self.norm = (norms != 0).astype(np.float64)
            self.offset64, self.scale = np.ones(len(x64)), 1.0
        else:
            self.x32 = x64.astype(np.float32)
            self.norm = norms
            self.offset64, self.scale = np.einsum("ij,ij->i", x64, x64), 2.0
        self.offset32 = self.offset64.astype(np.float32)
        self.gamma = _gamma(x64.shape[1] + 6)
        self._raw64, self._x64 = x64, None

    @property
    def x64(self):
        """All rows in float64, normalised when first needed (when float32 falls short)."""
        if self._x64 is None:
            self._x64 = self._raw64 * self.inverse_norm[:, None] if self.cosine else self._raw64
        return self._x64

    def rows64(self, index):
        return self._raw64[index] * self.inverse_norm[index][:, None] if self.cosine else self._raw64[index]

    def error_bound(self, test_norms):
        """Per test row, a bound on |float32 distance - float64 distance| over all training samples.

        The float32 dot product of d terms errs by at most gamma_d * sum |a_k b_k|
        <= gamma_d ||a|| ||b|| (Higham, Accuracy and Stability, Thm. 3.1 and
        Cauchy-Schwarz); rounding a, b and the offset to float32, the scaling,
        the subtraction, and the comparisons made in float32 add at most six
        roundings more. A factor 2 of slack covers the float64 side's own error.
        """
        return 2.0 * self.gamma * (np.abs(self.offset64).max() + self.scale * test_norms * self.norm.max())


def _gamma(n):
    """gamma_n = n u / (1 - n u) for float32's unit roundoff u."""
    nu = n * _UNIT_ROUNDOFF
    return nu / (1.0 - nu)


def linear_accuracy(train_x, train_y, test_x, test_y, lr=0.01, l2=1e-4, batch_size=64, epochs=10, seed=0):
    """Accuracy of a linear classifier trained with mini-batch SGD on frozen features.

    Seed 000 §3.4: "a linear classifier accuracy trained with stochastic gradient
    descent (SGD) and arbitrary hyper-parameters, such as learning rate, L2
    regularizer, mini-batch size and number of epochs". The classifier is a softmax
    (multinomial logistic) layer: scikit-learn's MLPClassifier with no hidden layer,
    plain SGD (no momentum) at constant learning rate `lr`, L2 strength `l2`
    (scikit-learn's alpha), mini-batches of `batch_size`, exactly `epochs` passes
    (no early stop), samples reshuffled every epoch and weights initialised from `seed`.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    clf = linear_classifier(lr, l2, batch_size, epochs, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of epochs is the point
        clf.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y))
    return float(clf.score(np.asarray(test_x, dtype=np.float64), np.asarray(test_y)))


def linear_classifier(lr, l2, batch_size, epochs, seed):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate="constant", learning_rate_init=lr,
                         alpha=l2, batch_size=batch_size, max_iter=epochs, momentum=0.0, nesterovs_momentum=False,
                         shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=epochs + 1,
                         early_stopping=False)


PROXIES = {
    "nn": nn_accuracy,
    "linear": linear_accuracy,
}


def compute(proxy, params, train_x, train_y, test_x, test_y):
    """Run the named proxy with its resolved parameters."""
    return PROXIES[proxy](train_x, train_y, test_x, test_y, **params)
