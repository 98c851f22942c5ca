"""Proxy estimators on cached features (seed 000 §3.4 "Proxy Task").

Each proxy maps (train features, train labels, test features, test labels,
params) to a test accuracy in [0, 1]. The arrays may be in memory, or
:class:`Blocks` that a worker reads from the feature cache pass by pass: then
`memory_bytes` bounds what a proxy holds (the setting shift.worker_memory_mb),
and the value is the same as in memory for the nearest-neighbour proxies.
"""

import numpy as np


_UNIT_ROUNDOFF = float(np.finfo(np.float32).eps) / 2  # u = 2^-24
_PROBE_ROWS = 128  # test samples of the first block, which decide whether float32 is worth it
# float32 costs about half of float64, and each undecided sample a float64 row more: beyond this
# fraction of undecided samples the float32 pass stops paying for itself
_MOSTLY_UNSURE = 0.3
HELD_BLOCK_ROWS = 4096  # rows compared at a time with training samples held in memory


class Blocks:
    """Features and labels of one reader as numbered blocks, read again on every pass.

    `read(numbers)` yields (features, int64 labels) of the blocks numbered, in that order; a
    worker reads them from the feature cache, one block at a time. There are `count` blocks of at
    most `rows` samples, `n` samples of `dim` features in all. `held`: the blocks are in memory
    already, so a pass costs nothing and what is derived from them may be kept.
    """

    def __init__(self, read, n, dim, count, rows, held=False, read_labels=None, read_all=None):
        self.read, self.n, self.dim, self.count, self.rows, self.held = read, n, dim, count, rows, held
        self.read_labels = read_labels  # all labels without the features, where the source can
        self.read_all = read_all  # (features, labels) of every block at once, where the source reads that faster
        self._arrays = None

    @classmethod
    def of(cls, x, y, rows=HELD_BLOCK_ROWS):
        """Arrays in memory as blocks (views, not copies)."""
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError("features of shape %s do not match %d labels" % (x.shape, len(y)))

        def read(numbers):
            for b in numbers:
                yield x[b * rows:(b + 1) * rows], y[b * rows:(b + 1) * rows]

        blocks = cls(read, len(y), x.shape[1], max(1, -(-len(y) // rows)), rows, held=True)
        blocks._arrays = x, y
        return blocks

    def __iter__(self):
        return self.read(range(self.count))

    def labels(self):
        if self.read_labels is not None:
            return np.asarray(self.read_labels(), np.int64)
        if self._arrays is not None:
            return np.asarray(self._arrays[1], np.int64)
        labels, at = np.empty(self.n, np.int64), 0
        for _, y in self:
            labels[at:at + len(y)] = y
            at += len(y)
        return labels

    def arrays(self, dtype=np.float32, numbers=None):
        """The features of all blocks (or those numbered) in one array of `dtype`, and their labels, filled
        block by block (never two copies)."""
        if numbers is None and self._arrays is not None:
            return np.asarray(self._arrays[0], dtype=dtype), self._arrays[1]
        if numbers is None and self.read_all is not None:
            x, y = self.read_all()
            if x.shape != (self.n, self.dim) or len(y) != self.n:
                raise ValueError("blocks held %s features and %d labels, not %d x %d"
                                 % (x.shape, len(y), self.n, self.dim))
            return np.asarray(x, dtype=dtype), np.asarray(y, np.int64)
        numbers = range(self.count) if numbers is None else numbers
        n = self.n if len(numbers) == self.count else \
            sum(min(self.rows, self.n - b * self.rows) for b in numbers)
        x, y, at = np.empty((n, self.dim), dtype), np.empty(n, np.int64), 0
        for bx, by in self.read(numbers):
            x[at:at + len(by)], y[at:at + len(by)] = bx, by
            at += len(by)
        if at != n:
            raise ValueError("blocks held %d of %d samples" % (at, n))
        return x, y

    def hold(self):
        """The blocks read once and held in memory."""
        return self if self.held else Blocks.of(*self.arrays())


def nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine", k=1, block=1024):
    """k-nearest-neighbour accuracy with cosine dissimilarity or Euclidean (L2) distance.

    Seed 000 §3.4: "the nearest neighbor (NN) accuracy for two different distance
    functions (cosine dissimilarity, and Euclidean, L2 distance)"; seed 002's
    task-aware kNN strategy with k neighbours. Each test sample gets the class
    most of its k nearest training samples have. `block` test samples are
    compared at a time. :func:`nn_accuracy_blocks` is the same over blocks read
    under a memory bound.
    """
    return nn_accuracy_blocks(Blocks.of(train_x, train_y), Blocks.of(test_x, test_y), metric, k, test_rows=block)


def nn_accuracy_blocks(train, test, metric="cosine", k=1, memory_bytes=None, test_rows=1024):
    """nn_accuracy over :class:`Blocks`, holding at most about `memory_bytes` of features and distances.

    Ties: among training samples at the same distance the one that comes first
    is nearer (scikit-learn's brute force does the same for k = 1); when
    several classes get the most votes, the smallest class label wins, as in
    scikit-learn's KNeighborsClassifier with uniform weights.

    Memory: training samples that fit in half the bound are held; otherwise
    each chunk of test samples meets the training blocks in one pass over them,
    keeping its k+1 nearest so far. The test samples come in chunks of as many
    as the rest of the bound holds with their distances to one training block
    (at least one sample). The answer does not depend on the bound.

    Precision: distances are computed in float32, about twice as fast as
    float64 for the matrix product that dominates (features are stored as
    float32 anyway). Their error is bounded a priori (_Train.error_bound); a
    test sample whose k-th and (k+1)-th nearest float32 cannot tell apart is
    decided again in float64, so the neighbours are those of a float64
    computation, ties included. When float32 cannot decide many samples of the
    first chunk (crowded features, as from untrained networks), the rest is
    computed in float64 directly.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError("unknown nearest-neighbour metric %r" % metric)
    k = int(k)
    if not 1 <= k <= train.n:
        raise ValueError("k=%d neighbours asked of %d training samples" % (k, train.n))
    if memory_bytes is not None and not train.held and _held_bytes(train) <= memory_bytes // 2:
        train = train.hold()
        memory_bytes -= _held_bytes(train)
    rows = test_rows if memory_bytes is None else _test_rows(memory_bytes, train, test)
    train = _Train(train, metric)
    use_float32 = k < train.n
    correct = total = 0
    for x, y in _chunks(test, min(rows, _PROBE_ROWS), rows):
        chunk = _Points(x, train.cosine)
        if use_float32:
            nearest, unsure = _nearest32(train, chunk, k)
            if unsure.any():
                nearest[unsure] = _nearest64(train, chunk.rows64(np.flatnonzero(unsure)), k)
            use_float32 = unsure.mean() <= _MOSTLY_UNSURE
        else:
            nearest = _nearest64(train, chunk.rows64(np.arange(len(y))), k)
        correct += int(np.sum(train.vote(nearest) == np.asarray(y)))
        total += len(y)
    return correct / total


def _held_bytes(blocks):
    """Training samples held: the float32 features and their normalised float32 copy."""
    return 8 * blocks.n * blocks.dim


def _test_rows(memory_bytes, train, test):
    """Test samples per chunk: what the bound leaves beside one training block and one test block.

    A training block costs its float32 features, their normalised float32 and transient float64
    copies (the next block's while the last is held); two test blocks are read into a chunk that
    spans them; a test sample its float32 features twice and
    a float64 row while it is prepared, and per training sample of the block a float32 distance
    and its int64 order.
    The training labels are held (8 bytes a sample). An eighth of the bound is left for what this
    does not itemise (candidate lists, the interpreter's own objects)."""
    block = min(train.rows, train.n)
    fixed = (0 if train.held else 24 * block * train.dim) + 8 * min(test.rows, test.n) * test.dim + 8 * train.n
    per_row = 16 * test.dim + 16 * block
    return max(1, (memory_bytes * 7 // 8 - fixed) // per_row)


def _chunks(blocks, first, size):
    """(features, labels) of consecutive samples: `first` of them, then `size` at a time."""
    xs, ys, have, want = [], [], 0, first
    for x, y in blocks:
        at = 0
        while at < len(y):
            take = min(want - have, len(y) - at)
            xs.append(x[at:at + take])
            ys.append(y[at:at + take])
            have, at = have + take, at + take
            if have == want:
                yield (xs[0], ys[0]) if len(xs) == 1 else (np.concatenate(xs), np.concatenate(ys))
                xs, ys, have, want = [], [], 0, size
    if have:
        yield (xs[0], ys[0]) if len(xs) == 1 else (np.concatenate(xs), np.concatenate(ys))


def _nearest32(train, test, k):
    """The k nearest training samples of each test row by float32 distance, and which rows it cannot decide."""
    near, dist = None, None
    for start, block in train.passes():
        d = _distances(train.scale, test.x32, block.x32, block.offset32)
        part = first_k(d, min(k + 1, d.shape[1]))
        near, dist = _merge(near, dist, part + start, np.take_along_axis(d, part, axis=1), k + 1)
        del d, part  # before the next block's distances
    # every sample beyond the k nearest is certainly farther when d_(k+1) - bound > d_(k) + bound
    unsure = dist[:, k] - dist[:, k - 1] <= 2 * train.error_bound(test.norm)
    return near[:, :k], unsure


def _nearest64(train, a64, k):
    """The k nearest training samples of each row of a64 in float64; equal distances go to the smaller index."""
    near, dist = None, None
    for start, block in train.passes():
        d = _distances(train.scale, a64, block.x64(), block.offset64)
        part = first_k(d, k)
        near, dist = _merge(near, dist, part + start, np.take_along_axis(d, part, axis=1), k)
        del d, part
    return near


def _distances(scale, a, b, offset):
    """offset_b - scale * <a, b> for every pair, computed in place (one matrix of the product's precision)."""
    d = a @ b.T
    d *= -scale
    d += offset[None, :]
    return d


def first_k(dist, k):
    """Per row, the k columns of least distance, equal distances to the smaller column."""
    if k >= dist.shape[1]:
        return np.argsort(dist, axis=1, kind="stable")
    if k == 1:
        return np.argmin(dist, axis=1)[:, None]  # argmin: the first of equally near samples
    if k <= _FEW:
        return _first_few(dist, k)
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(dist, nearest, axis=1).max(axis=1, keepdims=True)
    # argpartition picks arbitrarily among samples tied at the k-th distance: redo those rows exactly
    for row in np.nonzero(np.count_nonzero(dist <= kth, axis=1) > k)[0]:
        candidates = np.nonzero(dist[row] <= kth[row, 0])[0]
        nearest[row] = candidates[np.argsort(dist[row, candidates], kind="stable")[:k]]
    return nearest


# Up to this many neighbours, k passes of argmin (the first of equal values) beat one argpartition:
# ~50x for a 500 x 1,000 block and k = 2, the CosineNN case
_FEW = 8


def _first_few(dist, k):
    """first_k by k passes of argmin, each found column's distance then masked; `dist` is overwritten."""
    rows = np.arange(len(dist))
    nearest = np.empty((len(dist), k), np.int64)
    masked = np.empty((len(dist), k), dist.dtype)
    for j in range(k):
        nearest[:, j] = np.argmin(dist, axis=1)
        masked[:, j] = dist[rows, nearest[:, j]]
        dist[rows, nearest[:, j]] = np.inf
    dist[rows[:, None], nearest] = masked  # restored: the caller reads the distances of the columns found
    return nearest


def _merge(near, dist, new_near, new_dist, keep):
    """The `keep` nearest of two candidate lists per row, by distance and then by training index."""
    if near is not None:
        new_near, new_dist = np.concatenate([near, new_near], axis=1), np.concatenate([dist, new_dist], axis=1)
    order = np.lexsort((new_near, new_dist), axis=1)[:, :keep]
    return np.take_along_axis(new_near, order, axis=1), np.take_along_axis(new_dist, order, axis=1)


class _Points:
    """Test samples as both precisions use them (see _Train); rows64 when float32 cannot decide them."""

    def __init__(self, x, cosine):
        self.cosine, x64 = cosine, np.array(x, dtype=np.float64)  # a copy, normalised in place
        norms = np.linalg.norm(x64, axis=1)
        self._raw = x
        if cosine:
            self.inverse_norm = 1.0 / np.where(norms == 0, 1.0, norms)
            x64 *= self.inverse_norm[:, None]
            self.x32 = x64.astype(np.float32)
            self.norm = (norms != 0).astype(np.float64)
        else:
            self.x32 = np.asarray(x, dtype=np.float32)
            self.norm = norms

    def rows64(self, index):
        rows = np.asarray(self._raw[index], dtype=np.float64)
        return rows * self.inverse_norm[index][:, None] if self.cosine else rows


class _Block(_Points):
    """Training samples as both precisions use them: distance(a, b) = offset_b - scale * <a, b>.

    Cosine: rows normalised in float64, offset 1, scale 1. Euclidean: ||a-b||^2
    without the ||a||^2 term, which is constant per test row: offset ||b||^2,
    scale 2.
    """

    def __init__(self, x, cosine):
        super().__init__(x, cosine)
        if cosine:
            self.offset64 = np.ones(len(self.norm))
        else:
            x64 = np.asarray(x, dtype=np.float64)
            self.offset64 = np.einsum("ij,ij->i", x64, x64)
        self.offset32 = self.offset64.astype(np.float32)

    def x64(self):
        return self.rows64(slice(None))


class _Train:
    """Training blocks, their labels and the largest offset and norm, which bound float32's error.

    Held blocks are prepared once and kept; streamed ones again on every pass. The labels and the
    bound come from the first pass."""

    def __init__(self, blocks, metric):
        self.blocks, self.n = blocks, blocks.n
        self.cosine = metric == "cosine"
        self.scale = 1.0 if self.cosine else 2.0
        self.gamma = _gamma(blocks.dim + 6)
        self.labels = None
        self._kept = None
        if blocks.held:
            self._kept = list(self._prepare())

    def _prepare(self):
        first = self.labels is None
        start, labels, offset, norm = 0, np.empty(self.n if first else 0, np.int64), 0.0, 0.0
        for x, y in self.blocks:
            block = _Block(x, self.cosine)
            if first:
                labels[start:start + len(y)] = y
                offset, norm = max(offset, float(np.abs(block.offset64).max())), max(norm, float(block.norm.max()))
            yield start, block
            start += len(y)
        if start != self.n:
            raise ValueError("training blocks held %d of %d samples" % (start, self.n))
        if first:
            self.labels, self.max_offset, self.max_norm = labels, offset, norm

    def passes(self):
        return iter(self._kept) if self._kept is not None else self._prepare()

    def error_bound(self, test_norms):
        """Per test row, a bound on |float32 distance - float64 distance| over all training samples.

        The float32 dot product of d terms errs by at most gamma_d * sum |a_k b_k|
        <= gamma_d ||a|| ||b|| (Higham, Accuracy and Stability, Thm. 3.1 and
        Cauchy-Schwarz); rounding a, b and the offset to float32, the scaling,
        the subtraction, and the comparisons made in float32 add at most six
        roundings more. A factor 2 of slack covers the float64 side's own error.
        """
        return 2.0 * self.gamma * (self.max_offset + self.scale * test_norms * self.max_norm)

    def vote(self, nearest):
        """The predicted labels: the most frequent among the k nearest, the smallest label among tied ones."""
        if nearest.shape[1] == 1:
            return self.labels[nearest[:, 0]]
        classes, index = np.unique(self.labels, return_inverse=True)
        votes = np.zeros((len(nearest), len(classes)), dtype=np.int64)
        np.add.at(votes, (np.arange(len(nearest))[:, None], index[nearest]), 1)
        return classes[np.argmax(votes, axis=1)]  # argmax: the first, i.e. smallest, of tied classes


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
    return linear_accuracy_blocks(Blocks.of(train_x, train_y), Blocks.of(test_x, test_y), lr, l2, batch_size,
                                  epochs, seed)


def linear_accuracy_blocks(train, test, lr=0.01, l2=1e-4, batch_size=64, epochs=10, seed=0, memory_bytes=None):
    """linear_accuracy over :class:`Blocks`, holding at most about `memory_bytes` of features.

    Training samples that fit the bound in float64 are held, and the protocol is
    exactly the in-memory one. Otherwise each epoch goes through the training
    blocks in a random order (from `seed`), as many at a time as fit, and SGD
    makes one pass over the samples of those, reshuffled (scikit-learn's
    partial_fit). This departs from a permutation of the whole training set per
    epoch in which samples share a mini-batch (those of the same blocks); every
    sample is still drawn once per epoch. Test samples are scored block by block.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    clf = linear_classifier(lr, l2, batch_size, epochs, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of epochs is the point
        if memory_bytes is None or train.held or 8 * train.n * train.dim <= memory_bytes:
            clf.fit(*train.arrays(np.float64))
        else:
            _fit_by_blocks(clf, train, memory_bytes, seed, epochs)
    correct = sum(int(np.sum(clf.predict(np.asarray(x, dtype=np.float64)) == np.asarray(y))) for x, y in test)
    return correct / test.n


def _fit_by_blocks(clf, train, memory_bytes, seed, epochs):
    """`epochs` passes of partial_fit over buffers of whole training blocks in a random order."""
    import warnings

    labels = train.labels()
    classes = np.unique(labels)
    # the bound (less an eighth for what is not itemised) holds the labels, the block being read, what
    # SGD allocates beside its data (a float64 copy of each mini-batch, and the weights, their gradients
    # and updates: measured, about 8 of them), and the buffer in float64
    spare = memory_bytes * 7 // 8 - labels.nbytes - 4 * train.rows * train.dim - \
        8 * train.dim * (clf.batch_size + 8 * len(classes))
    del labels
    group = max(1, spare // (8 * train.rows * train.dim))
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(train.count)
        for numbers in np.array_split(order, -(-train.count // group)):
            buffer = None  # the last buffer goes before the next is filled
            buffer = train.arrays(np.float64, sorted(numbers.tolist()))
            with warnings.catch_warnings():
                # a buffer smaller than a mini-batch is one smaller mini-batch, as an epoch's last one is
                warnings.filterwarnings("ignore", message="Got `batch_size` less than 1 or larger than sample size")
                clf.partial_fit(*buffer, classes=classes)


def linear_classifier(lr, l2, batch_size, epochs, seed):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate="constant", learning_rate_init=lr,
                         alpha=l2, batch_size=batch_size, max_iter=epochs, momentum=0.0, nesterovs_momentum=False,
                         shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=epochs + 1,
                         early_stopping=False)


# -- transferability metrics (pyfuncs/transferability) as proxies ----------------------------------
#
# Each is computed on the training reader alone: its features, or for LEEP and NCE its source-task
# logits (OUTPUTS), which the worker reads instead. The test reader a query names is not read.

METRIC_COPIES = 4  # float64 arrays of the features' size a held metric may need at once (SFDA's, the most)
OUTPUTS = {"leep": "logits", "nce": "logits"}
METRICS = ("logme", "hscore", "shrinkage_hscore", "gbc", "transrate", "sfda", "nleep", "knn_loo", "leep", "nce",
           "ncti", "etran")


class OverMemoryBound(ValueError):
    """What a proxy must hold is over shift.worker_memory_mb: a setting to change, not a failure to retry."""


def _metric(name):
    from . import transferability as t
    from .transferability._inputs import softmax

    return {"logme": t.logme, "hscore": t.h_score, "shrinkage_hscore": t.shrinkage_h_score, "gbc": t.gbc,
            "transrate": t.transrate, "sfda": t.sfda, "nleep": t.nleep, "knn_loo": t.knn_accuracy,
            "ncti": t.ncti_terms, "etran": t.etran_terms,
            "leep": lambda logits, y: t.leep(softmax(logits), y),
            "nce": lambda logits, y: t.nce(np.argmax(logits, axis=1), y)}[name]


def _metric_in_memory(name):
    def run(train_x, train_y, test_x, test_y, **params):
        return _metric(name)(train_x, train_y, **params)

    return run


def _metric_over_blocks(name):
    def run(train, test, memory_bytes=None, **params):
        need = METRIC_COPIES * 8 * train.n * train.dim
        if memory_bytes is not None and need > memory_bytes:
            raise OverMemoryBound(
                "%s holds the training features in float64 (%d x %d, %.0f MB with its working copies), over "
                "shift.worker_memory_mb (%.0f MB); raise it, or rank by LogME, which reads them block by block"
                % (name, train.n, train.dim, need / 2 ** 20, memory_bytes / 2 ** 20))
        return _metric(name)(*train.arrays(np.float64), **params)

    return run


def logme_blocks(train, test, memory_bytes=None):
    """LogME from f^T f and f^T Y accumulated block by block: D x D float64 held, whatever N."""
    from .transferability import DegenerateInput
    from .transferability._inputs import target_labels
    from .transferability.logme import from_statistics, statistics

    labels = train.labels()
    present = np.unique(labels)
    classes = int(target_labels(labels).max()) + 1  # checked as the in-memory form: two classes at least
    need = 8 * train.dim * (train.dim + classes) + 8 * len(labels)
    if memory_bytes is not None and need > memory_bytes:
        raise OverMemoryBound("LogME holds a %d x %d float64 matrix (%.0f MB), over shift.worker_memory_mb (%.0f MB)"
                              % (train.dim, train.dim, need / 2 ** 20, memory_bytes / 2 ** 20))
    del labels
    blocks = ((x, np.searchsorted(present, y)) for x, y in train)
    gram, cross, counts, n = statistics(_finite(blocks), classes, train.dim)
    total = cross.sum(axis=1)  # the rows of Y sum to 1: the sum of the features
    covariance = gram / n - np.outer(total, total) / n ** 2
    if n > 1 and np.abs(covariance).max() <= 1e-12 * max(np.abs(gram).max() / n, 1e-300):
        raise DegenerateInput("the features are the same for every sample: nothing tells the classes apart")
    return from_statistics(gram, cross, counts, n)


def _finite(blocks):
    from .transferability import DegenerateInput

    for x, y in blocks:
        if not np.isfinite(x).all():
            raise DegenerateInput("features hold NaN or infinite values")
        yield x, y


PROXIES = {
    "nn": nn_accuracy,
    "linear": linear_accuracy,
    **{name: _metric_in_memory(name) for name in METRICS},
}


PROXIES_OVER_BLOCKS = {
    "nn": nn_accuracy_blocks,
    "linear": linear_accuracy_blocks,
    **{name: _metric_over_blocks(name) for name in METRICS},
    "logme": logme_blocks,
}


def compute(proxy, params, train_x, train_y, test_x, test_y):
    """Run the named proxy with its resolved parameters."""
    return PROXIES[proxy](train_x, train_y, test_x, test_y, **params)


def compute_blocks(proxy, params, train, test, memory_bytes=None):
    """Run the named proxy over :class:`Blocks` under `memory_bytes`."""
    return PROXIES_OVER_BLOCKS[proxy](train, test, memory_bytes=memory_bytes, **params)
