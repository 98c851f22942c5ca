"""A starting worker waits for the database with a reconnect's backoff, up to its limit."""

import logging

from gpu_daemon.worker import Worker

NOWHERE = "host=/nonexistent-shift-socket-dir port=1 dbname=shift user=shift_worker"


def _tries(caplog):
    return [r for r in caplog.records if "cannot connect" in r.getMessage()]


def test_a_worker_that_cannot_reach_the_database_tries_again_then_stops(caplog):
    caplog.set_level(logging.INFO, logger="shift.worker")
    worker = Worker(NOWHERE, device="cpu", worker_id="w1", job_runners=0, first_connect_seconds=1.2)
    assert worker.run() is True  # failed: a supervisor sees status 1
    assert len(_tries(caplog)) >= 2
    assert "next try in 0.5s" in _tries(caplog)[0].getMessage()
    assert any("could not connect to the database within 1s; it stops" in r.getMessage() for r in caplog.records)


def test_no_wait_tries_once(caplog):
    caplog.set_level(logging.INFO, logger="shift.worker")
    assert Worker(NOWHERE, device="cpu", worker_id="w2", job_runners=0, first_connect_seconds=0).run() is True
    assert len(_tries(caplog)) == 1


def test_a_worker_asked_to_stop_while_it_waits_stops_cleanly(caplog):
    worker = Worker(NOWHERE, device="cpu", worker_id="w3", job_runners=0, first_connect_seconds=60)
    worker.stop()
    assert worker.run() is False
