"""The SHiFT-QL fixture database: the test zoo, a few more models, readers and the user's tables.

The golden tests (test_shiftql_golden.py), the examples of docs/shiftql.md
(test_shiftql_docs.py) and the fuzz test run their queries here, in databases
of their own, so that the counts other tests check stay as they are.

Models: the three zoo models (Vision, scored for real by a worker) and four
metadata-only ones of other modalities, so that `Input == 'Vision'` pools hold
only models a worker can load. Readers: TrainReader (SQL, 300 digits) and
TestReader (.npz, 120 digits), named as in seed 000 §3.2, and three small SQL
readers; every reader has a Task2Vec embedding stored as a worker stores it
(shift_cli.testbed.store_task_embedding: the small readers are no images a probe
reads), made with probe shift.task2vec_probe of the database. User tables: public.licences, public.latencies, and an
empty schema analytics for views.
"""

import json
from dataclasses import dataclass, field

import pytest

from shift_cli.testbed import (Database, WorkerProcess, register_digits, register_model, store_task_embedding,
                               user_roles)

EXTRA_MODELS = [
    dict(model_id="bert-tiny", source="hf", locator="prajjwal1/bert-tiny", input="Text", num_params=4_385_920,
         upstream_dataset="wikipedia", upstream_accuracy=0.61, architecture="BERT"),
    dict(model_id="bert-base", source="hf", locator="bert-base-uncased", input="Text", num_params=109_482_240,
         upstream_dataset="wikipedia", upstream_accuracy=0.84, architecture="BERT"),
    dict(model_id="wav2vec-s", source="hf", locator="facebook/wav2vec2-small", input="Audio", num_params=95_000_000,
         upstream_dataset="librispeech", upstream_accuracy=0.70, architecture="Wav2Vec2"),
    dict(model_id="tabnet-s", source="onnx", locator="/models/tabnet.onnx", input="Tabular", num_params=250_000,
         upstream_dataset=None, upstream_accuracy=None, architecture=None),
]

LICENCES = {"shapes10.resnet10t": "MIT", "shapes10.convnext-atto": "Apache-2.0",
            "shapes10.regnetx-002": "CC-BY-NC-4.0", "bert-tiny": "MIT", "bert-base": "Apache-2.0",
            "wav2vec-s": "CC-BY-NC-4.0"}
LATENCIES = [("shapes10.resnet10t", "cpu", 12.0), ("shapes10.resnet10t", "gpu", 2.0),
             ("shapes10.convnext-atto", "cpu", 9.0), ("shapes10.convnext-atto", "gpu", 1.5),
             ("shapes10.regnetx-002", "cpu", 4.0), ("shapes10.regnetx-002", "gpu", 1.0),
             ("bert-tiny", "cpu", 3.0), ("bert-base", "cpu", 40.0), ("bert-base", "gpu", 5.0)]
# Task2Vec embeddings (per-filter Fisher values, prior scale 1): by the normalised cosine TrainReader is the
# closest to TestReader, then Shapes, Letters, Noise
TASK2VEC = {"TestReader": [1, 0.1, 0.1], "TrainReader": [0.9, 0.12, 0.1], "Shapes": [0.5, 0.5, 0.1],
            "Letters": [0.1, 1, 0.1], "Noise": [0.2, 0.3, 1]}
PROBE = "shapes10.resnet10t"
SMALL_READERS = {"Shapes": "Vision", "Letters": "Vision", "Noise": "Tabular"}


def setup_shiftql(database, cluster, zoo, tag):
    """Register everything the SHiFT-QL tests read in `database`."""
    with database.connect() as conn:
        for m in zoo:
            register_model(conn, m)
        for m in EXTRA_MODELS:
            register_model(conn, dict(m, checkpoint=None, feature_dim=None, input_size=None, options={}))
        register_digits(conn, cluster, "TrainReader", "TestReader", "digits")
        conn.execute("CREATE TABLE public.small AS SELECT g AS id, ARRAY[g::real, 1] AS x, g % 2 AS y "
                     "FROM generate_series(1, 20) g")
        for reader, kind in SMALL_READERS.items():
            conn.execute("SELECT shift.register_sql_reader(%s, 'SELECT x, y FROM public.small ORDER BY id', "
                         "input => %s)", (reader, kind))
        for reader, vector in TASK2VEC.items():
            store_task_embedding(conn, reader, vector, PROBE)
        conn.execute("ALTER DATABASE %s SET shift.task2vec_probe = '%s'" % (database.name, PROBE))
        conn.execute("CREATE TABLE public.licences (model_id text PRIMARY KEY, licence text NOT NULL)")
        conn.cursor().executemany("INSERT INTO public.licences VALUES (%s, %s)", list(LICENCES.items()))
        conn.execute("CREATE TABLE public.latencies (model_id text, device text, ms double precision, "
                     "PRIMARY KEY (model_id, device))")
        conn.cursor().executemany("INSERT INTO public.latencies VALUES (%s, %s, %s)", LATENCIES)
        conn.execute("CREATE SCHEMA analytics")
        # whole passes only, so a top-K query returns exactly the K best of the full scores
        conn.execute("ALTER DATABASE %s SET shift.successive_halving = 'off'" % database.name)


@dataclass
class ShiftQLDatabase:
    """The fixture database, its models' metadata and, lazily, every model's score per scorer."""

    database: Database
    models: dict = field(default_factory=dict)
    _scores: dict = field(default_factory=dict)

    def connect(self, **kwargs):
        return self.database.connect(**kwargs)

    def meta(self, column, where=lambda row: True):
        """{model: column as a float} of the models that pass `where`."""
        return {m: None if r[column] is None else float(r[column]) for m, r in self.models.items() if where(r)}

    def scores(self, scorer, params=None, pool=None):
        """{model: score} of the Vision models (or `pool`) by shift.score, without top-K."""
        pool = sorted(pool or [m for m, r in self.models.items() if r["input"] == "Vision"])
        key = (scorer, json.dumps(params or {}, sort_keys=True), tuple(pool))
        if key not in self._scores:
            with self.connect() as conn:
                rows = conn.execute("SELECT model_id, score FROM shift.score(%s, %s, %s, 'TestReader', 'TrainReader')",
                                    (scorer, json.dumps(params or {}), pool)).fetchall()
            self._scores[key] = dict(rows)
        return self._scores[key]


@pytest.fixture(scope="session")
def shiftql_db(cluster, zoo):
    with Database(cluster, "shift_ql") as database:
        setup_shiftql(database, cluster, zoo, "shift_ql")
        worker = WorkerProcess(database.worker_dsn, cluster.home / "worker-shift-ql.log", "shift-ql-worker").wait_ready()
        try:
            with database.connect() as conn:
                models = {r[0]: dict(zip(("model_id", "input", "num_params", "upstream_accuracy", "architecture",
                                          "upstream_dataset", "source"), r))
                          for r in conn.execute("SELECT model_id, input, num_params, upstream_accuracy, architecture, "
                                                "upstream_dataset, source FROM shift.models")}
            yield ShiftQLDatabase(database, models)
        finally:
            worker.stop()


@pytest.fixture(scope="module")
def user(cluster, request):
    """A login role of the module's own, a user of no database yet, named after the module's USER; dropped after."""
    kind = getattr(request.module, "USER", "user")
    with user_roles(cluster, (kind,)) as names:
        yield names[kind]


@pytest.fixture(scope="module")
def roles(cluster):
    """Login roles alice, bob and carol (not yet users of shift): {kind: role name}."""
    with user_roles(cluster) as names:
        yield names
