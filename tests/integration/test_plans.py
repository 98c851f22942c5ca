"""Plans on the real system: successive halving, full passes, the cost model's choice, recorded in shift.plans."""

import pytest

from pyfuncs import costmodel
from shift_cli.testbed import Database, WorkerProcess, digits, register_model


@pytest.fixture(scope="module")
def pdb(cluster, zoo):
    """Three zoo models, a training reader of 300 samples in blocks of 16, a test reader of 80."""
    (train_x, train_y), (test_x, test_y) = digits(n_train=300, n_test=80, seed=2)
    with Database(cluster, "shift_plans") as database:
        with database.connect() as conn:
            for m in zoo:
                register_model(conn, m)
            for name, xs, ys in (("p_train", train_x, train_y), ("p_test", test_x, test_y)):
                conn.execute("CREATE TABLE public.%s (id integer PRIMARY KEY, x real[], y integer)" % name)
                with conn.cursor().copy("COPY public.%s (id, x, y) FROM STDIN" % name) as copy:
                    for i, (x, y) in enumerate(zip(xs, ys)):
                        copy.write_row((i, x.ravel().tolist(), int(y)))
            conn.execute("SELECT shift.register_sql_reader('PTrain', 'SELECT x, y FROM public.p_train ORDER BY id', "
                         "options => '{\"shape\": [8, 8]}', block_size => 16)")
            conn.execute("SELECT shift.register_sql_reader('PTest', 'SELECT x, y FROM public.p_test ORDER BY id', "
                         "options => '{\"shape\": [8, 8]}', block_size => 16)")
        database.models = [m["model_id"] for m in zoo]
        w = WorkerProcess(database.worker_dsn, cluster.home / "worker-plans.log", "plans").wait_ready()
        yield database
        w.stop()


def top(conn, scorer, k, params="{}", descending=False):
    return conn.execute("SELECT model_id, score FROM shift.score(%s, %s, ARRAY(SELECT model_id FROM shift.models), "
                        "'PTest', 'PTrain', top_k => %s, descending => %s)",
                        (scorer, params, k, descending)).fetchall()


def last_plan(conn):
    return conn.execute("SELECT choice, mode, estimate_full, estimate_sh, terms, measured_seconds "
                        "FROM shift.plans ORDER BY plan_id DESC LIMIT 1").fetchone()


def test_successive_halving_rounds_and_full_data_survivors(pdb):
    with pdb.connect() as conn:
        conn.execute("SET shift.successive_halving = 'on'")
        best = top(conn, "EuclideanNN", 1)
        choice, mode, full_estimate, sh_estimate, terms, seconds = last_plan(conn)
        assert (choice, mode) == ("successive halving", "on")
        assert full_estimate > 0 and sh_estimate > 0 and seconds > 0
        # 3 models, top-1: ceil(log2 3) = 2 rounds, B = 6, L = 3, 2, r = 1, 1, C = ceil(300 / 2) = 150
        assert [(r["models"], r["R_k"]) for r in terms["rounds"]] == [(3, 150), (2, 300)]
        # the models each round kept: two of three, then the best
        assert [len(kept) for kept in terms["survivors"]] == [2, 1] and terms["survivors"][1] == [best[0][0]]
        assert set(terms["survivors"][0]) < set(pdb.models) and best[0][0] in terms["survivors"][0]
        fidelities = conn.execute("SELECT fidelity, count(*) FROM shift.scores WHERE proxy = 'nn' "
                                  "AND params->>'metric' = 'euclidean' GROUP BY 1 ORDER BY 1").fetchall()
        assert fidelities == [(150, 3), (300, 2)]
        # two models never saw the second half of the reader: blocks 150.. are missing for one of them
        assert conn.execute("SELECT count(DISTINCT model_id) FROM shift.features WHERE reader_id = 'PTrain' "
                            "AND block = 18").fetchone()[0] == 2

        conn.execute("SET shift.successive_halving = 'off'")
        every = dict(conn.execute("SELECT model_id, score FROM shift.score('EuclideanNN', '{}', "
                                  "ARRAY(SELECT model_id FROM shift.models), 'PTest', 'PTrain')").fetchall())
        assert last_plan(conn)[0] == "full"
        # the survivor carries its full-data value
        assert best[0][1] == pytest.approx(every[best[0][0]])


def test_cost_model_learns_survival_from_earlier_runs(pdb):
    with pdb.connect() as conn:
        conn.execute("SET shift.successive_halving = 'on'")
        conn.execute("DELETE FROM shift.scores WHERE proxy = 'nn' AND params->>'metric' = 'cosine'")
        top(conn, "CosineNN", 1)
        first = last_plan(conn)[4]
        assert first["survival"] == 1.0 and first["survival_observed"] == 0  # the §4.2 prior
        conn.execute("DELETE FROM shift.scores WHERE proxy = 'nn' AND params->>'metric' = 'cosine'")
        top(conn, "CosineNN", 1)
        second = last_plan(conn)[4]
        infer = dict(conn.execute("SELECT model_id, per_sample_seconds FROM shift.costs").fetchall())
        start, observed = pdb.models, []
        for kept in first["survivors"]:
            observed.append(costmodel.survival_tendency({m: infer[m] for m in start}, kept))
            start = kept
        assert second["survival_observed"] == 2
        assert second["survival"] == pytest.approx(sum(observed) / 2)


def test_descending_keeps_the_highest(pdb):
    with pdb.connect() as conn:
        conn.execute("SET shift.successive_halving = 'on'")
        best = top(conn, "CosineNNAccuracy", 2, descending=True)
        conn.execute("SET shift.successive_halving = 'off'")
        every = conn.execute("SELECT model_id, score FROM shift.score('CosineNNAccuracy', '{}', "
                             "ARRAY(SELECT model_id FROM shift.models), 'PTest', 'PTrain')").fetchall()
        values = dict(every)
        assert len(best) == 2
        assert all(v == pytest.approx(values[m]) for m, v in best)
        assert best[0][1] >= best[1][1]


def test_auto_mode_asks_the_cost_model(pdb):
    with pdb.connect() as conn:
        top(conn, "Linear", 1, params='{"lr": 0.05, "epochs": 2}')
        choice, mode, full_estimate, sh_estimate, terms, _ = last_plan(conn)
        assert mode == "auto"
        assert choice == ("successive halving" if sh_estimate < full_estimate else "full")
        for term in ("sum_L", "sum_I", "t_N", "t_O", "E_proxy"):
            assert terms[term] > 0, term
        # the measured inputs are stored
        assert conn.execute("SELECT count(*) FROM shift.costs").fetchone()[0] == len(pdb.models)
        assert conn.execute("SELECT count(*) FROM shift.reader_costs").fetchone()[0] >= 1
        # asking again is answered from the cache, and a cached answer writes no plan row
        plans = conn.execute("SELECT count(*) FROM shift.plans").fetchone()[0]
        top(conn, "Linear", 1, params='{"lr": 0.05, "epochs": 2}')
        after = conn.execute("SELECT count(*) FROM shift.plans").fetchone()[0]
        assert after == plans or last_plan(conn)[0] == "successive halving"


def test_bad_settings(pdb):
    with pdb.connect() as conn:
        conn.execute("SET shift.successive_halving = 'sometimes'")
        with pytest.raises(Exception) as info:
            top(conn, "Linear", 1, params='{"lr": 0.07}')
        assert info.value.diag.sqlstate == "22023"
        conn.execute("SET shift.successive_halving = 'on'")
        conn.execute("SET shift.sh_budget = '2'")
        with pytest.raises(Exception) as info:
            top(conn, "Linear", 1, params='{"lr": 0.07}')
        assert info.value.diag.sqlstate == "22023" and "budget" in info.value.diag.message_primary


def test_explain_measures_nothing_in_the_backend(pdb):
    """Without a worker's measurement of E_Proxy, explain says the choice waits for one; it does not
    fit the proxy on synthetic features inside the backend to estimate it."""
    with pdb.connect() as conn:
        conn.execute("SET shift.successive_halving = 'auto'")
        top(conn, "EuclideanNN", 1)  # measures every model's inference cost
        parts = dict(conn.execute(
            "SELECT section, content FROM shift.explain('SELECT ModelId FROM Models ORDER BY Linear(lr=0.0123) "
            "LIMIT 1 TESTED ON PTest TRAINED ON PTrain')").fetchall())
        assert "decided after" in parts["engine"] and "no worker has measured" in parts["engine"]
        assert not conn.execute("SELECT 1 FROM shift.proxy_costs WHERE params->>'lr' = '0.0123'").fetchone()
