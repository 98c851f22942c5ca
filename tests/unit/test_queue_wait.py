"""Waiting on tasks without a database: models that cannot be loaded, progress notices, cancel."""

import pytest

from pyfuncs import fingerprints, planner, queue, scorers
from pyfuncs.errors import ShiftError


class QueryCanceled(Exception):
    pass


class FakePlpy:
    class spiexceptions:
        QueryCanceled = QueryCanceled

    def __init__(self):
        self.notices, self.warnings = [], []

    def notice(self, message, **kw):
        self.notices.append(message)

    def warning(self, message, **kw):
        self.warnings.append((message, kw))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeDb:
    """Answers the wait's statements: each poll returns the next scripted state of the tasks,
    each pg_sleep moves the clock on by `step` seconds."""

    def __init__(self, states, clock, step=0.5, settings=None, cancel_at=None, statement_age=0.0, statement="s1"):
        self.states, self.clock, self.step = list(states), clock, step
        self.statement = statement
        self.settings = settings or {}
        self.cancel_at, self.polls = cancel_at, 0
        self.statement_age = statement_age
        self.plpy = FakePlpy()

    def execute(self, sql, types=(), args=()):
        if sql is queue.POLL:
            self.polls += 1
            if self.cancel_at is not None and self.polls >= self.cancel_at:
                raise QueryCanceled("canceling statement due to statement timeout")
            state = self.states[0] if len(self.states) == 1 else self.states.pop(0)
            return [r for r in state if r["task_id"] in args[0]]
        if sql.startswith("SELECT pg_sleep"):
            self.clock.now += self.step
            return []
        raise AssertionError(sql)

    def one(self, sql, types=(), args=()):
        if "live_workers" in sql:
            return {"n": 1}
        if "statement_timestamp" in sql:
            return {"s": self.statement_age, "at": self.statement}
        raise AssertionError(sql)

    def setting(self, name):
        return self.settings.get(name)


def task(task_id, model, status="queued", kind="inference", load_error=None, progress=0.0, depends_on=(),
         error=None):
    return dict(task_id=task_id, status=status, error=error, kind=kind, key="%s/%s/%d" % (kind, model, task_id),
                depends_on=list(depends_on), quarantined=False, progress=progress, model_id=model,
                load_error=load_error)


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(queue.time, "monotonic", c)
    monkeypatch.setattr(queue, "_LAST_NOTICE", [float("-inf")])
    monkeypatch.setattr(queue, "_STATEMENT", {"at": None, "tasks": 0})
    return c


BROKEN = "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory"


def broken_pool_states():
    """m1's inference fails to load it, then its proxy fails as a dependent; m2 finishes."""
    return [
        [task(1, "m1"), task(2, "m1", kind="proxy", depends_on=[1]), task(3, "m2"),
         task(4, "m2", kind="proxy", depends_on=[3])],
        [task(1, "m1", "failed", load_error=BROKEN, error=BROKEN), task(2, "m1", kind="proxy", depends_on=[1]),
         task(3, "m2", "running", progress=0.5), task(4, "m2", kind="proxy", depends_on=[3])],
        [task(1, "m1", "failed", load_error=BROKEN, error=BROKEN),
         task(2, "m1", "failed", kind="proxy", depends_on=[1], load_error=BROKEN, error="task 1 it depends on failed"),
         task(3, "m2", "done"), task(4, "m2", "done", kind="proxy", depends_on=[3])],
    ]


def test_a_model_that_cannot_be_loaded_leaves_the_wait(clock):
    db = FakeDb(broken_pool_states(), clock)
    assert queue.wait(db, [1, 2, 3, 4], leave_out_unloadable=True) == {"m1": BROKEN}
    # the wait went on until m2's tasks were done
    assert db.polls == 3


def test_without_leaving_out_a_load_failure_fails_the_wait(clock):
    with pytest.raises(ShiftError) as info:
        queue.wait(FakeDb(broken_pool_states(), clock), [1, 2, 3, 4])
    assert info.value.sqlstate == "38000" and "PytorchStreamReader" in info.value.message


def test_other_failures_still_fail_the_wait(clock):
    states = [[task(1, "m1", "failed", error="ValueError: bad block"), task(3, "m2")]]
    with pytest.raises(ShiftError) as info:
        queue.wait(FakeDb(states, clock), [1, 3], leave_out_unloadable=True)
    assert info.value.sqlstate == "38000" and "bad block" in info.value.message


def running_states(n_tasks, polls_per_task):
    """Tasks finishing one after the other, each after `polls_per_task` polls."""
    states = []
    for done in range(n_tasks):
        for p in range(polls_per_task):
            states.append([task(i, "m", "done" if i < done else "running" if i == done else "queued",
                                progress=p / polls_per_task if i == done else 0.0) for i in range(n_tasks)])
    states.append([task(i, "m", "done") for i in range(n_tasks)])
    return states


def test_progress_notices_come_after_the_first_interval_and_no_faster(clock):
    # 6 tasks of 2 s each (4 polls of 0.5 s): 12 s in all, a notice at most every 2 s
    db = FakeDb(running_states(6, 4), clock, settings={"shift.progress_interval": "2"})
    queue.wait(db, list(range(6)))
    notices = db.plpy.notices
    assert 4 <= len(notices) <= 6, notices
    assert notices[0].startswith("waiting on workers: 1 of 6 tasks done"), notices
    done = [int(n.split()[3]) for n in notices]
    assert done == sorted(done) and done[-1] >= 4
    assert all(" of 6 tasks done" in n for n in notices)
    # at the rate so far: about (6 - done) * 2 s left
    assert "about 10 s left" in notices[0], notices[0]


def test_a_quick_wait_is_silent(clock):
    db = FakeDb(running_states(2, 2), clock, settings={"shift.progress_interval": "3"})
    queue.wait(db, [0, 1])
    assert db.plpy.notices == []


def test_the_interval_counts_from_the_start_of_the_statement(clock):
    # an earlier wait of the same statement took 5 s: this one reports at its first poll
    db = FakeDb(running_states(2, 2), clock, settings={"shift.progress_interval": "3"}, statement_age=5.0)
    queue.wait(db, [0, 1])
    assert db.plpy.notices and db.plpy.notices[0].startswith("waiting on workers: 0 of 2 tasks done")


def test_the_waits_of_one_statement_count_all_its_tasks(clock):
    settings = {"shift.progress_interval": "1"}
    # the test inference: 2 tasks; then a round of 3 more in the same statement
    first = FakeDb(running_states(2, 4), clock, settings=settings)
    queue.wait(first, [0, 1])
    second = FakeDb([[dict(t, task_id=t["task_id"] + 10) for t in state] for state in running_states(3, 4)], clock,
                    settings=settings, statement_age=4.0)
    queue.wait(second, [10, 11, 12])
    counts = [tuple(int(w) for w in n.split()[3:6:2]) for n in first.plpy.notices + second.plpy.notices]
    assert counts and all(total == 2 for _, total in counts[:len(first.plpy.notices)])
    later = counts[len(first.plpy.notices):]
    assert later and all(total == 5 and done >= 2 for done, total in later), counts
    assert [d for d, _ in counts] == sorted(d for d, _ in counts)  # never starts over
    # the next statement counts its own tasks only
    third = FakeDb(running_states(2, 4), clock, settings=settings, statement="s2")
    queue.wait(third, [0, 1])
    assert third.plpy.notices and all(" of 2 tasks done" in n for n in third.plpy.notices)


def test_no_progress_notices_with_interval_zero(clock):
    db = FakeDb(running_states(6, 4), clock, settings={"shift.progress_interval": "0"})
    queue.wait(db, list(range(6)))
    assert db.plpy.notices == []


def test_a_bad_progress_interval_is_an_error(clock):
    with pytest.raises(ShiftError) as info:
        queue.wait(FakeDb(running_states(1, 1), clock, settings={"shift.progress_interval": "often"}), [0])
    assert info.value.sqlstate == "22023"


def test_the_estimate_speaks_before_any_task_progressed(clock):
    states = [[task(0, "m", "running")]] * 10 + [[task(0, "m", "done")]]
    db = FakeDb(states, clock, settings={"shift.progress_interval": "1"})
    queue.wait(db, [0], estimate=60.0)
    assert "about 59 s left" in db.plpy.notices[0], db.plpy.notices


def test_remaining_time():
    assert queue.remaining(10.0, 2, 6) == pytest.approx(20.0)
    assert queue.remaining(10.0, 0, 6) is None
    assert queue.remaining(10.0, 0, 6, estimate=25.0) == pytest.approx(15.0)
    assert queue.remaining(30.0, 0, 6, estimate=25.0) is None
    assert [queue.seconds_text(s) for s in (0.2, 42, 600, 7200)] == ["1 s", "42 s", "10 min", "2.0 h"]


def test_a_cancel_keeps_postgresql_wording_and_says_what_is_kept(clock):
    db = FakeDb(running_states(4, 2), clock, cancel_at=5)
    with pytest.raises(ShiftError) as info:
        queue.wait(db, [0, 1, 2, 3])
    e = info.value
    assert e.sqlstate == "57014" and e.message == "canceling statement due to statement timeout"
    assert "1 of 4 tasks are done and cached, the other 3 stay queued" in e.detail and "next query reuses" in e.detail, e.detail


class Rows(list):
    def nrows(self):
        return len(self)


class PlannerDb(FakeDb):
    """What planner.run reads before it plans: recorded load errors, the readers' sources as their cache
    was validated on (unchanged), the blocks' fingerprints and cached proxy values of that content."""

    def __init__(self, load_errors, cached, reader):
        super().__init__([], Clock())
        self.load_errors, self.cached, self.reader = load_errors, cached, reader

    def execute(self, sql, types=(), args=()):
        if "FROM shift.models" in sql and "load_error" in sql:
            return [{"model_id": m, "load_error": e} for m, e in self.load_errors.items() if m in args[0]]
        if "SELECT reader_id, block_size FROM shift.readers" in sql:
            return Rows({"reader_id": r, "block_size": self.reader["block_size"]} for r in args[0])
        if "FROM shift.labels" in sql:
            return Rows({"reader_id": r, "block": b, "fingerprint": b"%16d" % b} for r, b in zip(*args))
        if "FROM shift.scores" in sql:
            return [{"model_id": m, "value": v, "terms": None} for m, v in self.cached.items() if m in args[5]]
        raise AssertionError(sql)

    def one(self, sql, types=(), args=()):
        if "FROM shift.reader_sources" in sql:
            return {"signature": fingerprints.file_signature(self.reader)}
        return super().one(sql, types, args)


def test_a_recorded_load_error_leaves_the_model_out_before_planning():
    reader = {"reader_id": "R", "kind": "npz", "source": "/nonexistent/r.npz", "num_samples": 10, "block_size": 10,
              "classes": ["0", "1"]}
    db = PlannerDb({"broken": BROKEN}, {"a": 0.1, "b": 0.2}, reader)
    req = planner.Request(db, scorers.get("KNNAccuracy"), {}, ["a", "broken", "b"], reader, reader, top_k=1)
    assert planner.run(req) == {"a": 0.1, "b": 0.2}
    assert req.models == ["a", "b"] and req.left_out == {"broken": BROKEN}
    [(message, kw)] = db.plpy.warnings
    assert message.startswith("model broken is left out: it cannot be loaded (RuntimeError: PytorchStreamReader")
    assert "shift.describe_models(ARRAY['broken'])" in kw["hint"]
