"""scoring.py: a block ordered by metadata, or ranked by a scorer or metric as a pool and one function call."""

import pytest
from sqlglot import exp

from pyfuncs import scorers
from pyfuncs.errors import DUPLICATE_COLUMN, WRONG_OBJECT_TYPE, ShiftError
from pyfuncs.shiftql.expressions import sources
from pyfuncs.shiftql.names import Scope
from pyfuncs.shiftql.plan import ScoringUse
from pyfuncs.shiftql.scoring import metadata_view, ranked_view
from tests.shiftql_passes import CAT, statement, text_of


def parts(text):
    ctx, select = statement(text, CAT)
    found, from_, joins = sources(ctx, select, None)
    keys = list(select.args["order"].expressions) if select.args.get("order") else []
    return ctx, select, Scope(found), found[0], from_, joins, keys


def metadata(text):
    ctx, select, scope, subject, from_, joins, keys = parts(text)
    return ctx, metadata_view(ctx, select, scope, subject, from_, joins, keys)


def ranked(text, label=None):
    ctx, select, scope, subject, from_, joins, keys = parts(text)
    this = keys[0].this
    name, args = (this.this, list(this.expressions)) if isinstance(this, exp.Anonymous) else (this.name, [])
    return ctx, ranked_view(ctx, select, label, scope, subject, from_, joins, keys[0], scorers.get(name), args)


def test_the_score_of_a_metadata_view_is_its_first_order_key_as_a_number():
    ctx, built = metadata("SELECT ModelId FROM Models ORDER BY NumParams DESC LIMIT 2")
    assert text_of(built.query) == (
        "SELECT models.model_id AS model_id, CAST(models.num_params AS DOUBLE PRECISION) AS score "
        "FROM shift.models AS models ORDER BY models.num_params DESC NULLS LAST, models.model_id LIMIT 2")
    assert built.columns == ["model_id", "score"] and built.descending and built.block
    assert ctx.ctes == [] and ctx.uses == []


def test_a_text_order_key_scores_null_and_no_order_key_too():
    _, built = metadata("SELECT ModelId FROM Models ORDER BY Framework")
    assert "CAST(NULL AS DOUBLE PRECISION) AS score" in text_of(built.query)
    _, built = metadata("SELECT ModelId, Framework FROM Models")
    assert text_of(built.query).startswith("SELECT models.model_id AS model_id, CAST(NULL AS DOUBLE PRECISION)")
    assert built.columns == ["model_id", "score", "framework"]


def test_nulls_first_is_kept_only_where_written():
    _, built = metadata("SELECT ModelId FROM Models ORDER BY UpstreamAccuracy NULLS FIRST")
    assert "ORDER BY models.upstream_accuracy ASC NULLS FIRST, models.model_id" in text_of(built.query)
    _, built = metadata("SELECT ModelId FROM Models ORDER BY UpstreamAccuracy DESC")
    assert "ORDER BY models.upstream_accuracy DESC NULLS LAST, models.model_id" in text_of(built.query)


def test_a_proxy_view_is_a_pool_and_one_call_of_shift_score_with_top_k():
    ctx, built = ranked("SELECT ModelId, Framework FROM Models WHERE Input = 'Vision' ORDER BY CosineNN DESC "
                        "LIMIT 3 TESTED ON TestReader TRAINED ON TrainReader", "q")
    assert [name for name, _ in ctx.ctes] == ["q_pool"]
    assert text_of(ctx.ctes[0][1]) == ("SELECT models.model_id AS model_id, models.framework FROM shift.models "
                                       "AS models WHERE models.input = 'Vision'")
    sql = text_of(built.query)
    assert "JOIN shift.score('CosineNN', CAST('{\"k\":1,\"metric\":\"cosine\"}' AS JSONB), " \
           "ARRAY(SELECT model_id FROM q_pool), " \
           "'TestReader', 'TrainReader', 3, TRUE) AS s ON s.model_id = p.model_id" in sql
    assert ctx.uses == [("q_pool", ScoringUse("CosineNN", {"k": 1, "metric": "cosine"}, "TestReader", "TrainReader"))]
    assert ctx.requests == [("q_pool", ctx.uses[0][1], 3, True)]
    assert built.plan.kind == "scoring view"


def test_finetune_without_readers_joins_the_readers_and_reads_benchmark_scores():
    ctx, built = ranked("SELECT ModelId FROM Models ORDER BY FineTune")
    pool = text_of(ctx.ctes[0][1])
    assert "readers.reader_id AS reader_id" in pool and "CROSS JOIN shift.readers AS readers" in pool
    assert "shift.benchmark_scores('FineTune'" in text_of(built.query)
    assert ctx.uses[0][1].test_reader is None and ctx.requests == []


def test_a_metric_ranks_readers_and_a_scorer_models():
    ctx, built = ranked("SELECT ReaderId FROM DataReaders ORDER BY Task2Vec LIMIT 2 TESTED AGAINST TestReader")
    assert "shift.dataset_similarity('Task2Vec'" in text_of(built.query)
    assert built.key == "reader_id" and ctx.similar[0][1].target_reader == "TestReader"
    with pytest.raises(ShiftError) as raised:
        ranked("SELECT ModelId FROM Models ORDER BY Task2Vec TESTED AGAINST TestReader")
    assert raised.value.sqlstate == WRONG_OBJECT_TYPE


def test_the_pool_refuses_a_column_selected_twice():
    with pytest.raises(ShiftError) as raised:
        ranked("SELECT ModelId, Framework AS f, Input AS f FROM Models ORDER BY CosineNN "
               "TESTED ON TestReader TRAINED ON TrainReader")
    assert raised.value.sqlstate == DUPLICATE_COLUMN
