"""How far a job is: its state, its tasks, and the time it still needs (shift.job_status).

A running job's tasks are those its runner's backend waits on (the job runs on a connection
opened for it, so that pid names only its tasks). The time left comes from the cost model's
measured costs (shift.costs, shift.proxy_costs) where every unfinished task has one, else from
the rate the job has gone at so far. Successive halving queues its rounds as it goes, so both
count only the tasks queued yet.
"""

import json

from .errors import UNDEFINED_OBJECT, ShiftError

_JOB = """
SELECT job_id, status, error, tasks_done, tasks_total,
       extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 AS elapsed
  FROM shift.jobs WHERE job_id = $1
"""

_TASKS = """
SELECT t.kind, t.status, t.progress, t.payload::text AS payload, (t.payload->'params')::text AS params
  FROM shift.jobs j JOIN shift.tasks t ON j.backend_pid = ANY(t.waiters)
 WHERE j.job_id = $1 AND j.status = 'running'
   AND (t.status IN ('queued', 'running') OR t.finished_at >= j.started_at)
"""

_COSTS = """
SELECT 'model' AS kind, model_id AS name, avg(per_sample_seconds)::float8 AS seconds FROM shift.costs GROUP BY model_id
UNION ALL
SELECT 'proxy', proxy || ' ' || params::text, per_sample_seconds FROM shift.proxy_costs
UNION ALL
SELECT 'block', reader_id, block_size::float8 FROM shift.readers
UNION ALL
SELECT 'workers', '', count(*)::float8 FROM shift.live_workers
"""


def status(db, job_id):
    """(job_id, state, progress, tasks_done, tasks_total, elapsed, remaining, error) of one job."""
    job = db.one(_JOB, ["bigint"], [job_id])
    if job is None:
        raise ShiftError("unknown job %s" % job_id, UNDEFINED_OBJECT,
                         hint="your jobs are listed by SELECT job_id, status, query FROM shift.jobs")
    state, elapsed = job["status"], job["elapsed"]
    if state != "running":
        progress = 1.0 if state == "done" else 0.0
        remaining = 0.0 if state == "done" else None
        return [(job_id, state, progress, job["tasks_done"], job["tasks_total"], _interval(elapsed),
                 _interval(remaining), job["error"])]
    tasks = [dict(r) for r in db.execute(_TASKS, ["bigint"], [job_id])]
    costs = {}
    for r in db.execute(_COSTS):
        costs.setdefault(r["kind"], {})[r["name"]] = r["seconds"]
    done = sum(t["status"] == "done" for t in tasks)
    progress = fraction(tasks)
    remaining = remaining_seconds(elapsed or 0.0, progress, modelled_seconds(tasks, costs))
    return [(job_id, state, progress, done, len(tasks), _interval(elapsed), _interval(remaining), None)]


def fraction(tasks):
    """The part of the job's tasks done: done ones count whole, running ones by their progress."""
    if not tasks:
        return 0.0
    return sum(1.0 if t["status"] == "done" else float(t["progress"] or 0) if t["status"] == "running" else 0.0
               for t in tasks) / len(tasks)


def modelled_seconds(tasks, costs):
    """Seconds the unfinished tasks need by their measured costs, spread over the live workers;
    None when one of them has no measured cost (a model never run, a fine-tuning)."""
    total = 0.0
    for t in tasks:
        if t["status"] not in ("queued", "running"):
            continue
        seconds = _task_seconds(t, costs)
        if seconds is None:
            return None
        left = 1.0 - float(t["progress"] or 0) if t["status"] == "running" else 1.0
        total += seconds * left
    workers = max(1.0, (costs.get("workers") or {}).get("", 1.0))
    return total / workers


def _task_seconds(task, costs):
    payload = json.loads(task["payload"])
    if task["kind"] == "inference":
        per_sample = costs.get("model", {}).get(payload.get("model_id"))
        block_size = costs.get("block", {}).get(payload.get("reader_id"))
        if per_sample is None or block_size is None:
            return None
        return per_sample * block_size * len(payload.get("blocks") or [])
    if task["kind"] == "proxy":
        per_sample = costs.get("proxy", {}).get("%s %s" % (payload.get("proxy"), task["params"]))
        if per_sample is None or payload.get("fidelity") is None:
            return None
        return per_sample * payload["fidelity"]
    return None


def remaining_seconds(elapsed, progress, modelled):
    """The cost model's estimate when there is one; else elapsed time at the rate so far; None before
    anything is done."""
    if modelled is not None:
        return modelled
    if progress <= 0:
        return None
    return elapsed * (1.0 - progress) / progress


def _interval(seconds):
    """Seconds as an interval's input text (PL/Python passes text to an interval column)."""
    return None if seconds is None else "%.3f seconds" % max(0.0, seconds)
