"""Proxies over blocks read under a memory bound: the same answers as in memory, and the bound holds."""

import tracemalloc

import numpy as np
import pytest

from pyfuncs import proxies
from tests.unit.test_proxies import float64_neighbours_accuracy, near_ties

MB = 2 ** 20
ROWS = 64  # samples per block, as a reader's block_size


def streamed(x, y, rows=ROWS):
    """Blocks that come as a worker reads them: each block a new array, made when it is read."""
    x, y = np.asarray(x, np.float32), np.asarray(y)

    def read(numbers):
        for b in numbers:
            yield x[b * rows:(b + 1) * rows].copy(), y[b * rows:(b + 1) * rows].copy()

    return proxies.Blocks(read, len(y), x.shape[1], -(-len(y) // rows), rows)


def clustered(n, d=256, classes=10, seed=0):
    """Samples of ten classes around the same centres whatever the seed, overlapping enough that neighbours
    and classifiers err."""
    centres = np.random.default_rng(0).normal(size=(classes, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = centres[y] * 0.3 + rng.normal(size=(n, d))
    return x.astype(np.float32), y


def peak_of(run):
    """The value of run() and the peak of what it allocates, after an untraced run: what libraries import
    and allocate once, on first use, is not held features."""
    run()
    tracemalloc.start()
    try:
        value = run()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def large():
    """16,000 training samples of 256 float32 features: 16 MB of features, sixteen times the bound."""
    train_x, train_y = clustered(16_000, seed=1)
    test_x, test_y = clustered(1_500, seed=2)
    return train_x, train_y, test_x, test_y


@pytest.mark.parametrize("metric,k", [("cosine", 1), ("euclidean", 5)])
def test_nn_over_a_reader_fifteen_times_the_bound_stays_under_it_with_the_in_memory_answer(large, metric, k):
    train_x, train_y, test_x, test_y = large
    memory = MB
    assert train_x.nbytes >= 15 * memory
    value, peak = peak_of(lambda: proxies.nn_accuracy_blocks(streamed(train_x, train_y), streamed(test_x, test_y),
                                                              metric, k, memory_bytes=memory))
    print("nn %s k=%d: peak %.2f MB under a bound of %.2f MB" % (metric, k, peak / MB, memory / MB))
    assert peak < memory
    assert value == proxies.nn_accuracy(train_x, train_y, test_x, test_y, metric=metric, k=k)
    assert 0.3 < value < 1.0  # a value that tells a wrong neighbour from a right one


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 3])
def test_nn_streamed_decides_near_ties_across_blocks_as_float64_does(metric, k):
    """Near ties float32 cannot see, and exact duplicates, split over blocks of 16 samples."""
    train_x, train_y, test_x, test_y = near_ties(gap=1e-6, n=60)
    twins_x, twins_y, *_ = near_ties(gap=0.0, n=60, seed=1)
    train_x, train_y = np.concatenate([train_x, twins_x]), np.r_[train_y, twins_y]
    want = float64_neighbours_accuracy(train_x, train_y, test_x, test_y, metric, k)

    def blocks(x, y):
        def read(numbers):
            for b in numbers:
                yield x[b * 16:(b + 1) * 16].copy(), y[b * 16:(b + 1) * 16]
        return proxies.Blocks(read, len(y), x.shape[1], -(-len(y) // 16), 16)

    got = proxies.nn_accuracy_blocks(blocks(train_x, train_y), blocks(test_x, test_y), metric, k,
                                     memory_bytes=64 * 1024)
    assert got == want


def test_training_samples_that_fit_half_the_bound_are_read_once(large):
    train_x, train_y, test_x, test_y = large
    train = streamed(train_x[:2000], train_y[:2000])
    passes = []
    read = train.read
    train.read = lambda numbers: passes.append(1) or read(numbers)
    value = proxies.nn_accuracy_blocks(train, streamed(test_x, test_y), "cosine", 1, memory_bytes=12 * MB)
    assert passes == [1]
    assert value == proxies.nn_accuracy(train_x[:2000], train_y[:2000], test_x, test_y)
    train = streamed(train_x[:2000], train_y[:2000])
    train.read = lambda numbers: passes.append(1) or read(numbers)
    passes.clear()
    proxies.nn_accuracy_blocks(train, streamed(test_x, test_y), "cosine", 1, memory_bytes=MB)
    assert len(passes) > 1  # under a bound it does not fit, each chunk of test samples passes over it


def test_linear_over_a_reader_fifteen_times_the_bound_stays_under_it(large):
    train_x, train_y, test_x, test_y = large
    params = dict(lr=0.01, l2=1e-4, batch_size=64, epochs=2, seed=0)
    memory = MB
    value, peak = peak_of(lambda: proxies.linear_accuracy_blocks(streamed(train_x, train_y), streamed(test_x, test_y),
                                                                  memory_bytes=memory, **params))
    print("linear: peak %.2f MB under a bound of %.2f MB" % (peak / MB, memory / MB))
    assert peak < memory
    held = proxies.linear_accuracy(train_x, train_y, test_x, test_y, **params)
    assert value == pytest.approx(held, abs=0.03)  # other mini-batches, the same classifier family
    assert value > 0.5  # ten classes: chance is 0.1


def test_linear_that_fits_the_bound_is_the_in_memory_protocol(large):
    train_x, train_y, test_x, test_y = large
    params = dict(lr=0.05, l2=1e-3, batch_size=32, epochs=2, seed=3)
    got = proxies.linear_accuracy_blocks(streamed(train_x[:3000], train_y[:3000]), streamed(test_x, test_y),
                                         memory_bytes=8 * MB, **params)
    assert got == proxies.linear_accuracy(train_x[:3000], train_y[:3000], test_x, test_y, **params)
