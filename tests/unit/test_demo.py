"""The demo's Q5: the seed's query for the digits, over the benchmark readers whose history the demo records."""

import json

import numpy as np

from pyfuncs.shiftql import translate
from shift_cli import demo
from tests.shiftql_corpus import Q5 as SEED_Q5


def test_q5_is_the_seeds_query_with_the_target_the_pool_and_the_recorded_protocol():
    expected = (SEED_Q5.replace("TESTED ON TestReader", "TESTED ON DigitsTest")
                .replace("FROM DataReaders\n", "FROM DataReaders WHERE DataReaderId LIKE 'Bench%'\n")
                .replace("ORDER BY FineTune LIMIT", "ORDER BY FineTune(steps=%d, batch_size=%d) LIMIT"
                         % (demo.BENCH_PROTOCOL["steps"], demo.BENCH_PROTOCOL["batch_size"])))
    assert demo.Q5 == expected
    sql = translate(demo.Q5).sql
    assert "reader_id LIKE 'Bench%'" in sql and "'DigitsTest', 1, FALSE" in sql
    # the ranking reads the results of the very protocol shift.finetune records
    params = json.loads(sql.split("benchmark_scores('FineTune', CAST('")[1].split("'")[0])
    assert {k: params[k] for k in demo.BENCH_PROTOCOL} == demo.BENCH_PROTOCOL
    assert all(reader.startswith("Bench") for reader, _, _, _ in demo.BENCH_TASKS)


def test_benchmark_tasks_are_grey_images_in_the_unit_range_with_balanced_labels():
    for reader, task, n, side in demo.BENCH_TASKS[:2]:
        x, y = demo.bench_task(task, 40, side)
        assert x.shape == (40, side, side) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.01
        assert len(np.unique(y)) == 10
        again, _ = demo.bench_task(task, 40, side)
        assert np.array_equal(x, again)  # the same readers on every run
