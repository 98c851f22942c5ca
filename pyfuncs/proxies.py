"""Proxy estimators on cached features (seed 000 §3.4 "Proxy Task").

Each proxy maps (train features, train labels, test features, test labels,
params) to a test accuracy in [0, 1]. They run wherever features are: in a
worker for proxy tasks, or inside PostgreSQL.
"""

import numpy as np


def nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine", k=1, block=2048):
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
    """
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    if metric == "cosine":
        train_x = _unit_rows(train_x)
        test_x = _unit_rows(test_x)
    elif metric != "euclidean":
        raise ValueError("unknown nearest-neighbour metric %r" % metric)
    k = int(k)
    if not 1 <= k <= len(train_x):
        raise ValueError("k=%d neighbours asked of %d training samples" % (k, len(train_x)))
    classes, train_class = np.unique(train_y, return_inverse=True)
    train_sq = np.einsum("ij,ij->i", train_x, train_x)
    correct = 0
    for start in range(0, len(test_x), block):
        part = test_x[start:start + block]
        if metric == "cosine":
            dist = 1.0 - part @ train_x.T
        else:
            # ||a-b||^2 without the ||a||^2 term, which is constant per test row
            dist = train_sq[None, :] - 2.0 * (part @ train_x.T)
        if k == 1:
            predicted = train_y[np.argmin(dist, axis=1)]
        else:
            nearest = _k_nearest(dist, k)
            votes = np.zeros((len(part), len(classes)), dtype=np.int64)
            np.add.at(votes, (np.arange(len(part))[:, None], train_class[nearest]), 1)
            predicted = classes[np.argmax(votes, axis=1)]  # argmax: the first, i.e. smallest, of tied classes
        correct += int(np.sum(predicted == test_y[start:start + block]))
    return correct / len(test_x)


def _k_nearest(dist, k):
    """Indices of the k smallest distances per row; equal distances go to the smaller index."""
    nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(dist, nearest, axis=1).max(axis=1, keepdims=True)
    # argpartition picks arbitrarily among samples tied at the k-th distance: redo those rows exactly
    for row in np.nonzero(np.count_nonzero(dist <= kth, axis=1) > k)[0]:
        candidates = np.nonzero(dist[row] <= kth[row, 0])[0]
        nearest[row] = candidates[np.argsort(dist[row, candidates], kind="stable")[:k]]
    return nearest


def _unit_rows(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


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
