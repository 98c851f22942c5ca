"""Mutable readers (seed 000 §3.1, §5) on the real system, as a non-superuser with the worker as shift_worker.

Random sequences of change-, add- and delete-steps: the proxy values of the incremental run
equal those of a from-scratch run on a plain reader holding the final data, and only the
samples of the steps are inferred. Older versions stay queryable with their own scores; bad
steps fail with a SQLSTATE and write nothing; readers stay private.
"""

import json
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from gpu_daemon import readers
from shift_cli.testbed import Database, WorkerProcess, digits, register_model

PASSWORD = "pw-" + uuid.uuid4().hex
BLOCK = 32
N_BASE, N_POOL = 160, 400
SCORERS = [("CosineNN", "{}"), ("EuclideanNN", "{}")]


def connect_as(database, role):
    return psycopg.connect(make_conninfo(database.dsn, user=role, password=PASSWORD), autocommit=True)


class Data:
    """Dana's tables: the pool of digits behind every reader, and the readers over id ranges of it."""

    def __init__(self, conn, schema, x, y):
        self.conn, self.schema, self.x, self.y = conn, schema, x, y
        conn.execute("CREATE TABLE %s.pool (id integer PRIMARY KEY, x real[] NOT NULL, y integer NOT NULL)" % schema)
        with conn.cursor().copy("COPY %s.pool (id, x, y) FROM STDIN" % schema) as copy:
            for i, (a, b) in enumerate(zip(x, y)):
                copy.write_row((i, a.ravel().tolist(), int(b)))
        self.next_id = 0

    def reader(self, name, ids, block=BLOCK):
        """A SQL reader over pool rows `ids`, in that order (through a table of their own)."""
        table = "%s.%s" % (self.schema, name.lower())
        # numbered by the ids' order: a join need not keep it, and ids need not ascend
        self.conn.execute("CREATE TABLE %s AS SELECT row_number() OVER (ORDER BY o) AS pos, p.* "
                          "FROM unnest(%%s::int[]) WITH ORDINALITY u(id, o) JOIN %s.pool p USING (id)"
                          % (table, self.schema),
                          (list(map(int, ids)),))
        self.conn.execute("SELECT shift.register_sql_reader(%%s, 'SELECT x, y FROM %s ORDER BY pos', "
                          "options => '{\"shape\": [8, 8]}', block_size => %d)" % (table, block), (name,))
        return list(ids)

    def fresh(self, n):
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        return ids


@pytest.fixture(scope="module")
def mdb(cluster, zoo):
    suffix = uuid.uuid4().hex[:6]
    dana, eve = "dana_" + suffix, "eve_" + suffix
    (x, y), (test_x, test_y) = digits(n_train=N_POOL + N_BASE, n_test=60, seed=5)
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        for name in (dana, eve):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(PASSWORD)))
    with Database(cluster, "shift_mutable") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            for name in (dana, eve):
                conn.execute("SELECT shift.grant_usage(%s::regrole)", (name,))
                conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(*[sql.Identifier(name)] * 2))
        conn = connect_as(database, dana)
        # the initial readers hold no digit 9: a step brings the class in
        no_nine = np.flatnonzero(y != 9)[:N_BASE]
        rest = np.setdiff1d(np.arange(len(y)), no_nine)
        order = np.concatenate([no_nine, np.random.default_rng(1).permutation(rest)])
        data = Data(conn, dana, np.concatenate([x[order], test_x]), np.concatenate([y[order], test_y]))
        test_ids = list(range(N_POOL + N_BASE, N_POOL + N_BASE + 60))
        data.reader("MTest", test_ids)
        data.next_id = 0
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-mutable.log", "mutable").wait_ready()
        try:
            yield database, conn, data, dana, eve, [m["model_id"] for m in zoo]
        finally:
            worker.stop()
            conn.close()
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
        for name in (dana, eve):
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def scores(conn, scorer, params, models, train, test="MTest"):
    return dict(conn.execute("SELECT model_id, score FROM shift.score(%s, %s, %s, %s, %s)",
                             (scorer, params, models, test, train)).fetchall())


def inferred(conn):
    """{(model, reader): samples} of the features cached so far."""
    return {(m, r): n for m, r, n in conn.execute(
        "SELECT model_id, reader_id, sum(num_rows) FROM shift.features GROUP BY 1, 2").fetchall()}


def test_random_steps_equal_a_from_scratch_run_and_infer_only_the_steps(mdb):
    database, conn, data, _, _, models = mdb
    models = models[:2]
    rng = np.random.default_rng(11)
    base = data.reader("MBase", data.fresh(N_BASE))
    assert 9 not in data.y[base]
    conn.execute("SELECT shift.create_mutable_reader('M', 'MBase')")
    first = {s: scores(conn, s, p, models, "M") for s, p in SCORERS}
    assert first == {s: scores(conn, s, p, models, "MBase") for s, p in SCORERS}
    current, steps = list(base), {}
    for k, kind in enumerate(["change", "add", "delete", "change", "add", "change"]):
        name = "MStep%d" % k
        if kind == "change":
            where = rng.choice(len(current), size=int(rng.integers(5, BLOCK)), replace=False)
            ids = data.reader(name, data.fresh(len(where)))
            conn.execute("SELECT shift.change_reader('M', %s, %s)", (name, [int(i) for i in where]))
            for j, i in enumerate(where):
                current[i] = ids[j]
            steps[name] = len(ids)
        elif kind == "add":
            ids = data.reader(name, data.fresh(int(rng.integers(5, BLOCK))))
            conn.execute("SELECT shift.add_to_reader('M', %s)", (name,))
            current += ids
            steps[name] = len(ids)
        else:
            where = rng.choice(len(current), size=7, replace=False)
            conn.execute("SELECT shift.delete_from_reader('M', %s)", ([int(i) for i in where],))
            current = [c for i, c in enumerate(current) if i not in set(where.tolist())]
    versions = conn.execute("SELECT version, version_reader, step, num_samples, classes "
                            "FROM shift.reader_versions('M')").fetchall()
    assert [v[0] for v in versions] == list(range(1, 8)) and versions[-1][1] == "M@7"
    assert [v[2] for v in versions] == ["initial", "change", "add", "delete", "change", "add", "change"]
    assert versions[-1][3] == len(current)
    assert "9" in versions[-1][4] and "9" not in versions[0][4]  # a step brought class 9 in

    before = inferred(conn)
    incremental = {s: scores(conn, s, p, models, "M") for s, p in SCORERS}
    after = inferred(conn)
    new = {key: n - before.get(key, 0) for key, n in after.items() if n != before.get(key, 0)}
    # only the step readers still read by the final version were inferred, each once per model
    segments = conn.execute("SELECT options->'segments' FROM shift.readers WHERE reader_id = 'M@7'").fetchone()[0]
    used = {s[0] for s in segments} - {"MBase"}
    assert new == {(m, r): steps[r] for m in models for r in used}

    data.reader("MFinal", current)
    scratch = {s: scores(conn, s, p, models, "MFinal") for s, p in SCORERS}
    assert incremental == scratch
    # the first version keeps its scores, and the latest has its own
    assert {s: scores(conn, s, p, models, "M@1") for s, p in SCORERS} == first
    keys = {r for (r,) in conn.execute("SELECT DISTINCT train_reader FROM shift.scores").fetchall()}
    assert {"M@1", "M@7", "MBase", "MFinal"} <= keys
    # seed 000 §5, scenario 1: a model added to the query is the only one that runs
    everyone = mdb[5]
    before = inferred(conn)
    assert set(scores(conn, "CosineNN", "{}", everyone, "M")) == set(everyone)
    grown = {key for key, n in inferred(conn).items() if n != before.get(key, 0)}
    assert grown and {m for m, _ in grown} == set(everyone) - set(models)


def test_an_older_version_is_answered_from_the_cache_and_by_shiftql(mdb):
    database, conn, data, _, _, models = mdb
    models = models[:2]
    data.reader("OBase", data.fresh(40))
    conn.execute("SELECT shift.create_mutable_reader('O', 'OBase')")
    old = scores(conn, "CosineNN", "{}", models, "O")
    data.reader("OFix", data.fresh(10))
    assert conn.execute("SELECT shift.change_reader('O', 'OFix', %s)", (list(range(10)),)).fetchone()[0] == 2
    tasks = conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0]
    assert scores(conn, "CosineNN", "{}", models, "O@1") == old
    assert conn.execute("SELECT count(*) FROM shift.tasks").fetchone()[0] == tasks  # nothing ran
    rows = conn.execute("SELECT * FROM shift.query($$ SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 2 "
                        "TESTED ON MTest TRAINED ON 'O@1' $$)").fetchall()
    assert len(rows) == 2
    latest = conn.execute("SELECT * FROM shift.query($$ SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 2 "
                          "TESTED ON MTest TRAINED ON O $$)").fetchall()
    assert len(latest) == 2
    trains = {r for (r,) in conn.execute("SELECT DISTINCT train_reader FROM shift.scores "
                                         "WHERE train_reader LIKE 'O@%'").fetchall()}
    assert trains == {"O@1", "O@2"}


def test_successive_halving_spreads_added_samples_over_its_rounds(mdb):
    database, conn, data, _, _, models = mdb
    data.reader("SBase", data.fresh(64), block=8)
    data.reader("SAdd", data.fresh(32), block=8)
    conn.execute("SELECT shift.create_mutable_reader('S', 'SBase')")
    conn.execute("SELECT shift.add_to_reader('S', 'SAdd')")
    conn.execute("SET shift.successive_halving = 'on'")
    try:
        best = conn.execute("SELECT model_id FROM shift.score('CosineNN', '{}', %s, 'MTest', 'S', top_k => 1)",
                            (models,)).fetchall()
    finally:
        conn.execute("RESET shift.successive_halving")
    assert len(best) == 1
    choice, terms = conn.execute("SELECT choice, terms FROM shift.plans WHERE train_reader = 'S@2' "
                                 "ORDER BY plan_id DESC LIMIT 1").fetchone()
    assert choice == "successive halving" and "spread uniformly" in terms["sample_order"]
    # 3 models, top-1: rounds of 48 and 96 samples; the first round's 48 held SAdd's share, 16 of them
    assert [(r["models"], r["R_k"]) for r in terms["rounds"]] == [(3, 48), (2, 96)]
    dropped = (set(models) - set(terms["survivors"][0])).pop()
    seen = dict(conn.execute("SELECT reader_id, sum(num_rows) FROM shift.features WHERE model_id = %s "
                             "AND reader_id IN ('SBase', 'SAdd') GROUP BY 1", (dropped,)).fetchall())
    assert seen == {"SBase": 32, "SAdd": 16}  # appended at the end, the first round would have seen none


def test_the_cost_model_of_a_new_version_counts_only_its_samples_without_features(mdb):
    database, conn, data, _, _, models = mdb
    data.reader("CBase", data.fresh(64), block=8)
    data.reader("CFix", data.fresh(8), block=8)
    conn.execute("SELECT shift.create_mutable_reader('C', 'CBase')")
    scores(conn, "CosineNN", "{}", models, "C")  # every model infers all of CBase, as version C@1
    conn.execute("SELECT shift.change_reader('C', 'CFix', %s)", (list(range(0, 64, 8)),))
    engine = dict(conn.execute("SELECT section, content FROM shift.explain(%s)", (
        "SELECT ModelId FROM Models ORDER BY CosineNN LIMIT 1 TESTED ON MTest TRAINED ON C",)).fetchall())["engine"]
    described = json.loads(engine[engine.index(": {") + 2:])
    # C@2 is CBase's blocks, all inferred, and CFix's one block, inferred by no model
    assert described["terms"]["N"] == 64 and described["terms"]["missing_N"] == 8 * len(models)
    assert described["terms"]["missing_O"] == 0
    assert described["blocks"]["CFix"] == {"blocks": 1, "models": len(models), "cached": 0, "stale": 0,
                                           "missing": len(models), "source_changed": True}


def test_fine_tuning_and_task2vec_read_a_version_from_its_sources(mdb):
    database, conn, data, _, _, models = mdb
    base = data.reader("FBase", data.fresh(48), block=8)
    fixes = data.reader("FFix", data.fresh(8), block=8)
    where = [1, 9, 10, 20, 30, 40, 41, 47]
    conn.execute("SELECT shift.create_mutable_reader('F', 'FBase')")
    conn.execute("SELECT shift.change_reader('F', 'FFix', %s)", (where,))
    flat = list(base)
    for j, i in enumerate(where):
        flat[i] = fixes[j]
    data.reader("FFlat", flat, block=8)  # the samples of F@2, in its order, as one plain reader
    classes = dict(conn.execute("SELECT reader_id, classes FROM shift.readers WHERE reader_id IN ('F@2', 'FFlat')"))
    assert classes["F@2"] == classes["FFlat"]
    # a worker reads the version's blocks from its sources: the flat reader's samples and labels
    with psycopg.connect(database.worker_dsn, autocommit=True) as worker:
        rows = {r["reader_id"]: r for r in worker.cursor(row_factory=dict_row).execute(
            "SELECT * FROM shift.readers WHERE reader_id IN ('F@2', 'FFlat')").fetchall()}
        got = {r: list(readers.iter_blocks(row, range(6), conn=worker)) for r, row in rows.items()}
    for (bv, xv, yv), (bf, xf, yf) in zip(got["F@2"], got["FFlat"], strict=True):
        differ = [i for i in range(len(xv)) if not np.array_equal(xv[i], xf[i])]
        assert bv == bf and not differ and np.array_equal(yv, yf), (bv, differ, yv, yf)
    protocol = json.dumps({"steps": 3, "batch_size": 16})
    tuned = {train: conn.execute("SELECT model_id, test_accuracy, validation_accuracy FROM shift.finetune(%s, %s, "
                                 "'FFlat', 'FFlat', %s)", (models[:1], train, protocol)).fetchall()
             for train in ("F", "FFlat")}
    assert tuned["F"] == tuned["FFlat"] and len(tuned["F"]) == 1
    assert conn.execute("SELECT count(*) FROM shift.finetune_results WHERE train_reader = 'F@2'").fetchone()[0] == 1
    # Task2Vec of the version: the embedding of the same samples in the same order
    probe = json.dumps({"probe": models[0]})
    near = conn.execute("SELECT reader_id, score FROM shift.dataset_similarity('Task2Vec', %s, ARRAY['FFlat', "
                        "'FBase'], 'F')", (probe,)).fetchall()
    assert dict(near)["FFlat"] == pytest.approx(0.0, abs=1e-6) and dict(near)["FBase"] > 1e-6
    made = dict(conn.execute("SELECT reader_id, embedding FROM shift.task_embeddings "
                             "WHERE reader_id IN ('F@2', 'FFlat')").fetchall())
    assert np.allclose(made["F@2"], made["FFlat"], rtol=1e-5)


@pytest.mark.parametrize("call,args,message", [
    ("change_reader", ("B", "BFix", [0, 1, 200]), "index 200 is out of range for reader B of 40 samples"),
    ("change_reader", ("B", "BFix", [0, 1, -1]), "index -1 is out of range"),
    ("change_reader", ("B", "BFix", [3, 3, 4]), "index 3 is given 2 times"),
    ("change_reader", ("B", "BFix", [0, 1]), "change-reader BFix has 3 samples but 2 indices are given"),
    ("add_to_reader", ("B", "BTab"), "add-reader BTab holds Tabular samples, but reader B@1 holds Vision samples"),
    ("add_to_reader", ("B", "BWide"), "add-reader BWide has samples of shape [4, 16], but reader B@1"),
    ("delete_from_reader", ("B", list(range(40))), "deleting all 40 samples of reader B leaves it empty"),
    ("change_reader", ("BBase", "BFix", [0, 1, 2]), "reader BBase is not a mutable reader"),
])
def test_bad_steps_fail_with_a_sqlstate_and_write_nothing(mdb, call, args, message):
    database, conn, data, dana, _, _ = mdb
    if not conn.execute("SELECT 1 FROM shift.readers WHERE reader_id = 'B'").fetchone():
        data.reader("BBase", data.fresh(40))
        data.reader("BFix", data.fresh(3))
        conn.execute("SELECT shift.register_sql_reader('BTab', 'SELECT x, y FROM %s.bfix ORDER BY pos', "
                     "input => 'Tabular')" % dana)
        conn.execute("SELECT shift.register_sql_reader('BWide', 'SELECT x, y FROM %s.bfix ORDER BY pos', "
                     "options => '{\"shape\": [4, 16]}')" % dana)
        conn.execute("SELECT shift.create_mutable_reader('B', 'BBase')")
    placeholders = ", ".join(["%s"] * len(args))
    with pytest.raises((errors.InvalidParameterValue, errors.WrongObjectType)) as e:
        conn.execute("SELECT shift.%s(%s)" % (call, placeholders), args)
    assert message in e.value.diag.message_primary
    assert conn.execute("SELECT count(*) FROM shift.reader_versions('B')").fetchone()[0] == 1
    assert conn.execute("SELECT num_samples FROM shift.readers WHERE reader_id = 'B'").fetchone()[0] == 40


def test_mutable_readers_are_private_and_their_sources_stay_while_used(mdb):
    database, conn, data, dana, eve, models = mdb
    data.reader("PBase", data.fresh(20))
    data.reader("PFix", data.fresh(2))
    conn.execute("SELECT shift.create_mutable_reader('P', 'PBase')")
    with connect_as(database, eve) as other:
        assert other.execute("SELECT count(*) FROM shift.readers WHERE reader_id LIKE 'P%'").fetchone()[0] == 0
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("SELECT shift.change_reader('P', 'PFix', ARRAY[0, 1])")
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("SELECT shift.create_mutable_reader('EveP', 'PBase')")
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("SELECT * FROM shift.reader_versions('P')")
        # a SECURITY DEFINER function called directly still checks its caller
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("SELECT shift._store_version(current_user, 'EveQ', %s)", (psycopg.types.json.Jsonb(
                {"reader_id": "EveQ@1", "kind": "version", "source": "EveQ", "input": "Vision", "num_samples": 20,
                 "classes": ["1"], "block_size": 32,
                 "options": {"version": 1, "step": {"reader": "PBase"}, "segments": [["PBase", 0, 20]]}}),))
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("INSERT INTO shift.readers (reader_id, kind, source, num_samples, classes) "
                          "VALUES ('X@1', 'version', 'X', 1, '{}')")
    conn.execute("SELECT shift.grant_reader('P', %s)", (eve,))
    with connect_as(database, eve) as other:
        seen = {r for (r,) in other.execute("SELECT reader_id FROM shift.readers WHERE reader_id LIKE 'P%'")}
        assert seen == {"P", "P@1"}  # sharing a mutable reader shares its versions, not its sources
        with pytest.raises(errors.InsufficientPrivilege):
            other.execute("SELECT shift.change_reader('P', 'PBase', ARRAY[0])")
    with pytest.raises(errors.DependentObjectsStillExist):
        conn.execute("SELECT shift.drop_reader('PBase')")
    with pytest.raises(errors.WrongObjectType):
        conn.execute("SELECT shift.drop_reader('P@1')")
    conn.execute("SELECT shift.drop_reader('P')")
    assert conn.execute("SELECT count(*) FROM shift.readers WHERE reader_id LIKE 'P@%'").fetchone()[0] == 0
    conn.execute("SELECT shift.drop_reader('PBase')")
