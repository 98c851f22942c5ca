"""Waiting on tasks without a database: models that cannot be loaded."""

import pytest

from pyfuncs import planner, queue
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

    def __init__(self, states, clock, step=0.5, settings=None, cancel_at=None, statement_age=0.0):
        self.states, self.clock, self.step = list(states), clock, step
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
            return {"s": self.statement_age}
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


class PlannerDb(FakeDb):
    """What planner.run reads before it plans: recorded load errors and cached proxy values."""

    def __init__(self, load_errors, cached):
        super().__init__([], Clock())
        self.load_errors, self.cached = load_errors, cached

    def execute(self, sql, types=(), args=()):
        if "FROM shift.models" in sql and "load_error" in sql:
            return [{"model_id": m, "load_error": e} for m, e in self.load_errors.items() if m in args[0]]
        if "FROM shift.scores" in sql:
            return [{"model_id": m, "value": v} for m, v in self.cached.items() if m in args[5]]
        raise AssertionError(sql)


class Scorer:
    name = proxy = "knn"

    @staticmethod
    def present(v):
        return v


def test_a_recorded_load_error_leaves_the_model_out_before_planning():
    db = PlannerDb({"broken": BROKEN}, {"a": 0.1, "b": 0.2})
    reader = {"reader_id": "R", "num_samples": 10, "block_size": 10, "classes": ["0", "1"]}
    req = planner.Request(db, Scorer(), {}, ["a", "broken", "b"], reader, reader, top_k=1)
    assert planner.run(req) == {"a": 0.1, "b": 0.2}
    assert req.models == ["a", "b"] and req.left_out == {"broken": BROKEN}
    [(message, kw)] = db.plpy.warnings
    assert message.startswith("model broken is left out: it cannot be loaded (RuntimeError: PytorchStreamReader")
    assert "shift.describe_models(ARRAY['broken'])" in kw["hint"]
