"""Planning and running one scoring request (seed 000 §3.3, §4).

A request asks for a proxy value of each model of a pool on (test reader, train
reader), possibly only for the top-K. The planner reads what the cache already
holds, and dispatches only what is missing (§4.3 "Caching"). For a top-K
request it first infers the test reader with every model (both plans need it,
and it measures each model's load and inference time), then lets the cost model
(§4.2) choose between one full pass over the training reader and successive
halving (§4.1), unless the setting shift.successive_halving forces one.

Cached work counts only for the readers' current content (fingerprints.py): the
readers' sources are checked first, a changed one has its cached blocks validated
by a worker, and features and scores of changed blocks are computed again; the query
says how many blocks it recomputed. A top-K answered earlier by successive halving is
answered again by replaying its rounds over the cached scores, with no worker.
"""

import json
import statistics
import time

import numpy as np

from . import costmodel, fingerprints, halving, proxies, queue, tasks, versions
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, ShiftError
from .scorers import canonical_json

MODES = ("auto", "on", "off")


class Request:
    def __init__(self, db, scorer, params, models, test, train, top_k=None, descending=False):
        self.db = db
        self.scorer = scorer
        self.params = scorer.cached_params(params)  # the proxy's, which key the cache
        self.relative = params.get("relative", False) and "relative" not in self.params
        self.models = models
        self.test = test
        self.train = train
        self.top_k = top_k
        self.descending = descending
        self.devices = 1
        self.left_out = {}  # model_id -> why it cannot be loaded
        self.recomputed = {}  # reader_id -> {(model, block)} of stale features dispatched again

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
        """Cached values at this fidelity computed on the readers' current content (fingerprints.content_key)."""
        content = self.content(fidelity)
        if content is None:
            return {}
        rows = self.db.execute(
            "SELECT model_id, value, terms::text AS terms FROM shift.scores WHERE proxy = $1 AND params = $2 "
            "AND test_reader = $3 AND train_reader = $4 AND fidelity = $5 AND model_id = ANY($6) AND content = $7",
            ["text", "jsonb", "text", "text", "bigint", "text[]", "text"],
            [self.proxy, canonical_json(self.params), self.test["reader_id"], self.train["reader_id"], fidelity,
             list(models), content])
        # a pool-relative metric's value is its raw terms, combined by present() over the models it is given
        return {r["model_id"]: json.loads(r["terms"]) if r["terms"] else r["value"] for r in rows}

    def content(self, fidelity):
        """The content key of train blocks up to `fidelity` and every test block; None while some were never read."""
        train = block_fingerprints(self.db, self.train, fidelity)
        test = block_fingerprints(self.db, self.test)
        if train is None or test is None:
            return None
        return fingerprints.content_key(train, test)

    def present(self, values):
        return self.scorer.present_pool(values, self.relative)


def setting(db, name, default, convert=str):
    raw = db.setting(name)
    if raw in (None, ""):
        return default
    try:
        return convert(raw)
    except ValueError:
        raise ShiftError("setting %s is %r" % (name, raw), INVALID_PARAMETER) from None


def block_fingerprints(db, reader, fidelity=None):
    """The current fingerprints of the blocks a proxy at `fidelity` (None: all) reads of a reader, in the
    order of versions.content_blocks (a version's are its sources' blocks); None if one was never read."""
    sizes = {r["reader_id"]: r["block_size"] for r in db.execute(
        "SELECT reader_id, block_size FROM shift.readers WHERE reader_id = ANY($1)", ["text[]"],
        [versions.source_ids(reader)])}
    pairs = versions.content_blocks(reader, fidelity, sizes)
    rows = db.execute("SELECT l.reader_id, l.block, l.fingerprint FROM shift.labels l "
                      "JOIN unnest($1::text[], $2::integer[]) AS u(reader_id, block) USING (reader_id, block)",
                      ["text[]", "integer[]"], [[r for r, _ in pairs], [b for _, b in pairs]])
    got = {(r["reader_id"], r["block"]): bytes(r["fingerprint"]) for r in rows}
    if any(p not in got for p in pairs):
        return None
    return [got[p] for p in pairs]


def plain_readers(db, reader):
    """The plain readers behind a reader: a version's sources, or the reader itself."""
    if reader["kind"] != "version":
        return [reader]
    return list(db.execute("SELECT * FROM shift.readers WHERE reader_id = ANY($1) ORDER BY reader_id",
                           ["text[]"], [versions.source_ids(reader)]))


def source_signature(db, reader):
    """The reader's source as it is now: a SQL reader's row digest (PostgreSQL hashes it), a file reader's stat."""
    return fingerprints.source_signature(reader, lambda reader_id: db.one(
        "SELECT shift._reader_digest(current_user, $1) AS d", ["text"], [reader_id])["d"])


def data_signatures(db, readers):
    """{reader_id: fingerprints.content_signature} of these reader rows' data as it is now (a version's: of its
    sources'): one row digest per SQL reader behind them, one stat per file, each source looked at once."""
    sources = sorted({s for r in readers for s in versions.source_ids(r)})
    plain = {r["reader_id"]: r for r in db.execute("SELECT * FROM shift.readers WHERE reader_id = ANY($1)",
                                                   ["text[]"], [sources])}
    now = {s: source_signature(db, plain[s]) for s in sources}
    return {r["reader_id"]: fingerprints.content_signature({s: now[s] for s in versions.source_ids(r)})
            for r in readers}


def changed_sources(db, readers):
    """{reader_id: signature now} of the readers whose source differs from what their cache was validated on."""
    out = {}
    for reader in {r["reader_id"]: r for r in readers}.values():
        now = source_signature(db, reader)
        row = db.one("SELECT signature FROM shift.reader_sources WHERE reader_id = $1", ["text"],
                     [reader["reader_id"]])
        if row is None or row["signature"] != now:
            out[reader["reader_id"]] = now
    return out


def validate(req):
    """Have a worker fingerprint the cached blocks of readers whose source changed (fingerprints.py).

    A reader never validated is validated too (its first query records what its source is);
    with nothing cached that reads nothing. Nothing is enqueued, and no worker needed, while
    every source is as its cache was validated on."""
    changed = changed_sources(req.db, plain_readers(req.db, req.test) + plain_readers(req.db, req.train))
    if not changed:
        return
    queue.require_read_committed(req.db)
    req.devices = queue.require_live_worker(req.db)
    dispatch(req, [("validate", tasks.validate_key(r, sig), tasks.validate_payload(r, sig), [])
                   for r, sig in sorted(changed.items())])


def report_recomputed(req):
    """A NOTICE of the blocks recomputed because their data changed; the count also goes into the plan."""
    if not any(req.recomputed.values()):
        return
    parts = ["%d of reader %s" % (len(pairs), r) for r, pairs in sorted(req.recomputed.items()) if pairs]
    req.db.plpy.notice("recomputed %d block inferences whose data changed (%s)"
                       % (sum(len(p) for p in req.recomputed.values()), ", ".join(parts)),
                       detail="the other cached blocks still hold the data their features were computed from")


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
    validate(req)
    values = req.cached(req.models, n)
    missing = [m for m in req.models if m not in values]
    if not missing:
        record(req, "cached", None, started)
        return values
    mode = setting(req.db, "shift.successive_halving", "auto").lower()
    if mode not in MODES:
        raise ShiftError("shift.successive_halving is %r" % mode, INVALID_PARAMETER, hint="use auto, on or off")
    replayed = replay_halving(req, mode)
    if replayed is not None:
        record(req, "cached", None, started)
        return replayed
    values = plan_and_run(req, mode, missing, started)
    report_recomputed(req)
    return values


def plan_and_run(req, mode, missing, started):
    n = req.train["num_samples"]
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
    """One task per feature block of samples [0, upto) (or of `blocks`) that is missing or stale (tasks.py:
    keyed per block, so devices share the blocks however queries split the reader: §4.3 load balancing).

    A version of a mutable reader has no features of its own: its sources' blocks that a proxy at
    fidelity `upto` reads are inferred, so a change-reader costs inference on its own samples only."""
    if reader["kind"] == "version":
        return [t for src, need in versions.source_blocks(req.db, reader, upto)
                for t in inference_tasks(req, model, src, None, need)]
    rid = reader["reader_id"]
    want = range(tasks.num_blocks(upto, reader["block_size"])) if blocks is None else sorted(blocks)
    fresh, stale = block_states(req.db, [model], rid)
    lacking = [b for b in want if b not in fresh[model]]
    req.recomputed.setdefault(rid, set()).update((model, b) for b in lacking if b in stale[model])
    return [("inference", tasks.inference_key(model, rid, b), tasks.inference_payload(model, rid, [b]), [])
            for b in lacking]


def block_states(db, models, reader_id):
    """Per model, the blocks of a reader whose features are of the blocks' current content, and the stale ones."""
    rows = db.execute(
        "SELECT f.model_id, f.block, f.fingerprint = l.fingerprint AS fresh FROM shift.features f "
        "JOIN shift.labels l USING (reader_id, block) WHERE f.reader_id = $1 AND f.model_id = ANY($2)",
        ["text", "text[]"], [reader_id, list(models)])
    fresh, stale = {m: set() for m in models}, {m: set() for m in models}
    for r in rows:
        (fresh if r["fresh"] else stale)[r["model_id"]].add(r["block"])
    return fresh, stale


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


class _NotCached(Exception):
    pass


def replay_halving(req, mode):
    """The answer of an earlier successive halving of this request, from its cached scores; None without one.

    Algorithm 1 is deterministic given the schedule and the values of each round, so the
    same rounds over the same cached lower-fidelity scores keep the same survivors: the
    models dropped early have no full-fidelity score, and need none. A cost model that
    would now choose a full pass does not change the answer already given."""
    if req.top_k is None or req.top_k >= len(req.models) or mode == "off":
        return None
    sched = halving.schedule(len(req.models), req.train["num_samples"], req.top_k,
                             budget=setting(req.db, "shift.sh_budget", None, int),
                             chunk=setting(req.db, "shift.sh_chunk_size", None, int))
    raw = {}

    def pull(alive, seen):
        got = req.cached(alive, seen)
        if len(got) < len(alive):
            raise _NotCached()
        raw.update(got)
        return req.present(got)

    try:
        alive, _ = halving.run(req.models, sched, pull, req.descending)
    except _NotCached:
        return None
    return {m: raw[m] for m in alive}


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
    # incremental work: only blocks without features of their current content cost inference
    train_codes, train_fresh = fresh_blocks(db, req.models, req.train)
    test_codes, test_fresh = fresh_blocks(db, req.models, req.test)
    if test_codes is None:
        test_cached = {m: cached_samples(req.test, b) for m, b in test_fresh.items()}
    else:
        test_cached = {m: costmodel.samples_in_blocks(test_codes, b) for m, b in test_fresh.items()}
    return costmodel.CostInputs(
        train_samples=req.train["num_samples"], test_samples=req.test["num_samples"], devices=req.devices,
        load_seconds=load, infer_seconds=infer, read_seconds=read["s"] if read else 0.0,
        feature_read_seconds=t_o, proxy_seconds=e_proxy, train_block_size=req.train["block_size"],
        cached_train_blocks=train_fresh, cached_test_samples=test_cached, train_block_codes=train_codes,
        **survival(req))


def fresh_blocks(db, models, reader):
    """(None, {model: blocks}) of a plain reader's blocks whose features are of their current content;
    for a version, (block codes of its samples, {model: codes}) over its sources' blocks."""
    if reader["kind"] != "version":
        fresh, _ = block_states(db, models, reader["reader_id"])
        return None, {m: frozenset(b) for m, b in fresh.items()}
    sources = plain_readers(db, reader)
    codes, number = versions.block_codes(reader, {r["reader_id"]: r["block_size"] for r in sources})
    out = {m: set() for m in models}
    for source in sources:
        fresh, _ = block_states(db, models, source["reader_id"])
        base = number[source["reader_id"]] * versions.BLOCK_CODE_STRIDE
        for m, blocks in fresh.items():
            out[m].update(base + b for b in blocks)
    return codes, {m: frozenset(b) for m, b in out.items()}


def cached_samples(reader, blocks):
    """Samples held by these blocks of a reader (the last block may be short)."""
    n, size = reader["num_samples"], reader["block_size"]
    return sum(min(size, n - b * size) for b in blocks if b * size < n)


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
    terms = dict(est.terms if est else {})
    recomputed = {r: len(pairs) for r, pairs in req.recomputed.items() if pairs}
    if recomputed:
        terms["recomputed_blocks"] = recomputed  # block inferences of changed data, per reader
    plan = dict(scorer=req.scorer.name, params=json.loads(canonical_json(req.params)), model_ids=req.models,
                test_reader=req.test["reader_id"], train_reader=req.train["reader_id"], top_k=req.top_k, mode=mode,
                choice=choice, estimate_full=est.without_sh if est else None,
                estimate_sh=est.with_sh if est else None, terms=terms,
                measured_seconds=time.monotonic() - started)
    req.db.execute("SELECT shift._record_plan(current_user, $1)", ["jsonb"], [json.dumps(plan)])


def cache_states(req):
    """Per plain reader of the request (a version's sources stand for it): its blocks, and over (model,
    block) pairs how many hold features of the block's current content (cached), of older content (stale)
    or none (missing). source_changed: its source differs from what its cache was last validated on, so
    the query validates it first and more blocks may turn out stale."""
    plain = {r["reader_id"]: r for r in plain_readers(req.db, req.train) + plain_readers(req.db, req.test)}
    changed = changed_sources(req.db, list(plain.values()))
    out = {}
    for rid, reader in plain.items():
        nb = tasks.num_blocks(reader["num_samples"], reader["block_size"])
        fresh, stale = block_states(req.db, req.models, rid)
        c = sum(len(fresh[m]) for m in req.models)
        st = sum(len(stale[m]) for m in req.models)
        out[rid] = {"blocks": nb, "models": len(req.models), "cached": c, "stale": st,
                    "missing": nb * len(req.models) - c - st, "source_changed": rid in changed}
    return out


def describe(req):
    """What the planner would do for this request, without running it: for shift.explain.

    Returns the plan it would choose with both estimates and their terms where the
    costs of every model are measured, and the last recorded run of the same request
    with its measured time beside the estimates it had.
    """
    n = req.train["num_samples"]
    cached = req.cached(req.models, n)
    out = {"models": len(req.models), "cached": len(cached), "top_k": req.top_k,
           "mode": setting(req.db, "shift.successive_halving", "auto"),
           "blocks": cache_states(req)}
    if len(cached) == len(req.models):
        out["choice"] = "cached"
    elif replay_halving(req, out["mode"].lower()) is not None:
        out["choice"] = "cached"
        out["why"] = "an earlier successive halving of this request is replayed from its cached scores"
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
