"""The scorer registry: names, parameters, direction."""

import pytest

from pyfuncs import scorers, tasks
from pyfuncs.errors import ShiftError


def test_lookup_is_case_insensitive_and_suggests():
    assert scorers.get("cosinenn").name == "CosineNN"
    with pytest.raises(ShiftError) as info:
        scorers.get("CosineN")
    assert info.value.sqlstate == "42704" and "CosineNN" in info.value.hint


def test_resolve_fills_defaults_and_checks():
    linear = scorers.get("Linear")
    params = linear.resolve({"lr": 0.1})
    assert params == {"lr": 0.1, "l2": 1e-4, "batch_size": 64, "epochs": 10, "seed": 0}
    assert linear.resolve({"LR": 1}) ["lr"] == 1.0  # ints are fine for floats, names fold case
    for bad, state in (({"lr": -1}, "22023"), ({"lr": "fast"}, "22023"), ({"epochs": 2.5}, "22023"),
                       ({"momentum": 0.9}, "42704"), ({"batch_size": True}, "22023")):
        with pytest.raises(ShiftError) as info:
            linear.resolve(bad)
        assert info.value.sqlstate == state, bad


def test_error_and_accuracy_views_share_one_cached_proxy():
    nn_err, nn_acc = scorers.get("CosineNN"), scorers.get("CosineNNAccuracy")
    assert nn_err.proxy == nn_acc.proxy and nn_err.resolve({}) == nn_acc.resolve({}) == {"metric": "cosine", "k": 1}
    assert not nn_err.higher_is_better and nn_acc.higher_is_better
    assert nn_err.present(0.75) == pytest.approx(0.25) and nn_acc.present(0.75) == 0.75
    assert nn_err.resolve(nn_err.resolve({})) == nn_err.resolve({})  # idempotent
    with pytest.raises(ShiftError):
        nn_err.resolve({"metric": "euclidean"})  # fixed by the scorer's name


def test_register_a_new_scorer():
    s = scorers.Scorer("ManhattanLike", "nn", "accuracy", fixed={"metric": "euclidean"})
    scorers.register(s)
    try:
        assert scorers.get("manhattanlike") is s
    finally:
        del scorers.REGISTRY["manhattanlike"]
    with pytest.raises(ValueError):
        scorers.register(scorers.Scorer("Bogus", "no-such-proxy", "accuracy"))


def test_knn_shares_the_nn_proxy_and_its_cache():
    knn = scorers.get("KNN")
    assert knn.resolve({}) == {"k": 5, "metric": "cosine"}
    assert knn.resolve({"k": 1, "metric": "cosine"}) == scorers.get("CosineNN").resolve({})
    assert scorers.canonical_json(knn.resolve({"k": 1, "metric": "euclidean"})) == \
        scorers.canonical_json(scorers.get("EuclideanNN").resolve({}))
    for bad, state in (({"k": 0}, "22023"), ({"metric": "manhattan"}, "22023"), ({"k": 2.5}, "22023"),
                       ({"neighbours": 3}, "42704")):
        with pytest.raises(ShiftError) as info:
            knn.resolve(bad)
        assert info.value.sqlstate == state, bad


def test_kinds_say_what_is_ranked_and_by_which_readers():
    assert scorers.get("Linear").ranks == "models" and scorers.get("Linear").reader_clauses == (
        ("tested_on", "trained_on"),)
    fine = scorers.get("FineTune")
    assert fine.kind == "finetune" and fine.reader_clauses == (("tested_on", "trained_on"), ())
    t2v = scorers.get("Task2Vec")
    assert t2v.kind == "datasim" and t2v.ranks == "readers" and not t2v.higher_is_better
    assert t2v.reader_clauses == (("tested_against",),)


def test_model_scorers_and_datasim_metrics_are_told_apart():
    assert scorers.get_model_scorer("linear").name == "Linear"
    assert scorers.get_model_scorer("FineTune").kind == "finetune"
    with pytest.raises(ShiftError) as info:
        scorers.get_model_scorer("Task2Vec")
    assert info.value.sqlstate == "42809"
    assert scorers.get_datasim_metric("task2vec").name == "Task2Vec"


def test_finetune_protocol_parameters():
    fine = scorers.get("FineTune")
    assert fine.resolve({}) == {"lr": 0.01, "lr_grid": 2, "steps": 200, "batch_size": 64, "repeats": 1, "seed": 0}
    assert fine.resolve({"STEPS": 5})["steps"] == 5
    for bad in ({"steps": 0}, {"lr_grid": 7}, {"repeats": 1.5}):
        with pytest.raises(ShiftError) as info:
            fine.resolve(bad)
        assert info.value.sqlstate == "22023"
    with pytest.raises(ShiftError) as info:
        scorers.get_datasim_metric("CosineNN")
    assert info.value.sqlstate == "42809" and "Task2Vec" in info.value.hint


def test_register_a_dataset_similarity_metric():
    metric = scorers.Scorer("Task2VecSym", "task2vec", "distance", fixed={"distance": "symmetric"}, kind="datasim")
    scorers.register(metric)
    try:
        assert scorers.get_datasim_metric("task2vecsym") is metric
    finally:
        del scorers.REGISTRY["task2vecsym"]
    for bad in (scorers.Scorer("X", "no-embedding", "distance", fixed={"distance": "cosine"}, kind="datasim"),
                scorers.Scorer("X", "task2vec", "distance", fixed={"distance": "manhattan"}, kind="datasim"),
                scorers.Scorer("X", "nn", "accuracy", kind="oracle")):
        with pytest.raises(ValueError):
            scorers.register(bad)


def test_task_keys_name_the_work():
    # one key per block: queries that partition a reader differently share each block's task
    assert tasks.inference_key("m", "r", 7) == "inference/m/r/7"
    assert tasks.validate_key("r", "ab12") != tasks.validate_key("r", "cd34")
    a = tasks.proxy_key("linear", {"lr": 0.1, "epochs": 2}, "m", "te", "tr", 100)
    b = tasks.proxy_key("linear", {"epochs": 2, "lr": 0.1}, "m", "te", "tr", 100)
    assert a == b and a != tasks.proxy_key("linear", {"epochs": 2, "lr": 0.1}, "m", "te", "tr", 50)
    assert tasks.num_blocks(1025, 1024) == 2 and tasks.num_blocks(1024, 1024) == 1


def test_transferability_metrics_are_scorers_seen_as_computed():
    from pyfuncs import proxies

    names = ("LogME", "HScore", "ShrinkageHScore", "GBC", "TransRate", "SFDA", "NLEEP", "KNNLeaveOneOut", "LEEP",
             "NCE", "NCTI", "ETran")
    for name in names:
        s = scorers.get(name)
        assert s.kind == "proxy" and s.higher_is_better and s.proxy in proxies.PROXIES_OVER_BLOCKS, name
        assert s.present(-0.25) == -0.25 or s.pool, name
    assert proxies.OUTPUTS == {"leep": "logits", "nce": "logits"}
    assert scorers.get("TransRate").resolve({}) == {"eps": 1e-4, "relative": False}
    with pytest.raises(ShiftError) as info:
        scorers.get("GBC").resolve({"gaussian_type": "full"})
    assert info.value.sqlstate == "22023"


def test_pool_relative_metrics_combine_their_terms_over_the_models_given():
    ncti, etran = scorers.get("NCTI"), scorers.get("ETran")
    terms = {"a": {"seli": 1.0, "ncc": 0.5, "vc": 2.0}, "b": {"seli": 3.0, "ncc": 0.7, "vc": 1.0}}
    assert ncti.present_pool(terms) == {"a": pytest.approx(-1.0), "b": pytest.approx(2.0)}
    assert ncti.present_pool({"a": terms["a"]}) == {"a": 0.0}  # alone in its pool
    assert etran.present_pool({"x": {"lda": 0.2, "energy": 5.0}, "y": {"lda": 0.6, "energy": 1.0}}) == \
        {"x": pytest.approx(0.15), "y": pytest.approx(0.85)}
    assert ncti.present_pool({}) == {}
    assert scorers.get("LogME").present_pool({"a": -0.5, "b": 0.25}) == {"a": -0.5, "b": 0.25}


def test_relative_is_how_a_metric_is_shown_not_what_is_cached():
    logme = scorers.get("LogME")
    resolved = logme.resolve({"relative": True})
    assert resolved == {"relative": True} and logme.cached_params(resolved) == {} == logme.cached_params(logme.resolve({}))
    assert logme.present_pool({"a": -0.5, "b": 0.25, "c": 0.0}, relative=True) == \
        {"a": 0.0, "b": 1.0, "c": pytest.approx(2 / 3)}
    assert logme.present_pool({"a": 2.0}, relative=True) == {"a": 0.0}
    with pytest.raises(ShiftError) as info:
        logme.resolve({"relative": 1})
    assert info.value.sqlstate == "22023" and "true or false" in info.value.message
