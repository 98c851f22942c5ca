"""The fine-tuning protocol of seed 002 §4.3 on a small timm model, in-process."""

import numpy as np
import pytest
import torch

from gpu_daemon import finetune
from gpu_daemon.models import load_model

PARAMS = {"lr": 0.05, "lr_grid": 2, "steps": 15, "batch_size": 16, "repeats": 1, "seed": 0}


def bars(n, seed):
    """Two classes a random CNN separates poorly but learns fast: a horizontal or a vertical bar."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 40, size=(n, 16, 16, 3)).astype(np.uint8)
    for i, label in enumerate(y):
        at = rng.integers(3, 13)
        if label:
            x[i, :, at - 1:at + 1] = 255
        else:
            x[i, at - 1:at + 1, :] = 255
    return finetune.Split(x, y.astype(np.int64))


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    return load_model({"model_id": "tiny", "source": "timm", "locator": "resnet10t", "input_size": 16,
                       "options": {"pretrained": False, "num_classes": 5}})


def test_learning_rate_grid():
    assert finetune.learning_rates({"lr": 0.01, "lr_grid": 3}) == pytest.approx([0.01, 0.001, 0.0001])


def test_head_fits_separable_features():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    feats = torch.from_numpy(rng.normal(size=(60, 8)).astype(np.float32) + 4.0 * np.eye(3, 8)[y].astype(np.float32))
    head = finetune.fit_head(feats, y, 3, seed=0)
    assert head.out_features == 3
    assert (head(feats).argmax(1).numpy() == y).mean() == 1.0


def test_protocol_learns_and_keeps_the_best_validation_run(loaded):
    train, validation, test = bars(64, 1), bars(40, 2), bars(40, 3)
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    result = finetune.run(loaded, train, validation, test, 2, PARAMS)
    (run,) = result["settings"]["runs"]
    assert [t["lr"] for t in run["tried"]] == pytest.approx([0.05, 0.005])
    best = max(run["tried"], key=lambda t: t["validation_accuracy"])
    assert run["chosen_lr"] == best["lr"]
    assert result["test_accuracy"] == best["test_accuracy"]
    assert result["test_accuracy"] >= 0.9  # fine-tuning the whole network learns the bars
    # every run starts from the pre-trained weights: the second learning rate is not a continuation
    after = loaded.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    loaded.module.load_state_dict(before)
    again = finetune.run(loaded, train, validation, test, 2, PARAMS)
    assert again["settings"]["runs"][0]["tried"] == run["tried"]


def test_repeats_take_the_median(loaded):
    train, validation, test = bars(32, 4), bars(20, 5), bars(20, 6)
    result = finetune.run(loaded, train, validation, test, 2, dict(PARAMS, steps=3, lr_grid=1, repeats=3))
    runs = result["settings"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert result["test_accuracy"] == sorted(r["test_accuracy"] for r in runs)[1]


def test_labels_outside_the_head_are_refused(loaded):
    bad = bars(8, 7)
    bad.y[0] = 2
    with pytest.raises(ValueError, match="outside the 2 classes"):
        finetune.run(loaded, bars(8, 8), bad, bars(8, 9), 2, PARAMS)


def test_a_module_that_is_not_torch_cannot_be_fine_tuned(loaded):
    class Onnx:
        model_id, source, module = "m", "onnx", object()

    with pytest.raises(ValueError, match="not a PyTorch module"):
        finetune.require_trainable(Onnx())
