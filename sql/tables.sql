-------------------------------------------------------------------------------
-- Registry: the Models and DataReaders views of seed 000 §3.1
-------------------------------------------------------------------------------

CREATE TABLE shift.models (
    model_id          text PRIMARY KEY CHECK (model_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$'),
    source            text NOT NULL CHECK (source IN ('timm', 'torchvision', 'torchscript', 'hf', 'tfhub', 'onnx')),
    locator           text NOT NULL CHECK (locator <> ''),
    checkpoint        text,
    input             text NOT NULL DEFAULT 'Vision' CHECK (input IN ('Vision', 'Text', 'Tabular', 'Audio')),
    framework         text NOT NULL,
    architecture      text,
    num_params        bigint CHECK (num_params > 0),
    feature_dim       integer CHECK (feature_dim > 0),
    input_size        integer CHECK (input_size > 0),
    upstream_dataset  text,
    upstream_accuracy double precision CHECK (upstream_accuracy BETWEEN 0 AND 1),
    options           jsonb NOT NULL DEFAULT '{}',
    num_classes       integer CHECK (num_classes > 0),          -- width of the source-task logits
    input_mean        double precision[],                        -- per-channel normalisation of image inputs
    input_std         double precision[],
    loaded_at         timestamptz,  -- when a worker last loaded it and filled in what the library knows
    load_error        text,         -- why the last load failed (NULL once it loads)
    owner             name NOT NULL DEFAULT current_user,  -- models are shared; only the owner drops one
    registered_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.models IS 'the Models view: one row per pre-trained model (seed 000 §3.1)';

CREATE TABLE shift.readers (
    -- a version of a mutable reader is named <reader>@<k> (pyfuncs/versions.py)
    reader_id     text PRIMARY KEY CHECK (reader_id ~ '^[A-Za-z_][A-Za-z0-9_]*(@[1-9][0-9]*)?$'),
    kind          text NOT NULL CHECK (kind IN ('sql', 'npz', 'npy', 'csv', 'imagefolder', 'hf', 'tfds', 'mutable',
                                                'version')),
    source        text NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    input         text NOT NULL DEFAULT 'Vision' CHECK (input IN ('Vision', 'Text', 'Tabular', 'Audio')),
    num_samples   bigint NOT NULL CHECK (num_samples > 0),
    classes       text[] NOT NULL,
    block_size    integer NOT NULL DEFAULT 1024 CHECK (block_size > 0),
    owner         name NOT NULL DEFAULT current_user,  -- who sees it (shift.reader_grants) and whose privileges read it
    -- a SQL reader's query as a SECURITY DEFINER function of its owner (schema shift_readers): workers read
    -- through it, so the query runs with the owner's privileges and cannot change role (privileges.sql)
    read_function regprocedure,
    registered_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'sql') = (read_function IS NOT NULL)),
    CHECK ((kind = 'version') = (reader_id LIKE '%@%'))
);
COMMENT ON TABLE shift.readers IS 'the DataReaders view: one row per (x, y) source in a stable order (seed 000 §3.1)';

-- The plain readers each version of a mutable reader is composed of (its options' segments): a reader
-- a version reads from cannot be dropped while the version exists.
CREATE TABLE shift.version_sources (
    reader_id text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    source_id text NOT NULL REFERENCES shift.readers,
    PRIMARY KEY (reader_id, source_id)
);
COMMENT ON TABLE shift.version_sources IS 'which plain readers each version of a mutable reader reads (seed 000 §3.1)';

-- A reader is private to its owner (and the roles that are members of it) until the owner shares it:
-- shift.grant_reader(reader, role or 'public')
CREATE TABLE shift.reader_grants (
    reader_id  text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    grantee    name NOT NULL,
    granted_by name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reader_id, grantee)
);
COMMENT ON TABLE shift.reader_grants IS 'who besides its owner may see and use a reader (grantee public: everyone)';

-------------------------------------------------------------------------------
-- Caches: features per (model, reader, block), labels per (reader, block),
-- proxy values per (proxy, params, model, readers, fidelity, content)
-------------------------------------------------------------------------------

-- fingerprint: of the block's samples and labels as a worker last read them (pyfuncs/fingerprints.py);
-- features computed from other content than this are stale and are never served
CREATE TABLE shift.labels (
    reader_id   text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    block       integer NOT NULL CHECK (block >= 0),
    y           integer[] NOT NULL,
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 16),
    PRIMARY KEY (reader_id, block)
);

-- What a reader's source was when a worker last fingerprinted its cached blocks (a validate task):
-- a digest of a SQL reader's rows, the sizes and modification times of a file reader's files. A query
-- whose reader's source differs has its cached blocks validated before it trusts them.
CREATE TABLE shift.reader_sources (
    reader_id      text PRIMARY KEY REFERENCES shift.readers ON DELETE CASCADE,
    signature      text NOT NULL,
    blocks_checked integer NOT NULL CHECK (blocks_checked >= 0),
    blocks_changed integer NOT NULL CHECK (blocks_changed >= 0),
    seconds        double precision NOT NULL CHECK (seconds >= 0),
    checked_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.reader_sources IS
    'per reader: the source signature its cached blocks were last validated against, and what that found';

CREATE TABLE shift.features (
    model_id    text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    reader_id   text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    block       integer NOT NULL CHECK (block >= 0),
    fingerprint bytea NOT NULL CHECK (length(fingerprint) = 16),  -- of the content they were computed from
    num_rows    integer NOT NULL CHECK (num_rows > 0),
    dim         integer NOT NULL CHECK (dim > 0),
    -- float32, little-endian, row-major num_rows x dim
    data        bytea NOT NULL CHECK (length(data) = 4 * num_rows * dim),
    -- the source task's logits of the same rows, float32 num_rows x num_logits, where the model has a
    -- classifier head: what LEEP and NCE score by (NULL for a model without one)
    num_logits  integer CHECK (num_logits > 0),
    logits      bytea CHECK (length(logits) = 4 * num_rows * num_logits),
    device      text NOT NULL,
    seconds     double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, reader_id, block),
    CHECK ((logits IS NULL) = (num_logits IS NULL))
);
-- float bytes do not compress
ALTER TABLE shift.features ALTER COLUMN data SET STORAGE EXTERNAL, ALTER COLUMN logits SET STORAGE EXTERNAL;

CREATE TABLE shift.scores (
    proxy        text NOT NULL,
    params       jsonb NOT NULL,
    model_id     text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    test_reader  text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    train_reader text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    fidelity     bigint NOT NULL CHECK (fidelity > 0),
    content      text NOT NULL,   -- fingerprints.content_key of the blocks it was computed from
    value        double precision NOT NULL,
    -- the raw terms of a metric defined relative to the pool of models ranked (NCTI, ETran), which the
    -- query combines over its pool; value is then the first of them
    terms        jsonb CHECK (terms IS NULL OR jsonb_typeof(terms) = 'object'),
    seconds      double precision NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, params, model_id, test_reader, train_reader, fidelity, content)
);
COMMENT ON COLUMN shift.scores.fidelity IS 'number of training samples the value was computed on';
COMMENT ON COLUMN shift.scores.content IS 'the readers'' content it was computed on: a value of changed data is not served';

-- seed 002 §4.3: the fine-tuned accuracy of a model on a task, the ground truth of regret
-- and the history the meta-learned strategies rank by (seed 000 §3.2 Q5)
CREATE TABLE shift.finetune_results (
    model_id            text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    train_reader        text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    validation_reader   text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    test_reader         text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    params              jsonb NOT NULL,   -- the protocol's resolved parameters (FineTune's)
    -- pyfuncs.fingerprints.content_signature of the three readers' sources as the asking call saw
    -- them: a result of data that changed since is not read back, but computed again and replaced
    source_signature    text NOT NULL,
    test_accuracy       double precision NOT NULL CHECK (test_accuracy BETWEEN 0 AND 1),
    validation_accuracy double precision NOT NULL CHECK (validation_accuracy BETWEEN 0 AND 1),
    settings            jsonb NOT NULL,   -- what was tried and chosen: per run and learning rate
    seconds             double precision NOT NULL CHECK (seconds >= 0),
    device              text NOT NULL,
    worker_id           text,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, train_reader, validation_reader, test_reader, params)
);
COMMENT ON TABLE shift.finetune_results IS
    'fine-tuned accuracy per (model, train, validation, test reader, protocol): the ground truth of regret (seed 002)';

-------------------------------------------------------------------------------
-- Embeddings: task vectors (Task2Vec now; TANS query and Fennec task vectors
-- later) and model vectors (TANS, Fennec, archi2vec later), seed 000 §3.3-§3.4.
--
-- Layout, one row per embedding:
--   shift.task_embeddings  key (reader_id, reader_version, kind, settings)
--   shift.model_embeddings key (model_id, kind, settings)
-- kind      the method: 'task2vec' (filled by the workers' datasim tasks),
--           'tans', 'fennec' (task side), 'tans', 'fennec', 'archi2vec' (model side)
-- settings  every setting that made the vector, as canonical json; Task2Vec's:
--           {"probe", "method" (montecarlo | variational), "skip_layers",
--            "max_samples", "batch_size", "epochs", "seed"}. Vectors whose
--           settings differ are never compared (pyfuncs/embeddings.py).
-- reader_version  shift._reader_version(reader_id) when the vector was made: a
--           reader whose data changed has a new version, and the old row is not used
-- source_signature  pyfuncs.fingerprints.content_signature of the reader's sources as
--           the query that asked for the vector saw them (a SQL reader's row digest, a
--           file reader's stat): a vector whose reader's data changed since is not
--           compared, but computed again and replaced
-- dim, embedding  the exact vector, real[] of any length (a ResNet-34 Task2Vec
--           has 8,512 values, over pgvector's 2,000-dimension HNSW limit); exact
--           distances are computed from it
-- scale     per-value reference of the same length (Task2Vec: the per-layer prior
--           precision 1/lambda^2 of the variational Fisher, the layer mean of the
--           Monte-Carlo Fisher): the trivial embedding and the normalised cosine
-- index_vector  vector(256): a seeded Gaussian random projection of the unit-length
--           normalised embedding (pyfuncs/embeddings.py index_vector), itself unit
--           length, so its cosine approximates the normalised cosine
--           (Johnson-Lindenstrauss); HNSW (vector_cosine_ops) finds candidates,
--           which are re-ranked exactly from `embedding`
-- RLS: a task embedding is seen where its reader is; model embeddings are shared.
-- Writes: the workers (shift_worker) only.
-------------------------------------------------------------------------------

CREATE TABLE shift.task_embeddings (
    reader_id      text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    reader_version text NOT NULL,
    source_signature text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('task2vec', 'tans', 'fennec')),
    settings       jsonb NOT NULL,
    dim            integer NOT NULL CHECK (dim > 0),
    embedding      real[] NOT NULL CHECK (cardinality(embedding) = dim),
    scale          real[] CHECK (cardinality(scale) = dim),
    index_vector   vector(256) NOT NULL,
    num_samples    integer NOT NULL CHECK (num_samples > 0),  -- samples the vector was computed from
    seconds        double precision NOT NULL CHECK (seconds >= 0),
    device         text NOT NULL,
    worker_id      text,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reader_id, reader_version, kind, settings)
);
CREATE INDEX task_embeddings_hnsw ON shift.task_embeddings USING hnsw (index_vector vector_cosine_ops);
ALTER TABLE shift.task_embeddings ALTER COLUMN embedding SET STORAGE EXTERNAL, ALTER COLUMN scale SET STORAGE EXTERNAL;
COMMENT ON TABLE shift.task_embeddings IS
    'task vectors per (reader, reader version, kind, settings): exact values and an HNSW-indexed projection';

CREATE TABLE shift.model_embeddings (
    model_id     text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('tans', 'fennec', 'archi2vec')),
    settings     jsonb NOT NULL,
    dim          integer NOT NULL CHECK (dim > 0),
    embedding    real[] NOT NULL CHECK (cardinality(embedding) = dim),
    index_vector vector(256) NOT NULL,
    seconds      double precision NOT NULL CHECK (seconds >= 0),
    device       text NOT NULL,
    worker_id    text,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, kind, settings)
);
CREATE INDEX model_embeddings_hnsw ON shift.model_embeddings USING hnsw (index_vector vector_cosine_ops);
COMMENT ON TABLE shift.model_embeddings IS 'model vectors per (model, kind, settings), laid out as shift.task_embeddings';

-------------------------------------------------------------------------------
-- Work queue and the workers that drain it
-------------------------------------------------------------------------------

CREATE TABLE shift.tasks (
    task_id      bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('inference', 'proxy', 'datasim', 'finetune', 'describe', 'validate')),
    key          text NOT NULL UNIQUE,   -- identical work from concurrent queries shares one row
    payload      jsonb NOT NULL,
    depends_on   bigint[] NOT NULL DEFAULT '{}',
    waiters      integer[] NOT NULL DEFAULT '{}',  -- backend pids of queries waiting on this task
    readers      text[] NOT NULL DEFAULT '{}',     -- the readers it reads: who may see it (privileges.sql)
    requested_by name,                             -- the role that enqueued it; the worker re-checks its rights
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    worker_id    text,
    lease_until  timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    deaths       integer NOT NULL DEFAULT 0,        -- workers that died (lease or heartbeat lost) running it
    quarantined  boolean NOT NULL DEFAULT false,    -- failed by killing its workers: queries do not reset it,
                                                    -- shift.retry_task does
    retry_at     timestamptz,                       -- a task retried after a transient error waits until then
    progress     real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX tasks_claimable ON shift.tasks (task_id) WHERE status IN ('queued', 'running');

CREATE TABLE shift.workers (
    worker_id    text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    device       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    current_task bigint,
    tasks_done   bigint NOT NULL DEFAULT 0
);

CREATE TABLE shift.costs (
    model_id           text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    device             text NOT NULL,
    load_seconds       double precision NOT NULL CHECK (load_seconds >= 0),
    per_sample_seconds double precision NOT NULL CHECK (per_sample_seconds >= 0),
    samples            bigint NOT NULL,
    measured_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, device)
);
COMMENT ON TABLE shift.costs IS 'measured L_i and I_i of the cost model (seed 000 §4.2)';

CREATE TABLE shift.reader_costs (
    reader_id          text PRIMARY KEY REFERENCES shift.readers ON DELETE CASCADE,
    per_sample_seconds double precision NOT NULL CHECK (per_sample_seconds >= 0),
    samples            bigint NOT NULL,
    measured_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.reader_costs IS 'measured time to read one sample of a reader: t_N of the cost model';

CREATE TABLE shift.proxy_costs (
    proxy                      text NOT NULL,
    params                     jsonb NOT NULL,
    PRIMARY KEY (proxy, params),
    per_sample_seconds         double precision NOT NULL CHECK (per_sample_seconds >= 0),
    feature_read_seconds       double precision NOT NULL CHECK (feature_read_seconds >= 0),
    samples                    bigint NOT NULL,
    measured_at                timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.proxy_costs IS
    'measured E_Proxy (per training sample) and t_O (per cached feature row read) of the cost model';

CREATE TABLE shift.plans (
    plan_id          bigserial PRIMARY KEY,
    scorer           text NOT NULL,
    params           jsonb NOT NULL,
    model_ids        text[] NOT NULL,
    test_reader      text NOT NULL,
    train_reader     text NOT NULL,
    top_k            integer,
    mode             text NOT NULL,     -- the shift.successive_halving setting in force
    choice           text NOT NULL CHECK (choice IN ('cached', 'full', 'successive halving')),
    estimate_full    double precision,
    estimate_sh      double precision,
    terms            jsonb NOT NULL DEFAULT '{}',
    measured_seconds double precision,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.plans IS 'each scoring plan chosen: both cost estimates, their terms, the choice and the time it took';

-------------------------------------------------------------------------------
-- Asynchronous jobs: a SHiFT-QL text submitted with shift.submit, run by a
-- worker's job runner, its rows kept until the job is pruned
-------------------------------------------------------------------------------

CREATE TABLE shift.jobs (
    job_id           bigserial PRIMARY KEY,
    query            text NOT NULL,
    owner            name NOT NULL,     -- the submitter: who sees the job, whose privileges run it
    -- the owner's SECURITY DEFINER function (schema shift_jobs) that runs the query; NULL once the job ended
    run_function     regprocedure UNIQUE,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    cancel_requested boolean NOT NULL DEFAULT false,
    worker_id        text,              -- the worker whose job runner runs it
    backend_pid      integer,           -- the runner's backend: the waiter of the job's tasks
    lease_until      timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    tasks_done       integer,           -- counted when the job ends; job_status counts a running one
    tasks_total      integer,
    error            text,
    sqlstate         text,
    error_detail     text,
    error_hint       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
);
CREATE INDEX jobs_claimable ON shift.jobs (job_id) WHERE status IN ('queued', 'running');
COMMENT ON TABLE shift.jobs IS 'SHiFT-QL texts run asynchronously (shift.submit); each user sees its own';

CREATE TABLE shift.job_results (
    job_id   bigint NOT NULL REFERENCES shift.jobs ON DELETE CASCADE,
    rank     integer NOT NULL,
    model_id text,
    score    double precision,
    selected jsonb,
    PRIMARY KEY (job_id, rank)
);
COMMENT ON TABLE shift.job_results IS 'the rows of each done job, as shift.query returns them (shift.job_result)';
