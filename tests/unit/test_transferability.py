"""The transferability metrics against the values of their reference implementations, and their properties.

tests/reference/transferability holds 25 synthetic cases (regenerated here, bit for bit, by its
make_data.py) and the values the original public implementations give on them; the README there
and each metric's docstring say which implementation and call.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pyfuncs import transferability as T
from pyfuncs.transferability import etran, ncti

REFERENCE = Path(__file__).resolve().parent.parent / "reference" / "transferability"
VALUES = json.loads((REFERENCE / "reference_values.json").read_text())
CASES = [c["file"] for c in VALUES["cases"]]
TOLERANCE = 1e-9  # relative: the references move by up to 7e-13 under a column or row permutation


@pytest.fixture(scope="module")
def cases():
    """{file: {f, y, theta}} made by make_data.py, checked against the digests of the JSON."""
    spec = importlib.util.spec_from_file_location("make_data", REFERENCE / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    out = {}
    for case in VALUES["cases"]:
        f, y, theta = make_data.make_case(case["seed"], case["N"], case["D"], case["C"], case["Cs"])
        arrays = {"f": f, "y": y, "theta": theta}
        assert {k: make_data.digest(a) for k, a in arrays.items()} == case["sha256"], case["file"]
        out[case["file"]] = arrays
    return out


# reference key -> shift's value on a case
METRICS = {
    "thuml_LogME.LogME_pr24": lambda c: T.logme(c["f"], c["y"]),
    "thuml_LogME.LEEP": lambda c: T.leep(c["theta"], c["y"]),
    "tllib.log_expected_empirical_prediction": lambda c: T.leep(c["theta"], c["y"]),
    "thuml_LogME.NCE": lambda c: T.nce(np.argmax(c["theta"], axis=1), c["y"]),
    "tllib.negative_conditional_entropy": lambda c: T.nce(np.argmax(c["theta"], axis=1), c["y"]),
    "tllib.h_score": lambda c: T.h_score(c["f"], c["y"]),
    "tllib.regularized_h_score": lambda c: T.shrinkage_h_score(c["f"], c["y"]),
    "tllib.transrate": lambda c: T.transrate(c["f"], c["y"]),
    "SFDA.SFDA_Score": lambda c: T.sfda(c["f"], c["y"]),
    "SFDA.NLEEP": lambda c: T.nleep(c["f"], c["y"], component_ratio=5, seed=0),
    "NCTI.NCTI_Score.seli": lambda c: T.ncti_terms(c["f"], c["y"])["seli"],
    "NCTI.NCTI_Score.ncc": lambda c: T.ncti_terms(c["f"], c["y"])["ncc"],
    "NCTI.NCTI_Score.vc": lambda c: T.ncti_terms(c["f"], c["y"])["vc"],
    "ETran.LDA_Score": lambda c: T.etran_terms(c["f"], c["y"])["lda"],
    "ETran.Energy_Score": lambda c: T.etran_terms(c["f"], c["y"])["energy"],
}


@pytest.mark.parametrize("key", sorted(METRICS))
def test_every_metric_matches_its_reference(cases, key):
    reference = VALUES["metrics"][key]["values"]
    compared = 0
    for name in CASES:
        if reference[name] is None:
            continue  # the reference fails there (see the tests of the defined values below)
        got = METRICS[key](cases[name])
        assert got == pytest.approx(reference[name], rel=TOLERANCE, abs=1e-12), name
        compared += 1
    assert compared >= 15


def test_logme_fixes_the_reference_when_n_is_below_d(cases):
    """thuml/LogME's default sums log|A| over the N non-zero eigenvalues only (issue #23): for N < D its
    value is wrong; shift's equals the fixed one (PR #24) and the ICML algorithm, and differs from it."""
    main = VALUES["metrics"]["thuml_LogME.LogME"]["values"]
    icml = VALUES["metrics"]["thuml_LogME.LogME_icml"]["values"]
    small = [name for name in CASES if "_N100_D128_" in name]
    assert len(small) == 5
    for name in small:
        value = T.logme(cases[name]["f"], cases[name]["y"])
        assert value == pytest.approx(icml[name], rel=1e-3)  # another algorithm: ~1e-4 apart
        assert abs(value - main[name]) > 0.1
    for name in set(CASES) - set(small):  # N >= D: the same as the reference's default
        assert T.logme(cases[name]["f"], cases[name]["y"]) == pytest.approx(main[name], rel=TOLERANCE)


def test_logme_from_blocks_equals_logme_held(cases):
    from pyfuncs.transferability.logme import from_statistics, statistics

    case = cases["case_s3_N500_D64_C10_Cs20.npz"]
    f, y = case["f"], case["y"]
    blocks = [(f[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)]
    assert from_statistics(*statistics(blocks, 10, 64)) == pytest.approx(T.logme(f, y), rel=1e-12)


def test_logme_as_a_proxy_reads_its_features_block_by_block(cases):
    from pyfuncs import proxies

    for name in ("case_s1_N100_D128_C4_Cs8.npz", "case_s4_N500_D64_C10_Cs20.npz"):
        f, y = cases[name]["f"].astype(np.float32), cases[name]["y"] + 3  # labels as a reader numbers them
        streamed = proxies.logme_blocks(proxies.Blocks.of(f, y, rows=32), None, memory_bytes=2 ** 20)
        assert streamed == pytest.approx(T.logme(f, y), rel=1e-10)
    with pytest.raises(proxies.OverMemoryBound, match="shift.worker_memory_mb"):
        proxies.logme_blocks(proxies.Blocks.of(f, y, rows=32), None, memory_bytes=8 * 64 * 64)


def test_defined_values_where_the_reference_fails(cases):
    # ETran's energy averages the floor(5N/1000) lowest energies: none for N = 100 (NaN in the reference);
    # shift keeps the lowest one
    case = cases["case_s0_N100_D128_C4_Cs8.npz"]
    lowest = min(np.log(np.exp(row - row.max()).sum()) + row.max() for row in case["f"])
    assert T.etran_terms(case["f"], case["y"])["energy"] == pytest.approx(lowest, rel=1e-12)
    # NCTI's PCA to 64 components fails for D = 32 in the reference; shift keeps all 32
    terms = T.ncti_terms(cases["case_s4_N300_D32_C5_Cs10.npz"]["f"], cases["case_s4_N300_D32_C5_Cs10.npz"]["y"])
    assert all(np.isfinite(v) for v in terms.values()) and 0 < terms["ncc"] <= 1


def test_ncti_is_the_same_on_every_run_beyond_500_samples():
    """Where the reference's PCA would switch to an unseeded randomised SVD, shift's stays exact."""
    separable, _, y = separable_and_random(seed=2, n=640, d=128)
    assert T.ncti_terms(separable, y) == T.ncti_terms(separable, y)


def separable_and_random(seed=0, n=240, d=16, classes=4):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(0, 4, (classes, d))
    return centres[y] + rng.normal(0, 0.5, (n, d)), rng.normal(0, 1, (n, d)), y


FEATURE_METRICS = {
    "logme": T.logme, "h_score": T.h_score, "shrinkage_h_score": T.shrinkage_h_score, "transrate": T.transrate,
    "sfda": T.sfda, "nleep": T.nleep, "gbc": T.gbc, "gbc_spherical": lambda f, y: T.gbc(f, y, "spherical"),
    "knn": T.knn_accuracy, "ncti_ncc": lambda f, y: T.ncti_terms(f, y)["ncc"],
    "etran_lda": lambda f, y: T.etran_terms(f, y)["lda"],
}


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
def test_separable_features_score_better_than_random_ones(name):
    separable, noise, y = separable_and_random()
    assert FEATURE_METRICS[name](separable, y) > FEATURE_METRICS[name](noise, y)


@pytest.mark.parametrize("name", sorted(set(FEATURE_METRICS) - {"nleep"}))
def test_renaming_the_classes_changes_nothing(name):
    separable, _, y = separable_and_random(seed=1)
    renamed = np.array([7, 3, 11, 5])[y]  # another order, labels not 0..C-1
    assert FEATURE_METRICS[name](separable, renamed) == pytest.approx(FEATURE_METRICS[name](separable, y), rel=1e-9)


def test_invariances_the_papers_state(cases):
    case = cases["case_s2_N500_D64_C10_Cs20.npz"]
    f, y, theta = case["f"], case["y"], case["theta"]
    # the H-score is invariant to an invertible linear map of the features, so to scaling them
    assert T.h_score(3.5 * f, y) == pytest.approx(T.h_score(f, y), rel=1e-9)
    # LEEP and NCE do not depend on how the source classes are numbered
    perm = np.random.default_rng(0).permutation(theta.shape[1])
    assert T.leep(theta[:, perm], y) == pytest.approx(T.leep(theta, y), rel=1e-12)
    assert T.nce(perm[np.argmax(theta, axis=1)], y) == pytest.approx(T.nce(np.argmax(theta, axis=1), y), rel=1e-12)
    # cosine k-NN does not see a sample's length
    lengths = np.random.default_rng(1).uniform(0.5, 4, (len(y), 1))
    assert T.knn_accuracy(f * lengths, y) == T.knn_accuracy(f, y)


def test_knn_leaves_each_sample_out():
    f = np.array([[0.0, 1], [0, 1.1], [5, 0], [5.2, 0]])
    # each sample's one nearest other sample has its class: all right; with itself counted it would be too,
    # so flip a label: the sample is then outvoted by its neighbour, never by itself
    assert T.knn_accuracy(f, [0, 0, 1, 1], k=1, metric="euclidean") == 1.0
    assert T.knn_accuracy(f, [0, 1, 1, 1], k=1, metric="euclidean") == 0.5


def test_pool_relative_scores_combine_raw_terms():
    terms = [{"seli": 1.0, "ncc": 0.5, "vc": 2.0}, {"seli": 3.0, "ncc": 0.7, "vc": 1.0},
             {"seli": 2.0, "ncc": 0.9, "vc": 3.0}]
    assert ncti.combine(terms) == pytest.approx([0.0 + 0.0 - 0.5, 1.0 + 0.5 - 0.0, 0.5 + 1.0 - 1.0])
    assert etran.combine([{"lda": 0.2, "energy": 5.0}, {"lda": 0.6, "energy": 1.0}]) == pytest.approx([0.15, 0.85])
    assert ncti.combine(terms[:1]) == [0.0]  # one model: nothing to normalise against


@pytest.mark.parametrize("name", sorted(FEATURE_METRICS))
def test_degenerate_input_is_a_clear_error(name):
    _, noise, y = separable_and_random()
    with pytest.raises(T.DegenerateInput, match="class"):
        FEATURE_METRICS[name](noise, np.zeros(len(y), np.int64))
    with pytest.raises(T.DegenerateInput, match="same for every sample"):
        FEATURE_METRICS[name](np.ones_like(noise), y)
    bad = noise.copy()
    bad[3, 2] = np.nan
    with pytest.raises(T.DegenerateInput, match="NaN"):
        FEATURE_METRICS[name](bad, y)


def test_source_outputs_are_checked():
    with pytest.raises(T.DegenerateInput, match="sum to 1"):
        T.leep(np.full((4, 3), 0.5), [0, 1, 0, 1])
    with pytest.raises(T.DegenerateInput, match="do not match"):
        T.leep(np.full((3, 2), 0.5), [0, 1, 0, 1])
    with pytest.raises(T.DegenerateInput, match="non-negative integers"):
        T.nce([0, -1, 2, 1], [0, 1, 0, 1])
