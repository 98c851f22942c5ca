"""Fine-tuning streams its reader: memory held stays under the bound for a reader far larger than it."""

import tracemalloc

import numpy as np
import pytest
import torch

from gpu_daemon import finetune
from gpu_daemon import readers as reader_io  # imported before memory is traced: imports are not held samples
from gpu_daemon.models import load_model
from tests.unit.test_finetune_protocol import bars

PARAMS = {"lr": 0.05, "lr_grid": 1, "steps": 20, "batch_size": 16, "repeats": 1, "seed": 0}
MB = 2 ** 20
TRAIN = 16000


def _npz_reader(path, split):
    np.savez(path, x=split.x, y=split.y)
    return dict(reader_id=path.stem, kind="npz", source=str(path), options={"x_key": "x", "y_key": "y"},
                input="Vision", num_samples=len(split), classes=["0", "1"], block_size=100)


@pytest.fixture(scope="module")
def readers(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune-memory")
    # 16000 16x16x3 uint8 images: 12 MB of samples
    return {name: _npz_reader(base / ("%s.npz" % name), bars(n, seed))
            for name, n, seed in (("train", TRAIN, 1), ("validation", 200, 2), ("test", 200, 3))}


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    return load_model({"model_id": "tiny", "source": "timm", "locator": "resnet10t", "input_size": 16,
                       "options": {"pretrained": False, "num_classes": 5}})


def _fine_tune(loaded, readers, memory, params=PARAMS, trace=True):
    """The worker's split of the budget (see Worker.run_finetune); the peak of traced allocations."""
    initial = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    if trace:
        tracemalloc.start()
    try:
        train = finetune.reader_split(readers["train"], memory // 2)
        validation = finetune.reader_split(readers["validation"], memory // 8)
        test = finetune.reader_split(readers["test"], memory // 8)
        result = finetune.run(loaded, train, validation, test, 2, params, memory_bytes=memory // 2)
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        tracemalloc.stop()
        loaded.module.load_state_dict(initial)
    return result, peak


def test_fine_tuning_a_reader_twelve_times_the_bound_stays_under_it(loaded, readers):
    memory = MB
    samples = TRAIN * 16 * 16 * 3
    # first untraced: what the model and the libraries allocate once, on first use, is not held samples
    _fine_tune(loaded, readers, memory, dict(PARAMS, steps=2), trace=False)
    result, peak = _fine_tune(loaded, readers, memory)
    print("peak %.2f MB under a bound of %.2f MB, reader of %.2f MB" % (peak / MB, memory / MB, samples / MB))
    assert peak < memory
    held = result["settings"]["memory"]
    assert held["streamed"] and 16 <= held["buffer_samples"] < TRAIN and held["head_samples"] < TRAIN
    assert result["settings"]["samples"]["train"] == TRAIN
    assert result["test_accuracy"] > 0.6  # still learns the bars from streamed mini-batches
    # under a bound the reader fits in, it is held whole: what the bound prevents
    tracemalloc.start()
    try:
        whole = finetune.reader_split(readers["train"], 64 * MB)
        assert not whole.memory()["streamed"] and tracemalloc.get_traced_memory()[1] > samples
    finally:
        tracemalloc.stop()


def test_a_reader_that_fits_is_held_and_gives_the_in_memory_result(loaded, readers):
    params = dict(PARAMS, steps=3)

    def held(name):
        with np.load(readers[name]["source"]) as f:
            return finetune.Split(f["x"], f["y"].astype(np.int64))

    streamed = finetune.run(loaded, finetune.reader_split(readers["validation"], 64 * MB),
                            finetune.reader_split(readers["test"], MB), finetune.reader_split(readers["test"], 0),
                            2, params, memory_bytes=64 * MB)
    in_memory = finetune.run(loaded, held("validation"), held("test"), held("test"), 2, params)
    assert streamed["settings"]["memory"]["streamed"] is False
    assert streamed["settings"]["runs"] == in_memory["settings"]["runs"]
