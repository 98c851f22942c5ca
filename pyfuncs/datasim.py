"""Dataset similarity and benchmark results: what SHiFT-QL's Task2Vec and FineTune views call.

Seed 000 §3.1: a DataSimMetric maps a pair of datasets to a real number; §3.4:
a DataSim task computes a reader's embedding (Task2Vec, seed 002) and stores it
with the reader, and "the embeddings are then used to compute the distance
between tasks and rank the readers". Here the distance is pgvector's operator
on the embedding column of shift.readers (scorers.EMBEDDINGS, scorers.DISTANCES).

The meta-learned FineTune ranks models by the fine-tuning results recorded in
shift.finetune_results (pyfuncs.finetune).
"""

from . import scorers
from .arguments import distinct_ids, json_object, require_known, resolve_reader
from .errors import FEATURE_NOT_SUPPORTED, WRONG_OBJECT_TYPE, ShiftError


def _vector_operator(db, distance):
    """pgvector's operator for a distance, qualified with the schema pgvector lives in (search_path is pinned)."""
    row = db.one("SELECT quote_ident(n.nspname) AS schema FROM pg_catalog.pg_extension e "
                 "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'")
    return "OPERATOR(%s.%s)" % (row["schema"], scorers.DISTANCES[distance])


def dataset_similarity(db, metric_name, params, reader_ids, target_reader):
    """(reader_id, distance to the target reader) per reader but the target itself: shift.dataset_similarity."""
    metric = scorers.get_datasim_metric(metric_name or "")
    metric.resolve(json_object(params))
    target = resolve_reader(db, target_reader)
    readers = distinct_ids(reader_ids)
    if not readers:
        return []
    require_known(db, "reader", readers)
    column = scorers.EMBEDDINGS[metric.proxy]  # a fixed column name from the registry, not user input
    lacking = [r["reader_id"] for r in db.execute(
        "SELECT reader_id FROM shift.readers WHERE reader_id = ANY($1) AND %s IS NULL ORDER BY reader_id" % column,
        ["text[]"], [readers + [target["reader_id"]]])]
    if lacking:
        raise ShiftError(
            "the %s embeddings of reader%s %s are not computed" % (
                metric.name, "s" if len(lacking) > 1 else "", ", ".join(lacking)),
            FEATURE_NOT_SUPPORTED,
            detail="dataset similarity metric %s compares the embeddings stored in shift.readers.%s"
                   % (metric.name, column),
            hint="computing %s embeddings (DataSim tasks, seed 000 §3.4) is not supported by this version of "
                 "shift yet; an embedding already stored in shift.readers.%s is used as it is"
                 % (metric.name, column))
    rows = db.execute(
        "SELECT r.reader_id, (r.%s %s t.%s)::double precision AS score FROM shift.readers r, shift.readers t "
        "WHERE t.reader_id = $2 AND r.reader_id = ANY($1)"
        % (column, _vector_operator(db, metric.fixed["distance"]), column),
        ["text[]", "text"], [readers, target["reader_id"]])
    by_id = {r["reader_id"]: r["score"] for r in rows}
    # the target is not one of its own similar readers: it would always come first, at distance 0
    return [(r, by_id[r]) for r in readers if r != target["reader_id"]]


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
