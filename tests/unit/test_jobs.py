"""A job's progress and time left (pyfuncs/jobs.py), and what a runner makes of a failed statement."""

import json

import pytest

from gpu_daemon.jobs import outcome_of
from pyfuncs import jobs


def task(kind, status, progress=0.0, **payload):
    return {"kind": kind, "status": status, "progress": progress, "payload": json.dumps(payload),
            "params": json.dumps(payload.get("params")) if "params" in payload else None}


COSTS = {"model": {"m": 0.01}, "block": {"r": 100.0}, "proxy": {"KNN {}": 0.001}, "workers": {"": 2.0}}


def test_fraction_counts_done_tasks_whole_and_running_ones_by_their_progress():
    tasks = [task("inference", "done"), task("inference", "running", 0.5), task("proxy", "queued")]
    assert jobs.fraction(tasks) == pytest.approx(1.5 / 3)
    assert jobs.fraction([]) == 0.0


def test_modelled_seconds_spread_measured_costs_over_the_live_workers():
    tasks = [task("inference", "done", model_id="m", reader_id="r", blocks=[0]),
             task("inference", "running", 0.5, model_id="m", reader_id="r", blocks=[0, 1]),
             task("proxy", "queued", proxy="KNN", params={}, fidelity=1000)]
    # running: 0.01 s x 100 samples x 2 blocks, half left; proxy: 0.001 s x 1000 samples; over 2 workers
    assert jobs.modelled_seconds(tasks, COSTS) == pytest.approx((1.0 + 1.0) / 2)


def test_a_task_without_a_measured_cost_leaves_the_model_out():
    assert jobs.modelled_seconds([task("inference", "queued", model_id="new", reader_id="r", blocks=[0])],
                                 COSTS) is None
    assert jobs.modelled_seconds([task("finetune", "queued", model_id="m")], COSTS) is None


def test_remaining_seconds_prefer_the_cost_model_then_the_rate_so_far():
    assert jobs.remaining_seconds(10.0, 0.25, 4.0) == 4.0
    assert jobs.remaining_seconds(10.0, 0.25, None) == pytest.approx(30.0)
    assert jobs.remaining_seconds(10.0, 0.0, None) is None


def test_intervals_are_seconds_never_negative():
    assert jobs._interval(None) is None
    assert jobs._interval(-1.0) == "0.000 seconds"
    assert jobs._interval(2.5) == "2.500 seconds"


@pytest.mark.parametrize("sqlstate, stopping, cancel, lost, outcome", [
    ("57014", True, False, False, "give back"),     # the worker stops: another runs the job
    (None, False, False, True, "give back"),        # the connection went
    ("57014", False, True, False, "cancelled"),
    ("38000", False, True, False, "cancelled"),     # a cancel interrupting a task wait, in its words
    ("42501", False, False, False, "failed"),
    ("57014", False, False, False, "failed"),       # a statement_timeout the query set itself
])
def test_a_failed_statement_becomes_given_back_cancelled_or_failed(sqlstate, stopping, cancel, lost, outcome):
    assert outcome_of(sqlstate, stopping=stopping, cancel_requested=cancel, connection_lost=lost) == outcome
