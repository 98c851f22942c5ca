"""Proxies of seed 000 §3.4 against scikit-learn and hand-worked cases."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from pyfuncs import proxies


@pytest.fixture
def blobs():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 16)) * 3
    y = rng.integers(0, 4, size=400)
    x = centers[y] + rng.normal(size=(400, 16))
    return x[:300], y[:300], x[300:], y[300:]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nn_matches_scikit_learn(blobs, metric):
    train_x, train_y, test_x, test_y = blobs
    want = KNeighborsClassifier(1, metric=metric, algorithm="brute").fit(train_x, train_y).score(test_x, test_y)
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric, block=37) == pytest.approx(want)


def test_nn_hand_worked_case_tells_cosine_from_euclidean():
    # test point (10, 0): Euclidean-nearest is (9, 5) (class 1), cosine-nearest is (1, 0) (class 0)
    train_x = np.array([[1.0, 0.0], [9.0, 5.0]])
    train_y = np.array([0, 1])
    test_x, test_y = np.array([[10.0, 0.0]]), np.array([0])
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine") == 1.0
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric="euclidean") == 0.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [3, 5, 8])
def test_knn_majority_vote_matches_scikit_learn(blobs, metric, k):
    train_x, train_y, test_x, test_y = blobs
    rng = np.random.default_rng(k)
    noisy_y = np.where(rng.random(len(train_y)) < 0.3, rng.integers(0, 4, len(train_y)), train_y)  # votes that split
    want = KNeighborsClassifier(k, metric=metric, algorithm="brute").fit(train_x, noisy_y).score(test_x, test_y)
    got = proxies.nn_accuracy(train_x, noisy_y, test_x, test_y, metric=metric, k=k, block=29)
    assert got == pytest.approx(want)


def test_knn_tie_rules_hand_worked():
    # test point 0 on a line; training points at -1 (class 2), +1 (class 1), +2 (class 1), -2 (class 0), 3 (class 0)
    train_x = np.array([[-1.0], [1.0], [2.0], [-2.0], [3.0]])
    train_y = np.array([2, 1, 1, 0, 0])
    test_x = np.array([[0.0]])
    # k=2: -1 and +1 are both at distance 1, one vote each: the smaller label, 1, wins
    assert proxies.nn_accuracy(train_x, train_y, test_x, np.array([1]), metric="euclidean", k=2) == 1.0
    # k=3: -1, +1, then -2 and +2 tie at distance 2; the first in training order (+2, class 1) is nearer
    assert proxies.nn_accuracy(train_x, train_y, test_x, np.array([1]), metric="euclidean", k=3) == 1.0
    # k=1 keeps the first of equally near samples, as before: -1, class 2
    assert proxies.nn_accuracy(train_x, train_y, test_x, np.array([2]), metric="euclidean", k=1) == 1.0


def test_knn_k_larger_than_the_training_set(blobs):
    train_x, train_y, test_x, test_y = blobs
    with pytest.raises(ValueError, match="k=301"):
        proxies.nn_accuracy(train_x, train_y, test_x, test_y, k=301)


def test_nn_rejects_unknown_metric(blobs):
    with pytest.raises(ValueError, match="manhattan"):
        proxies.nn_accuracy(*blobs, metric="manhattan")


def sgd_reference(train_x, train_y, test_x, test_y, lr, l2, batch_size, epochs, seed):
    """Softmax regression by mini-batch SGD, straight from scikit-learn."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate="constant", learning_rate_init=lr,
                        alpha=l2, batch_size=batch_size, max_iter=epochs, momentum=0.0, nesterovs_momentum=False,
                        shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=epochs + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(train_x, train_y)
    assert clf.n_iter_ == epochs and clf.coefs_[0].shape == (train_x.shape[1], len(np.unique(train_y)))
    return clf.score(test_x, test_y)


@pytest.fixture
def hard():
    """Overlapping classes, so that accuracy moves with every hyper-parameter."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, size=500)
    x = rng.normal(size=(5, 32))[y] * 0.25 + rng.normal(size=(500, 32))
    return x[:400], y[:400], x[400:], y[400:]


CONFIGS = [dict(lr=0.05, l2=1e-3, batch_size=16, epochs=4, seed=7),
           dict(lr=0.05, l2=1e-3, batch_size=200, epochs=4, seed=7),  # only the mini-batch size differs
           dict(lr=0.5, l2=1e-4, batch_size=64, epochs=1, seed=1),
           dict(lr=0.01, l2=0.1, batch_size=8, epochs=2, seed=3)]


def test_linear_is_the_documented_sgd_recipe(hard):
    got = [proxies.linear_accuracy(*hard, **c) for c in CONFIGS]
    assert got == pytest.approx([sgd_reference(*hard, **c) for c in CONFIGS])
    assert len(set(got)) == len(got)  # the configurations really differ, so the comparison can fail


def test_compute_dispatches_by_proxy_name(blobs):
    train_x, train_y, test_x, test_y = blobs
    assert proxies.compute("nn", {"metric": "cosine"}, train_x, train_y, test_x, test_y) == \
        proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric="cosine")


def float64_neighbours_accuracy(train_x, train_y, test_x, test_y, metric, k):
    """Brute-force kNN entirely in float64, ties to the first training sample and the smallest label."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    if metric == "cosine":
        train_x = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
        test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
        dist = 1.0 - test_x @ train_x.T
    else:
        dist = np.einsum("ij,ij->i", train_x, train_x)[None, :] - 2.0 * test_x @ train_x.T
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    classes = np.unique(train_y)
    votes = np.stack([(train_y[nearest] == c).sum(axis=1) for c in classes], axis=1)
    return float(np.mean(classes[np.argmax(votes, axis=1)] == test_y))


def near_ties(gap, n=200, d=64, seed=0):
    """Per test sample, two training samples along the same direction at distance 1 + gap (label 0, first
    in training order) and 1 (label 1), far from the origin so that float32 cannot see a gap of 1e-6."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n, d)) * 100
    step = rng.normal(size=(n, d))
    step /= np.linalg.norm(step, axis=1, keepdims=True)
    train_x = np.concatenate([centre + step * (1 + gap), centre + step])
    train_y = np.r_[np.zeros(n, int), np.ones(n, int)]
    return train_x, train_y, centre, np.ones(n, int)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nn_decides_what_float32_cannot_in_float64(metric):
    train_x, train_y, test_x, test_y = near_ties(gap=1e-6)
    a, b = test_x.astype(np.float32), train_x.astype(np.float32)
    if metric == "cosine":
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
        dist = 1 - a @ b.T
    else:
        dist = np.einsum("ij,ij->i", b, b)[None, :] - 2 * a @ b.T
    assert np.mean(train_y[np.argmin(dist, axis=1)] == test_y) < 0.1  # float32 alone mostly gets it wrong
    assert float64_neighbours_accuracy(train_x, train_y, test_x, test_y, metric, 1) == 1.0
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric) == 1.0
    # k = 3: the two near samples plus the nearest other centre; the vote is 1 to 2 or 2 to 1 by a hair
    want = float64_neighbours_accuracy(train_x, train_y, test_x, test_y, metric, 3)
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric, k=3) == want


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nn_exact_ties_go_to_the_first_training_sample(metric):
    train_x, train_y, test_x, test_y = near_ties(gap=0.0)  # duplicates: label 0 comes first
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric) == 0.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 4])
def test_nn_matches_float64_on_crowded_float32_features(metric, k):
    # many samples close together, stored as float32 as the feature cache stores them
    rng = np.random.default_rng(k)
    y = rng.integers(0, 3, size=3000)
    x = (rng.normal(size=(3, 48))[y] * 0.05 + rng.normal(size=(3000, 48)) * 0.01 + 5).astype(np.float32)
    got = proxies.nn_accuracy(x[:2500], y[:2500], x[2500:], y[2500:], metric=metric, k=k, block=128)
    assert got == float64_neighbours_accuracy(x[:2500], y[:2500], x[2500:], y[2500:], metric, k)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nn_float32_decides_most_rows_and_float64_the_rest(metric, monkeypatch):
    # 40 near ties among 400 samples float32 decides alone: the ties must be redone, and only they
    train_x, train_y, test_x, test_y = near_ties(gap=1e-6, n=40)
    rng = np.random.default_rng(9)
    clear = rng.normal(size=(360, train_x.shape[1])) * 100
    train_x = np.concatenate([train_x, clear + 0.5])
    train_y = np.r_[train_y, np.full(360, 2)]
    order = rng.permutation(400)
    test_x, test_y = np.concatenate([test_x, clear])[order], np.r_[test_y, np.full(360, 2)][order]
    redone = []
    exact = proxies._nearest64
    monkeypatch.setattr(proxies, "_nearest64", lambda train, a64, k: redone.append(len(a64)) or exact(train, a64, k))
    assert proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric, block=100) == 1.0
    assert sum(redone) == 40  # float32 stayed on, and decided the 360 clear samples itself
