"""Proxy estimators on cached features (seed 000 §3.4 "Proxy Task").

Each proxy maps (train features, train labels, test features, test labels,
params) to a test accuracy in [0, 1]. They run wherever features are: in a
worker for proxy tasks, or inside PostgreSQL.
"""

import numpy as np


def nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine", block=2048):
    """1-nearest-neighbour accuracy with cosine dissimilarity or Euclidean (L2) distance.

    Seed 000 §3.4: "the nearest neighbor (NN) accuracy for two different distance
    functions (cosine dissimilarity, and Euclidean, L2 distance)". Ties in distance
    go to the training sample that comes first, as in scikit-learn's brute force.
    Test samples are processed in blocks so memory stays O(block x n_train).
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
    train_sq = np.einsum("ij,ij->i", train_x, train_x)
    correct = 0
    for start in range(0, len(test_x), block):
        part = test_x[start:start + block]
        if metric == "cosine":
            dist = 1.0 - part @ train_x.T
        else:
            # ||a-b||^2 without the ||a||^2 term, which is constant per test row
            dist = train_sq[None, :] - 2.0 * (part @ train_x.T)
        nearest = np.argmin(dist, axis=1)
        correct += int(np.sum(train_y[nearest] == test_y[start:start + block]))
    return correct / len(test_x)


def _unit_rows(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def linear_accuracy(train_x, train_y, test_x, test_y, lr=0.01, l2=1e-4, batch_size=64, epochs=10, seed=0):
    """Accuracy of a linear classifier trained with mini-batch SGD on frozen features.

    Seed 000 §3.4: "a linear classifier accuracy trained with stochastic gradient
    descent (SGD) and arbitrary hyper-parameters, such as learning rate, L2
    regularizer, mini-batch size and number of epochs". Logistic loss, constant
    learning rate `lr`, L2 strength `l2`; each epoch visits the training samples in
    a fresh permutation drawn from `seed`, in mini-batches of `batch_size`
    (scikit-learn's SGDClassifier.partial_fit, one-vs-rest for several classes).
    """
    from sklearn.linear_model import SGDClassifier

    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    train_y = np.asarray(train_y)
    classes = np.unique(np.concatenate([train_y, np.asarray(test_y)]))
    clf = SGDClassifier(loss="log_loss", alpha=l2, learning_rate="constant", eta0=lr,
                        shuffle=False, random_state=seed)
    rng = np.random.default_rng(seed)
    n = len(train_x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            clf.partial_fit(train_x[idx], train_y[idx], classes=classes)
    return float(np.mean(clf.predict(test_x) == np.asarray(test_y)))


PROXIES = {
    "nn": nn_accuracy,
    "linear": linear_accuracy,
}


def compute(proxy, params, train_x, train_y, test_x, test_y):
    """Run the named proxy with its resolved parameters."""
    return PROXIES[proxy](train_x, train_y, test_x, test_y, **params)
