"""Planning and running one scoring request (seed 000 §3.3, §4).

A request asks for a proxy value of each model of a pool on (test reader, train
reader), possibly only for the top-K. The planner reads what the cache already
holds, and dispatches only what is missing (§4.3 "Caching"). For a top-K
request it first infers the test reader with every model (both plans need it,
and it measures each model's load and inference time), then lets the cost model
(§4.2) choose between one full pass over the training reader and successive
halving (§4.1), unless the setting shift.successive_halving forces one.
"""

import json
import statistics
import time

import numpy as np

from . import costmodel, halving, proxies, queue, tasks, versions
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, ShiftError
from .scorers import canonical_json

MODES = ("auto", "on", "off")
# §4.3 "Load-Balancing": readers smaller than this are not split across devices
PARTITION_THRESHOLD_SAMPLES = 2048


class Request:
    def __init__(self, db, scorer, params, models, test, train, top_k=None, descending=False):
        self.db = db
        self.scorer = scorer
        self.params = params
        self.models = models
        self.test = test
        self.train = train
        self.top_k = top_k
        self.descending = descending
        self.devices = 1
        self.left_out = {}  # model_id -> why it cannot be loaded

    def leave_out(self, reasons):
        """Go on without models that cannot be loaded, warning about each."""
        for model_id, why in sorted(reasons.items()):
            if model_id in self.models:
                self.models = [m for m in self.models if m != model_id]
                self.left_out[model_id] = why
                warn_unloadable(self.db, model_id, why)

    @property
    def proxy(self):
        return self.scorer.proxy

    def cached(self, models, fidelity):
        rows = self.db.execute(
            "SELECT model_id, value FROM shift.scores WHERE proxy = $1 AND params = $2 AND test_reader = $3 "
            "AND train_reader = $4 AND fidelity = $5 AND model_id = ANY($6)",
            ["text", "jsonb", "text", "text", "bigint", "text[]"],
            [self.proxy, canonical_json(self.params), self.test["reader_id"], self.train["reader_id"], fidelity,
             list(models)])
        return {r["model_id"]: r["value"] for r in rows}

    def present(self, values):
        return {m: self.scorer.present(v) for m, v in values.items()}


def setting(db, name, default, convert=str):
    raw = db.setting(name)
    if raw in (None, ""):
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ShiftError("setting %s is %r" % (name, raw), INVALID_PARAMETER) from None


def unloadable(db, models):
    """{model_id: load error} of the models a worker failed to load when it last tried."""
    rows = db.execute("SELECT model_id, load_error FROM shift.models WHERE model_id = ANY($1) "
                      "AND load_error IS NOT NULL", ["text[]"], [list(models)])
    return {r["model_id"]: r["load_error"] for r in rows}


def warn_unloadable(db, model_id, why):
    first = (why.strip().splitlines() or ["no reason given"])[0]
    db.plpy.warning("model %s is left out: it cannot be loaded (%s)" % (model_id, first[:300]),
                    hint="see SELECT * FROM shift.model_status WHERE status = 'failed'; once it is fixed, "
                         "SELECT * FROM shift.describe_models(ARRAY['%s']) brings it back" % model_id.replace("'", "''"))


def run(req):
    """Proxy accuracies {model: value} of the request: all models, or the top-K survivors.

    Models that cannot be loaded are left out, with a warning: those a worker already failed to load
    before anything is planned, those whose tasks fail to load them while the request waits."""
    started = time.monotonic()
    n = req.train["num_samples"]
    req.leave_out(unloadable(req.db, req.models))
    values = req.cached(req.models, n)
    missing = [m for m in req.models if m not in values]
    if not missing:
        record(req, "cached", None, started)
        return values
    mode = setting(req.db, "shift.successive_halving", "auto").lower()
    if mode not in MODES:
        raise ShiftError("shift.successive_halving is %r" % mode, INVALID_PARAMETER, hint="use auto, on or off")
    queue.require_read_committed(req.db)
    req.devices = queue.require_live_worker(req.db)

    if req.top_k is None or req.top_k >= len(req.models) or mode == "off":
        dispatch(req, full_pass_tasks(req, missing))
        record(req, "full", None, started, mode)
        return req.cached(req.models, n)

    dispatch(req, [t for m in missing for t in inference_tasks(req, m, req.test, req.test["num_samples"])])
    missing = [m for m in missing if m in req.models]
    if req.top_k >= len(req.models):  # models that could not be loaded left too few to halve
        dispatch(req, full_pass_tasks(req, missing))
        record(req, "full", None, started, mode)
        return req.cached(req.models, n)
    sched = halving.schedule(len(req.models), n, req.top_k,
                             budget=setting(req.db, "shift.sh_budget", None, int),
                             chunk=setting(req.db, "shift.sh_chunk_size", None, int))
    est = costmodel.estimate(measure(req), req.models, sched)
    if mode == "on" or (mode == "auto" and est.choice == "successive halving"):
        values, kept = successive_halving(req, sched)
        est.terms["survivors"] = kept
        if versions.options(req.train).get("halving_order") is not None:
            est.terms["sample_order"] = versions.SPREAD_NOTE
        record(req, "successive halving", est, started, mode)
    else:
        dispatch(req, full_pass_tasks(req, missing), est.without_sh)
        values = req.cached(req.models, n)
        record(req, "full", est, started, mode)
    return values


def dispatch(req, planned, estimate=None):
    """Enqueue and wait; models whose tasks could not load them leave the request."""
    if planned:
        ids = queue.enqueue(req.db, planned, req.models, {req.test["reader_id"], req.train["reader_id"]})
        req.leave_out(queue.wait(req.db, ids, leave_out_unloadable=True, estimate=estimate))


def full_pass_tasks(req, models):
    """Per model, in order: train inference, test inference, the proxy; a worker keeps the model loaded."""
    planned = []
    for m in models:
        first = len(planned)
        planned += inference_tasks(req, m, req.train, req.train["num_samples"])
        if req.test["reader_id"] != req.train["reader_id"]:
            planned += inference_tasks(req, m, req.test, req.test["num_samples"])
        deps = list(range(first, len(planned)))
        planned.append(proxy_task(req, m, req.train["num_samples"], deps))
    return planned


def proxy_task(req, model, fidelity, deps):
    t, tr = req.test["reader_id"], req.train["reader_id"]
    return ("proxy", tasks.proxy_key(req.proxy, req.params, model, t, tr, fidelity),
            tasks.proxy_payload(req.proxy, req.params, model, t, tr, fidelity), deps)


def inference_tasks(req, model, reader, upto, blocks=None):
    """Tasks computing the missing feature blocks of samples [0, upto) (or of `blocks`), split across devices (§4.3).

    A version of a mutable reader has no features of its own: its sources' blocks that a proxy at
    fidelity `upto` reads are inferred, so a change-reader costs inference on its own samples only."""
    if reader["kind"] == "version":
        return [t for src, need in versions.source_blocks(req.db, reader, upto)
                for t in inference_tasks(req, model, src, None, need)]
    rid, size = reader["reader_id"], reader["block_size"]
    want = set(range(tasks.num_blocks(upto, size))) if blocks is None else set(blocks)
    have = {r["block"] for r in req.db.execute(
        "SELECT block FROM shift.features WHERE model_id = $1 AND reader_id = $2", ["text", "text"], [model, rid])}
    lacking = sorted(want - have)
    if not lacking:
        return []
    parts = 1
    if req.devices > 1 and len(lacking) * size >= PARTITION_THRESHOLD_SAMPLES:
        parts = min(req.devices, len(lacking))
    step = -(-len(lacking) // parts)
    return [("inference", tasks.inference_key(model, rid, chunk), tasks.inference_payload(model, rid, chunk), [])
            for chunk in (lacking[i:i + step] for i in range(0, len(lacking), step))]


def successive_halving(req, sched):
    """Algorithm 1 of seed 000 §4.1: each round pulls every surviving arm, then keeps the better half.

    Returns the survivors' values and, per round, the models it kept (which the
    cost model learns survival from).
    """
    raw, pulled = {}, []

    def pull(alive, seen):
        pulled.append(sorted(alive))
        planned = []
        for m in alive:
            first = len(planned)
            planned += inference_tasks(req, m, req.train, seen)
            planned.append(proxy_task(req, m, seen, list(range(first, len(planned)))))
        dispatch(req, planned)
        raw.update(req.cached(alive, seen))
        return req.present({m: raw[m] for m in alive if m in req.models})

    alive, _ = halving.run(req.models, sched, pull, req.descending)
    return {m: raw[m] for m in alive}, pulled[1:] + [sorted(alive)]


# -- the cost model's inputs, measured ------------------------------------------------

def measure(req, run_here=True):
    """L_i, I_i (per live device), t_N, t_O, E_Proxy, P and the survival tendency, as measured (§4.2).

    With run_here false (shift.explain, which runs nothing) an E_Proxy no worker measured yet is an
    error rather than timed here on synthetic features."""
    db = req.db
    load, infer = model_costs(db, req.models)
    unmeasured = [m for m in req.models if m not in infer]
    if unmeasured:
        raise ShiftError("no inference cost is measured for model %s" % unmeasured[0], INTERNAL_ERROR,
                         detail="its test inference should have measured it")
    read = db.one("SELECT per_sample_seconds AS s FROM shift.reader_costs WHERE reader_id = $1", ["text"],
                  [req.train["reader_id"]]) or db.one(
        "SELECT per_sample_seconds AS s FROM shift.reader_costs WHERE reader_id = $1", ["text"],
        [req.test["reader_id"]])
    e_proxy, t_o = proxy_costs(req, run_here)
    return costmodel.CostInputs(
        train_samples=req.train["num_samples"], test_samples=req.test["num_samples"], devices=req.devices,
        load_seconds=load, infer_seconds=infer, read_seconds=read["s"] if read else 0.0,
        feature_read_seconds=t_o, proxy_seconds=e_proxy, **survival(req))


def model_costs(db, models):
    """L_i and I_i per model, averaged over the live workers' devices (or any device, if none measured one)."""
    rows = db.execute(
        "SELECT c.model_id, avg(c.load_seconds) AS load, avg(c.per_sample_seconds) AS infer FROM shift.costs c "
        "WHERE c.model_id = ANY($1) AND (c.device IN (SELECT device FROM shift.live_workers) "
        "OR NOT EXISTS (SELECT 1 FROM shift.costs d JOIN shift.live_workers w USING (device) "
        "WHERE d.model_id = c.model_id)) GROUP BY c.model_id", ["text[]"], [list(models)])
    return {r["model_id"]: r["load"] for r in rows}, {r["model_id"]: r["infer"] for r in rows}


SURVIVAL_HISTORY = 5  # successive-halving runs the survival tendency is averaged over


def survival(req):
    """The cost model's survival tendency: how slow the survivors of earlier SH runs were.

    Measured on the last runs of the same scorer and parameters on the same
    train reader (their rounds, with today's inference costs); 1, the paper's
    "slowest survive" (§4.2), before any.
    """
    rows = req.db.execute(
        "SELECT model_ids, (terms->'survivors')::text AS survivors FROM shift.plans "
        "WHERE choice = 'successive halving' AND scorer = $1 AND params = $2 AND train_reader = $3 "
        "AND terms ? 'survivors' ORDER BY plan_id DESC LIMIT %d" % SURVIVAL_HISTORY,
        ["text", "jsonb", "text"], [req.scorer.name, canonical_json(req.params), req.train["reader_id"]])
    runs = [(list(r["model_ids"]), json.loads(r["survivors"])) for r in rows]
    if not runs:
        return {"survival": 1.0, "survival_observed": 0}
    _, infer = model_costs(req.db, {m for models, _ in runs for m in models})
    observed = []
    for models, kept in runs:
        start = models
        for survivors in kept:
            if all(m in infer for m in start):
                s = costmodel.survival_tendency({m: infer[m] for m in start}, survivors)
                if s is not None:
                    observed.append(s)
            start = survivors
    return {"survival": statistics.fmean(observed) if observed else 1.0, "survival_observed": len(observed)}


def proxy_costs(req, run_here=True):
    """E_Proxy and t_O as workers measured them for this proxy, else measured here on synthetic features."""
    row = req.db.one("SELECT per_sample_seconds AS e, feature_read_seconds AS o FROM shift.proxy_costs "
                     "WHERE proxy = $1 AND params = $2", ["text", "jsonb"], [req.proxy, canonical_json(req.params)])
    if row:
        return row["e"], row["o"]
    if not run_here:
        raise ShiftError("no worker has measured the cost of proxy %s with these parameters yet" % req.proxy,
                         INTERNAL_ERROR)
    dims = [r["feature_dim"] for r in req.db.execute(
        "SELECT feature_dim FROM shift.models WHERE model_id = ANY($1) AND feature_dim IS NOT NULL",
        ["text[]"], [req.models])]
    dim = int(statistics.median(dims)) if dims else 512
    n, o = min(req.train["num_samples"], 1000), req.test["num_samples"]
    rng = np.random.default_rng(0)
    classes = max(2, len(req.train["classes"]))
    train_x, test_x = rng.normal(size=(n, dim)), rng.normal(size=(o, dim))
    train_y, test_y = np.arange(n) % classes, np.arange(o) % classes
    started = time.perf_counter()
    proxies.compute(req.proxy, req.params, train_x, train_y, test_x, test_y)
    e_proxy = (time.perf_counter() - started) / n
    started = time.perf_counter()
    rows = req.db.execute("SELECT num_rows, dim, data FROM shift.features WHERE reader_id = $1 AND model_id = $2",
                          ["text", "text"], [req.test["reader_id"], req.models[0]])
    read = sum(np.frombuffer(r["data"], dtype="<f4").size for r in rows)
    t_o = (time.perf_counter() - started) / max(1, sum(r["num_rows"] for r in rows)) if read else 0.0
    return e_proxy, t_o


def record(req, choice, est, started, mode="auto"):
    """Log a plan that ran work; a cached answer writes nothing (a read-only query stays read-only)."""
    if choice == "cached":
        return
    plan = dict(scorer=req.scorer.name, params=json.loads(canonical_json(req.params)), model_ids=req.models,
                test_reader=req.test["reader_id"], train_reader=req.train["reader_id"], top_k=req.top_k, mode=mode,
                choice=choice, estimate_full=est.without_sh if est else None,
                estimate_sh=est.with_sh if est else None, terms=est.terms if est else {},
                measured_seconds=time.monotonic() - started)
    req.db.execute("SELECT shift._record_plan(current_user, $1)", ["jsonb"], [json.dumps(plan)])


def describe(req):
    """What the planner would do for this request, without running it: for shift.explain.

    Returns the plan it would choose with both estimates and their terms where the
    costs of every model are measured, and the last recorded run of the same request
    with its measured time beside the estimates it had.
    """
    n = req.train["num_samples"]
    cached = req.cached(req.models, n)
    out = {"models": len(req.models), "cached": len(cached), "top_k": req.top_k,
           "mode": setting(req.db, "shift.successive_halving", "auto")}
    if len(cached) == len(req.models):
        out["choice"] = "cached"
    elif req.top_k is None or req.top_k >= len(req.models) or out["mode"] == "off":
        out["choice"] = "full"
    else:
        req.devices = max(1, req.db.one("SELECT count(*) AS n FROM shift.live_workers")["n"])
        sched = halving.schedule(len(req.models), n, req.top_k,
                                 budget=setting(req.db, "shift.sh_budget", None, int),
                                 chunk=setting(req.db, "shift.sh_chunk_size", None, int))
        try:
            est = costmodel.estimate(measure(req, run_here=False), req.models, sched)
        except ShiftError as e:
            out["choice"] = "decided after the test inference measures every model"
            out["why"] = e.message
        else:
            out.update(estimate_full=est.without_sh, estimate_sh=est.with_sh, terms=est.terms,
                       choice="successive halving" if out["mode"] == "on" else est.choice)
    last = req.db.one(
        "SELECT choice, estimate_full, estimate_sh, measured_seconds, created_at::text AS at FROM shift.plans "
        "WHERE scorer = $1 AND params = $2 AND model_ids = $3 AND test_reader = $4 AND train_reader = $5 "
        "AND top_k IS NOT DISTINCT FROM $6 AND choice <> 'cached' ORDER BY plan_id DESC LIMIT 1",
        ["text", "jsonb", "text[]", "text", "text", "integer"],
        [req.scorer.name, canonical_json(req.params), req.models, req.test["reader_id"], req.train["reader_id"],
         req.top_k])
    if last:
        out["last_run"] = dict(last)
    return out
