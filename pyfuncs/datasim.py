"""Dataset similarity and benchmark results: what SHiFT-QL's Task2Vec and FineTune views call.

Seed 000 §3.1: a DataSimMetric maps a pair of datasets to a real number; §3.3-§3.4:
"if the embedding for the downstream task reader is not in the database, the
system will dispatch a DataSim task to compute it. The embeddings are then used
to compute the distance between tasks and rank the readers". Here the embeddings
are rows of shift.task_embeddings keyed by (reader, reader version, kind, settings);
the missing ones are queued as datasim tasks and waited for like features, then
the readers are ranked by a distance of pyfuncs.embeddings. Embeddings of
different settings are never compared. Each embedding records the signature of
its reader's data (a SQL reader's row digest, a file reader's stat); the readers
whose embeddings are compared exactly have it checked against their data as it
is now, and one whose data changed is embedded again.

Ranking the nearest readers of a large pool by the normalised cosine uses the
HNSW index of shift.task_embeddings.index_vector for candidates, re-ranked exactly;
the other distances are not cosines of per-task vectors and are computed exactly.

The meta-learned FineTune ranks models by the fine-tuning results recorded in
shift.finetune_results (pyfuncs.finetune).
"""

import json

import numpy as np

from . import embeddings, planner, queue, scorers, tasks, versions
from .arguments import distinct_ids, json_object, require_known, resolve_reader
from .arguments import missing as missing_error
from .errors import INTERNAL_ERROR, INVALID_PARAMETER, UNDEFINED_OBJECT, WRONG_OBJECT_TYPE, ShiftError

PROBE_SETTING = "shift.task2vec_probe"
PROBE_SOURCES = ("timm", "torchvision", "torchscript")  # PyTorch modules a worker can take gradients of
DEFAULT_MAX_SAMPLES = scorers.get("Task2Vec").resolve({})["max_samples"]
INDEX_MIN_POOL = 200     # below this many embeddings an exact scan is as fast as the index
INDEX_CANDIDATES = 4     # the index proposes this many times k candidates (at least 40) to re-rank


def settings(db, params):
    """The settings of the embeddings a Task2Vec ranking compares: the probe chosen, every other setting."""
    probe = params.get("probe") or (db.setting(PROBE_SETTING) or "").strip()
    if not probe:
        raise ShiftError("no task2vec probe is chosen", INVALID_PARAMETER,
                         detail="Task2Vec embeds a reader with a probe network, a registered model",
                         hint="write Task2Vec(probe='model_id'), or set %s (e.g. ALTER DATABASE ... SET %s = "
                              "'model_id')" % (PROBE_SETTING, PROBE_SETTING))
    out = {k: params[k] for k in scorers.TASK2VEC_SETTINGS}
    out["probe"] = probe
    return out


def _probe(db, probe):
    row = db.one("SELECT model_id, source, input FROM shift.models WHERE model_id = $1", ["text"], [probe])
    if row is None:
        known = [r["model_id"] for r in db.execute("SELECT model_id FROM shift.models")]
        from .errors import unknown
        err = unknown("model", probe, known)
        err.message = "unknown task2vec probe %r" % probe
        raise err
    if row["source"] not in PROBE_SOURCES:
        raise ShiftError("task2vec probe %s is a %s model, not a PyTorch module" % (probe, row["source"]),
                         WRONG_OBJECT_TYPE,
                         detail="the Fisher information needs the gradients of the probe's weights",
                         hint="choose a %s model as the probe" % ", ".join(PROBE_SOURCES))
    return row


def _check_computable(readers, probe, given):
    """What makes a reader's embedding impossible with these settings, before anything is queued."""
    for r in readers:
        if len(r["classes"]) < 2:
            raise ShiftError("reader %s has one class (%s); a task2vec embedding needs two or more"
                             % (r["reader_id"], ", ".join(r["classes"])), INVALID_PARAMETER,
                             hint="leave it out of the pool of readers, e.g. WHERE DataReaderId <> '%s'"
                                  % r["reader_id"])
        # SHiFT-QL passes every parameter resolved, so the default reads "up to"; another value is a request
        if given.get("max_samples", DEFAULT_MAX_SAMPLES) != DEFAULT_MAX_SAMPLES \
                and r["num_samples"] < given["max_samples"]:
            raise ShiftError("reader %s has %d samples, fewer than max_samples %d"
                             % (r["reader_id"], r["num_samples"], given["max_samples"]), INVALID_PARAMETER,
                             hint="ask for at most %d samples; the default max_samples (%d) reads all of a "
                                  "smaller reader" % (r["num_samples"], DEFAULT_MAX_SAMPLES))
        if r["input"] != probe["input"]:
            raise ShiftError("reader %s holds %s samples, but task2vec probe %s reads %s inputs"
                             % (r["reader_id"], r["input"], probe["model_id"], probe["input"]), WRONG_OBJECT_TYPE,
                             hint="choose a probe for %s data, or rank only %s readers (WHERE Input = '%s')"
                                  % (r["input"], probe["input"], probe["input"]))


def _versions(db, readers):
    """{reader_id: shift._reader_version} of the readers the caller can see (one scan of shift.readers)."""
    return {r["reader_id"]: r["v"] for r in db.execute(
        "SELECT r.reader_id, shift._version_of(r) AS v FROM shift.readers r WHERE r.reader_id = ANY($1)",
        ["text[]"], [readers])}


def _missing(db, chosen, readers, current, signatures=None):
    """The readers without an embedding with these settings of their current version (with `signatures`, of
    the data they name): over a whole pool, one look-up that spares each row its row-security check."""
    if signatures is None:
        return db.one("SELECT shift._lacking_embeddings(current_user, 'task2vec', $1, $2, $3) AS ids",
                      ["jsonb", "text[]", "text[]"],
                      [scorers.canonical_json(chosen), readers, [current.get(r) for r in readers]])["ids"]
    have = stored(db, "task2vec", chosen, readers, current, values=False, signatures=signatures)
    return [r for r in readers if r not in have]


def stored(db, kind, chosen, readers, current, values=True, signatures=None):
    """{reader_id: {embedding, scale}} of the readers' current versions with exactly these settings
    (without values: {reader_id: None}, which reads no arrays); with `signatures`, only of the data they
    name for the readers they name."""
    rows = db.execute(
        "SELECT e.reader_id, e.reader_version, e.source_signature%s FROM shift.task_embeddings e "
        "WHERE e.kind = $1 AND e.settings = $2 AND e.reader_id = ANY($3)" % (", e.embedding, e.scale" if values else ""),
        ["text", "jsonb", "text[]"], [kind, scorers.canonical_json(chosen), readers])
    signatures = signatures or {}
    return {r["reader_id"]: {"embedding": np.asarray(r["embedding"], dtype=np.float64),
                             "scale": np.asarray(r["scale"], dtype=np.float64)} if values else None
            for r in rows if current.get(r["reader_id"]) == r["reader_version"]
            and signatures.get(r["reader_id"], r["source_signature"]) == r["source_signature"]}


def content_signatures(db, readers):
    """{reader_id: fingerprints.content_signature} of the readers' data as it is now (planner.data_signatures)."""
    return planner.data_signatures(db, list(db.execute("SELECT * FROM shift.readers WHERE reader_id = ANY($1)",
                                                       ["text[]"], [readers])))


def ensure(db, chosen, readers, given, signatures=None, current=None):
    """The current versions of the readers, once each has an embedding with these settings (with
    `signatures`, of the data they name): datasim tasks are queued for the missing ones and waited for."""
    current = current or _versions(db, readers)
    missing = _missing(db, chosen, readers, current, signatures)
    if not missing:
        return current
    probe = _probe(db, chosen["probe"])
    rows = list(db.execute("SELECT reader_id, kind, options, num_samples, classes, input FROM shift.readers "
                           "WHERE reader_id = ANY($1) ORDER BY reader_id", ["text[]"], [missing]))
    _check_computable(rows, probe, given)
    queue.require_read_committed(db)
    queue.require_live_worker(db)
    signatures = {**content_signatures(db, [r for r in missing if r not in (signatures or {})]), **(signatures or {})}
    planned = [("datasim", tasks.datasim_key(r, current[r], chosen, signatures[r]),
                tasks.datasim_payload(r, current[r], chosen, signatures[r]), []) for r in missing]
    # a version reads its sources: the rights on them are checked with the task's
    queue.wait(db, queue.enqueue(db, planned, [chosen["probe"]], set(missing).union(*map(versions.source_ids, rows))))
    current = _versions(db, readers)
    lost = _missing(db, chosen, missing, current, {r: signatures[r] for r in missing})
    if lost:
        raise ShiftError("task2vec embedding of reader %s is missing after its datasim task finished" % lost[0],
                         INTERNAL_ERROR, hint="its reader may have changed meanwhile; run the query again")
    return current


def _vector_operator(db, op):
    """pgvector's operator, qualified with the schema pgvector lives in (search_path is pinned)."""
    row = db.one("SELECT quote_ident(n.nspname) AS schema FROM pg_catalog.pg_extension e "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'")
    return "OPERATOR(%s.%s)" % (row["schema"], op)


def uses_index(distance, pool_size, top_k, descending):
    """Whether the HNSW index proposes the candidates: a cosine form, the nearest few of a large pool."""
    return (distance in embeddings.INDEXED and top_k is not None and not descending
            and pool_size >= INDEX_MIN_POOL)


def _index_candidates(db, chosen, target, readers, top_k):
    """The readers nearest the target by the index vectors' cosine (HNSW), to be re-ranked exactly.

    The target's vector is a scalar sub-query, a constant of the scan: an ORDER BY over a join
    cannot use the index. The pool and row security filter what the index yields, so the scan
    goes on past ef_search until it has enough (pgvector's iterative scan; the order of what it
    returns is then approximate, which the exact re-ranking makes good)."""
    n = max(INDEX_CANDIDATES * top_k, 40)
    db.execute("SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', "
               "true)", ["text"], [str(min(n, 1000))])
    rows = db.execute(
        "SELECT e.reader_id FROM shift.task_embeddings e "
        "WHERE e.kind = 'task2vec' AND e.settings = $1 AND e.reader_id = ANY($3) "
        "ORDER BY e.index_vector %s (SELECT t.index_vector FROM shift.task_embeddings t "
        "WHERE t.kind = 'task2vec' AND t.settings = $1 AND t.reader_id = $2 "
        "AND t.reader_version = shift._reader_version($2)) LIMIT %d" % (_vector_operator(db, "<=>"), n),
        ["jsonb", "text", "text[]"], [scorers.canonical_json(chosen), target, readers])
    return [r["reader_id"] for r in rows]


def dataset_similarity(db, metric_name, params, reader_ids, target_reader, top_k=None, descending=False):
    """(reader_id, distance to the target reader) per reader but the target itself: shift.dataset_similarity."""
    metric = scorers.get_datasim_metric(metric_name or "")
    given = json_object(params)
    # a registered variant (say, fixed={"distance": "symmetric"}) takes Task2Vec's other settings
    resolved = {**scorers.get("Task2Vec").resolve({}), **metric.resolve(given)}
    target = resolve_reader(db, target_reader)
    readers = [r for r in distinct_ids(reader_ids) if r != target["reader_id"]]
    if not readers:
        return []
    current = _versions(db, [target["reader_id"]] + readers)
    unknown = next((r for r in readers if r not in current), None)
    if unknown is not None:
        raise missing_error(db, "reader", unknown)
    chosen = settings(db, resolved)
    if top_k is not None and top_k < 1:
        raise ShiftError("top_k must be positive, not %d" % top_k, INVALID_PARAMETER)
    ensure(db, chosen, [target["reader_id"]] + readers, given, current=current)
    if uses_index(resolved["distance"], len(readers), top_k, descending):
        candidates = set(_index_candidates(db, chosen, target["reader_id"], readers, top_k))
        if len(candidates) >= min(top_k, len(readers)):
            readers = [r for r in readers if r in candidates]
    # the embeddings compared must be of their readers' data as it is now (with the index: the target's and
    # its candidates'; a candidate embedded again is re-ranked by its new embedding)
    compared = [target["reader_id"]] + readers
    signatures = content_signatures(db, compared)
    current = ensure(db, chosen, compared, given, signatures)
    have = stored(db, "task2vec", chosen, compared, current, signatures=signatures)
    t = have[target["reader_id"]]
    # the target is not one of its own similar readers: it would always come first, at distance 0
    return [(r, embeddings.distance(resolved["distance"], t, have[r], resolved["alpha"])) for r in readers]


def task_distance(db, reader_a, reader_b, distance, alpha, settings_a, settings_b):
    """shift.task_distance: the distance between the stored task2vec embeddings of two readers.

    Without settings, a reader's only stored embedding (of its current version) is taken. Two
    embeddings made with different settings are not compared.
    """
    if distance not in embeddings.DISTANCES:
        raise ShiftError("unknown task distance %r" % distance, INVALID_PARAMETER,
                         hint="choose one of %s" % ", ".join(embeddings.DISTANCES))
    picked = []
    for reader, chosen in ((reader_a, settings_a), (reader_b, settings_b)):
        r = resolve_reader(db, reader)["reader_id"]
        rows = list(db.execute(
            "SELECT settings::text AS settings, embedding, scale FROM shift.task_embeddings "
            "WHERE kind = 'task2vec' AND reader_id = $1 AND reader_version = shift._reader_version($1) "
            "AND ($2::jsonb IS NULL OR settings @> $2::jsonb) ORDER BY computed_at DESC",
            ["text", "text"], [r, None if chosen is None else json.dumps(json_object(chosen))]))
        if not rows:
            raise ShiftError("reader %s has no task2vec embedding%s" % (r, "" if chosen is None else
                                                                          " with settings %s" % chosen),
                             UNDEFINED_OBJECT,
                             hint="a query ranking by Task2Vec TESTED AGAINST %s computes them" % r)
        if len(rows) > 1 and chosen is None:
            raise ShiftError("reader %s has %d task2vec embeddings of different settings" % (r, len(rows)),
                             INVALID_PARAMETER, detail="; ".join(x["settings"] for x in rows[:3]),
                             hint="name the settings to compare, e.g. settings_a => '{\"max_samples\": 100}'")
        picked.append((r, json.loads(rows[0]["settings"]), rows[0]))
    (ra, sa, ea), (rb, sb, eb) = picked
    differing = embeddings.settings_difference(sa, sb)
    if differing:
        raise ShiftError("the task2vec embeddings of readers %s and %s differ in setting %s: %s and %s"
                         % (ra, rb, differing, json.dumps(sa.get(differing)), json.dumps(sb.get(differing))),
                         INVALID_PARAMETER,
                         detail="embeddings made with different settings are not comparable",
                         hint="compute both with the same Task2Vec parameters")
    a, b = ({"embedding": np.asarray(e["embedding"], dtype=np.float64),
             "scale": np.asarray(e["scale"], dtype=np.float64)} for e in (ea, eb))
    return embeddings.distance(distance, a, b, alpha)


def benchmark_scores(db, scorer_name, params, model_ids, reader_ids):
    """(model_id, reader_id, score) of recorded fine-tuning results: shift.benchmark_scores (Q5 of §3.2)."""
    scorer = scorers.get(scorer_name or "")
    if scorer.kind != "finetune":
        raise ShiftError("%s has no benchmark results; only fine-tuning scorers do" % scorer.name,
                         WRONG_OBJECT_TYPE,
                         hint="rank by %s with TESTED ON test_reader TRAINED ON train_reader" % scorer.name)
    resolved = scorer.resolve(json_object(params))
    models, readers = distinct_ids(model_ids), distinct_ids(reader_ids)
    if not models or not readers:
        return []
    require_known(db, "model", models)
    require_known(db, "reader", readers)
    from . import finetune
    return finetune.benchmark_scores(db, scorer, resolved, models, readers)
