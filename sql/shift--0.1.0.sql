-- shift 0.1.0: a model search engine for transfer learning, inside PostgreSQL.
-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION shift CASCADE" to load this file. \quit

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
    registered_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.models IS 'the Models view: one row per pre-trained model (seed 000 §3.1)';

CREATE TABLE shift.readers (
    reader_id     text PRIMARY KEY CHECK (reader_id ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    kind          text NOT NULL CHECK (kind IN ('sql', 'npz', 'npy', 'csv', 'imagefolder', 'hf', 'tfds')),
    source        text NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    input         text NOT NULL DEFAULT 'Vision' CHECK (input IN ('Vision', 'Text', 'Tabular', 'Audio')),
    num_samples   bigint NOT NULL CHECK (num_samples > 0),
    classes       text[] NOT NULL,
    block_size    integer NOT NULL DEFAULT 1024 CHECK (block_size > 0),
    task2vec      vector,
    owner         name NOT NULL DEFAULT current_user,  -- workers read SQL readers with this role's privileges
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.readers IS 'the DataReaders view: one row per (x, y) source in a stable order (seed 000 §3.1)';

-------------------------------------------------------------------------------
-- Caches: features per (model, reader, block), labels per (reader, block),
-- proxy values per (proxy, params, model, readers, fidelity)
-------------------------------------------------------------------------------

CREATE TABLE shift.labels (
    reader_id text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    block     integer NOT NULL CHECK (block >= 0),
    y         integer[] NOT NULL,
    PRIMARY KEY (reader_id, block)
);

CREATE TABLE shift.features (
    model_id    text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    reader_id   text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    block       integer NOT NULL CHECK (block >= 0),
    num_rows    integer NOT NULL CHECK (num_rows > 0),
    dim         integer NOT NULL CHECK (dim > 0),
    -- float32, little-endian, row-major num_rows x dim
    data        bytea NOT NULL CHECK (length(data) = 4 * num_rows * dim),
    device      text NOT NULL,
    seconds     double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, reader_id, block)
);
ALTER TABLE shift.features ALTER COLUMN data SET STORAGE EXTERNAL;  -- float bytes do not compress

CREATE TABLE shift.scores (
    proxy        text NOT NULL,
    params       jsonb NOT NULL,
    model_id     text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    test_reader  text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    train_reader text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    fidelity     bigint NOT NULL CHECK (fidelity > 0),
    value        double precision NOT NULL,
    seconds      double precision NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, params, model_id, test_reader, train_reader, fidelity)
);
COMMENT ON COLUMN shift.scores.fidelity IS 'number of training samples the value was computed on';

-- seed 002 §4.3: the fine-tuned accuracy of a model on a task, the ground truth of regret
-- and the history the meta-learned strategies rank by (seed 000 §3.2 Q5)
CREATE TABLE shift.finetune_results (
    model_id            text NOT NULL REFERENCES shift.models ON DELETE CASCADE,
    train_reader        text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    validation_reader   text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    test_reader         text NOT NULL REFERENCES shift.readers ON DELETE CASCADE,
    params              jsonb NOT NULL,   -- the protocol's resolved parameters (FineTune's)
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
-- Work queue and the workers that drain it
-------------------------------------------------------------------------------

CREATE TABLE shift.tasks (
    task_id      bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('inference', 'proxy', 'datasim', 'finetune', 'describe')),
    key          text NOT NULL UNIQUE,   -- identical work from concurrent queries shares one row
    payload      jsonb NOT NULL,
    depends_on   bigint[] NOT NULL DEFAULT '{}',
    waiters      integer[] NOT NULL DEFAULT '{}',  -- backend pids of queries waiting on this task
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    worker_id    text,
    lease_until  timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
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
    per_sample_seconds         double precision NOT NULL CHECK (per_sample_seconds >= 0),
    feature_read_seconds       double precision NOT NULL CHECK (feature_read_seconds >= 0),
    samples                    bigint NOT NULL,
    measured_at                timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, params)
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

CREATE VIEW shift.live_workers AS
    SELECT * FROM shift.workers
    WHERE heartbeat_at > pg_catalog.now() - interval '15 seconds';

-------------------------------------------------------------------------------
-- Functions. Bodies are one call into the pyfuncs package, loaded from a
-- versioned directory the server can read (GUC shift.python_dir).
-------------------------------------------------------------------------------

CREATE FUNCTION shift._load() RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    version = "0.1.0"
    if GD.get("shift.version") not in (None, version):
        plpy.fatal("the shift extension changed version under this session; open a new session")
    if "shift.version" not in GD:
        import os, sys
        base = plpy.execute("SELECT coalesce(current_setting('shift.python_dir', true), '') AS d")[0]["d"]
        path = os.path.join(base or "/usr/local/lib/shift", version)
        if not os.path.isdir(path):
            plpy.error("shift python directory %s is missing" % path, sqlstate="58P01",
                       hint="run `make install`, or point the shift.python_dir setting at the install")
        if path not in sys.path:
            sys.path.insert(0, path)
        import pyfuncs
        if pyfuncs.__version__ != version:
            plpy.error("shift python package is version %s, the extension is %s" % (pyfuncs.__version__, version),
                       sqlstate="XX000", hint="run `make install` again")
        GD["shift.version"] = version
    return GD["shift.version"]
$python$;

CREATE FUNCTION shift.version() RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._load() $$;

CREATE FUNCTION shift._py_register_model(
    model_id text,
    source text,
    locator text,
    checkpoint text DEFAULT NULL,
    input text DEFAULT 'Vision',
    upstream_dataset text DEFAULT NULL,
    upstream_accuracy double precision DEFAULT NULL,
    num_params bigint DEFAULT NULL,
    feature_dim integer DEFAULT NULL,
    input_size integer DEFAULT NULL,
    architecture text DEFAULT NULL,
    options jsonb DEFAULT '{}'
) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_model(plpy, model_id, source, locator, checkpoint, input, upstream_dataset,
                              upstream_accuracy, num_params, feature_dim, input_size, architecture, options)
$python$;

CREATE FUNCTION shift._py_register_sql_reader(
    reader_id text,
    query text,
    input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_sql_reader(plpy, reader_id, query, input, options, block_size)
$python$;

CREATE FUNCTION shift._py_register_npz_reader(
    reader_id text,
    path text,
    x_key text DEFAULT 'x',
    y_key text DEFAULT 'y',
    input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_npz_reader(plpy, reader_id, path, x_key, y_key, input, options, block_size)
$python$;

CREATE FUNCTION shift._py_drop_model(model_id text) RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    api.drop_object(plpy, "model", model_id)
$python$;

CREATE FUNCTION shift._py_drop_reader(reader_id text) RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    api.drop_object(plpy, "reader", reader_id)
$python$;

CREATE FUNCTION shift._py_score(
    scorer text,
    params jsonb,
    model_ids text[],
    test_reader text,
    train_reader text,
    top_k integer,
    descending boolean
) RETURNS TABLE (model_id text, score double precision)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.score(plpy, scorer, params, model_ids, test_reader, train_reader, top_k, descending)
$python$;

CREATE FUNCTION shift._py_translate(query text) RETURNS text
LANGUAGE plpython3u STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.translate(plpy, query)
$python$;

CREATE FUNCTION shift._py_query(query text)
RETURNS TABLE (rank integer, model_id text, score double precision, selected jsonb)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.query(plpy, query)
$python$;

-------------------------------------------------------------------------------
-- The user-facing functions. PL/Python prefixes every error message with the
-- Python exception type ("plpy.Error: ..."); these wrappers re-raise the error
-- with the message alone, keeping its SQLSTATE, detail and hint.
-------------------------------------------------------------------------------

CREATE FUNCTION shift._raise(state text, message text, detail text, hint text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    message := regexp_replace(message, '^(plpy\.(Error|Fatal)|spiexceptions\.[A-Za-z]+): ', '');
    IF nullif(detail, '') IS NOT NULL AND nullif(hint, '') IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail, HINT = hint;
    ELSIF nullif(detail, '') IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail;
    ELSIF nullif(hint, '') IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, HINT = hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message;
    END IF;
END
$$;

CREATE FUNCTION shift.register_model(
    model_id text,
    source text,
    locator text,
    checkpoint text DEFAULT NULL,
    input text DEFAULT 'Vision',
    upstream_dataset text DEFAULT NULL,
    upstream_accuracy double precision DEFAULT NULL,
    num_params bigint DEFAULT NULL,
    feature_dim integer DEFAULT NULL,
    input_size integer DEFAULT NULL,
    architecture text DEFAULT NULL,
    options jsonb DEFAULT '{}'
) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_model(model_id, source, locator, checkpoint, input, upstream_dataset, upstream_accuracy, num_params, feature_dim, input_size, architecture, options);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_model IS
    'register a pre-trained model: source timm, torchvision, torchscript, hf, onnx or tfhub; returns its id';

CREATE FUNCTION shift.register_sql_reader(
    reader_id text,
    query text,
    input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_sql_reader(reader_id, query, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_sql_reader IS
    'register a reader over a query returning columns x and y, with an ORDER BY fixing the sample order; returns the sample count';

CREATE FUNCTION shift.register_npz_reader(
    reader_id text,
    path text,
    x_key text DEFAULT 'x',
    y_key text DEFAULT 'y',
    input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_npz_reader(reader_id, path, x_key, y_key, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_npz_reader IS
    'register a reader over arrays of an .npz file the server can read; returns the sample count';

CREATE FUNCTION shift.drop_model(model_id text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    PERFORM shift._py_drop_model(model_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.drop_model IS
    'forget a model and everything cached for it';

CREATE FUNCTION shift.drop_reader(reader_id text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    PERFORM shift._py_drop_reader(reader_id);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.drop_reader IS
    'forget a reader and everything cached for it';

CREATE FUNCTION shift.score(
    scorer text,
    params jsonb,
    model_ids text[],
    test_reader text,
    train_reader text,
    top_k integer DEFAULT NULL,
    descending boolean DEFAULT false
) RETURNS TABLE (model_id text, score double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_score(scorer, params, model_ids, test_reader, train_reader, top_k, descending);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.score IS
    'proxy score of each model on (test reader, train reader); the workers compute what the cache lacks. With top_k, only the best top_k models (by ascending score, or descending) are returned, and the cost model may find them by successive halving';

CREATE FUNCTION shift.translate(query text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_translate(query);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.translate IS
    'the plain PostgreSQL a SHiFT-QL query is rewritten into';

CREATE FUNCTION shift.query(query text) RETURNS TABLE (rank integer, model_id text, score double precision, selected jsonb)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_query(query);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.query IS
    'run a SHiFT-QL query and return its ranked models';

CREATE FUNCTION shift.scorers()
RETURNS TABLE (name text, proxy text, higher_is_better boolean, parameters jsonb, description text, kind text)
LANGUAGE plpython3u STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.scorers_table()
$python$;

CREATE FUNCTION shift.grant_usage(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON shift.models, shift.readers, shift.tasks, shift.scores, '
                   'shift.features, shift.labels, shift.costs, shift.finetune_results TO %s', role_name);
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shift TO %s', role_name);
END
$$;

-------------------------------------------------------------------------------
-- Registration: more model sources and readers
-------------------------------------------------------------------------------

-- Whether each model has been reached by a worker: pending (a describe task is
-- queued or running), ready (loaded; its metadata filled in), failed (with why),
-- registered (not loaded yet).
CREATE VIEW shift.model_status AS
    SELECT m.model_id, m.source, m.locator,
           CASE WHEN t.status IN ('queued', 'running') THEN 'pending'
                WHEN m.load_error IS NOT NULL THEN 'failed'
                WHEN m.loaded_at IS NOT NULL THEN 'ready'
                WHEN t.status = 'failed' THEN 'failed'
                ELSE 'registered' END AS status,
           coalesce(m.load_error, CASE WHEN t.status = 'failed' THEN t.error END) AS error,
           m.loaded_at
    FROM shift.models m
    LEFT JOIN shift.tasks t ON t.key = 'describe/model/' || m.model_id;
COMMENT ON VIEW shift.model_status IS
    'per model: pending, ready, failed (with the error) or registered; see shift.describe_models()';

CREATE FUNCTION shift._py_register_models(models jsonb, source text, describe boolean)
RETURNS TABLE (model_id text, status text, error text)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_models(plpy, models, source, describe)
$python$;

CREATE FUNCTION shift._py_describe_models(model_ids text[])
RETURNS TABLE (model_id text, status text, error text)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.describe_models(plpy, model_ids)
$python$;

CREATE FUNCTION shift._py_register_npy_reader(reader_id text, x_path text, y_path text, input text, options jsonb,
                                              block_size integer) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_npy_reader(plpy, reader_id, x_path, y_path, input, options, block_size)
$python$;

CREATE FUNCTION shift._py_register_csv_reader(reader_id text, path text, label_column text, x_columns text[],
                                              input text, options jsonb, block_size integer) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_csv_reader(plpy, reader_id, path, label_column, x_columns, input, options, block_size)
$python$;

CREATE FUNCTION shift._py_register_imagefolder_reader(reader_id text, path text, options jsonb, block_size integer)
RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_imagefolder_reader(plpy, reader_id, path, options, block_size)
$python$;

CREATE FUNCTION shift._py_register_tfds_reader(reader_id text, path text, split text, x_key text, y_key text,
                                               input text, options jsonb, block_size integer) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_tfds_reader(plpy, reader_id, path, split, x_key, y_key, input, options, block_size)
$python$;

CREATE FUNCTION shift._py_register_hf_reader(reader_id text, path text, x_column text, y_column text, split text,
                                             input text, options jsonb, block_size integer) RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.register_hf_reader(plpy, reader_id, path, x_column, y_column, split, input, options, block_size)
$python$;

CREATE FUNCTION shift.register_models(
    models jsonb,
    source text DEFAULT NULL,
    describe boolean DEFAULT true
) RETURNS TABLE (model_id text, status text, error text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_register_models(models, source, describe);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_models IS
    'register a json array of models (objects with register_model''s argument names, or locators); '
    'per entry: pending (a worker will load it), registered, or rejected with the error';

CREATE FUNCTION shift.describe_models(model_ids text[] DEFAULT NULL)
RETURNS TABLE (model_id text, status text, error text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_describe_models(model_ids);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.describe_models IS
    'load models on a worker now (default: those not loaded yet or failed) and wait; ready or failed with why';

CREATE FUNCTION shift.register_npy_reader(
    reader_id text,
    x_path text,
    y_path text,
    input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_npy_reader(reader_id, x_path, y_path, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_npy_reader IS
    'register a reader over two .npy files (samples, labels) the server can read; returns the sample count';

CREATE FUNCTION shift.register_csv_reader(
    reader_id text,
    path text,
    label_column text DEFAULT 'label',
    x_columns text[] DEFAULT NULL,
    input text DEFAULT NULL,
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_csv_reader(reader_id, path, label_column, x_columns, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_csv_reader IS
    'register a reader over a CSV file with a header: numeric columns, a text column, or image paths; returns the sample count';

CREATE FUNCTION shift.register_imagefolder_reader(
    reader_id text,
    path text,
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_imagefolder_reader(reader_id, path, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_imagefolder_reader IS
    'register a reader over image files in one subfolder per class; returns the sample count';

CREATE FUNCTION shift.register_tfds_reader(
    reader_id text,
    path text,
    split text DEFAULT 'train',
    x_key text DEFAULT NULL,
    y_key text DEFAULT NULL,
    input text DEFAULT NULL,
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_tfds_reader(reader_id, path, split, x_key, y_key, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_tfds_reader IS
    'register a reader over one split of a TFDS prepared directory; returns the sample count';

CREATE FUNCTION shift.register_hf_reader(
    reader_id text,
    path text,
    x_column text DEFAULT NULL,
    y_column text DEFAULT 'label',
    split text DEFAULT NULL,
    input text DEFAULT NULL,
    options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN shift._py_register_hf_reader(reader_id, path, x_column, y_column, split, input, options, block_size);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.register_hf_reader IS
    'register a reader over a Hugging Face dataset saved with save_to_disk (a worker counts it); returns the sample count';

-------------------------------------------------------------------------------
-- SHiFT-QL views and explain
-------------------------------------------------------------------------------

-- A persisted scoring view (CREATE SCORING VIEW) or dataset similarity view
-- (CREATE DATASET SIMILARITY VIEW) of seed 000 §3.1 is a plain PostgreSQL view
-- whose query is the SHiFT-QL translation (it calls shift.score or
-- shift.dataset_similarity), with a comment that marks it and keeps its
-- SHiFT-QL text: "shift <kind> view, score ASC|DESC" and the text on the next
-- lines. Where it lives: in the schema its name gives (CREATE SCORING VIEW
-- analytics.best ...), else in the schema the setting shift.views_schema names,
-- by default public. Not the caller's current schema, which the functions
-- cannot see (they run with a pinned search_path), and not schema shift, which
-- holds only the extension's own objects: so the caller needs no privilege on
-- it, DROP EXTENSION and upgrade scripts never meet user objects there, and
-- the view's privileges are the schema owner's business as for any view.
-- The view itself is the record: pg_dump keeps it with its comment, a plain
-- DROP VIEW forgets it, and no table can disagree with the catalog.
CREATE VIEW shift.views AS
SELECT n.nspname::text AS schema_name,
       c.relname::text AS view_name,
       m[1] AS kind,
       m[2] AS score_order,
       m[3] AS definition,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(a.attname::text,
                                    pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       c.oid::pg_catalog.regclass AS relation
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_description d
    ON d.objoid = c.oid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
 CROSS JOIN LATERAL pg_catalog.regexp_match(d.description,
       '^shift (scoring|dataset similarity) view, score (ASC|DESC)\n(.*)$') AS m
 WHERE c.relkind = 'v' AND m IS NOT NULL;
COMMENT ON VIEW shift.views IS
    'the persisted SHiFT-QL views: scoring views rank models, dataset similarity views rank data readers (seed 000 §3.1)';

CREATE FUNCTION shift._py_explain(query text) RETURNS TABLE (section text, content text)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.explain(plpy, query)
$python$;

CREATE FUNCTION shift._py_drop_view(name text, cascade boolean) RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    api.drop_view(plpy, name, cascade)
$python$;

CREATE FUNCTION shift._py_dataset_similarity(metric text, params jsonb, reader_ids text[], target_reader text)
RETURNS TABLE (reader_id text, score double precision)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.dataset_similarity(plpy, metric, params, reader_ids, target_reader)
$python$;

CREATE FUNCTION shift._py_benchmark_scores(scorer text, params jsonb, model_ids text[], reader_ids text[])
RETURNS TABLE (model_id text, reader_id text, score double precision)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.benchmark_scores(plpy, scorer, params, model_ids, reader_ids)
$python$;

CREATE FUNCTION shift.explain(query text) RETURNS TABLE (section text, content text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_explain(query);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.explain IS
    'a SHiFT-QL query''s tree of scoring views (section tree), its PostgreSQL translation (sql) and the plan PostgreSQL chose (plan); runs nothing';

CREATE FUNCTION shift.drop_view(name text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    PERFORM shift._py_drop_view(name, cascade);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.drop_view IS
    'drop a scoring or dataset similarity view (name or schema.name); with cascade, the views that read it too';

CREATE FUNCTION shift.dataset_similarity(metric text, params jsonb, reader_ids text[], target_reader text)
RETURNS TABLE (reader_id text, score double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_dataset_similarity(metric, params, reader_ids, target_reader);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.dataset_similarity IS
    'distance of each reader (the target itself left out) to the target reader by a dataset similarity metric such as Task2Vec (lower is more similar)';

CREATE FUNCTION shift.benchmark_scores(scorer text, params jsonb, model_ids text[], reader_ids text[])
RETURNS TABLE (model_id text, reader_id text, score double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_benchmark_scores(scorer, params, model_ids, reader_ids);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.benchmark_scores IS
    'recorded fine-tuning results of models on readers, the history meta-learned strategies rank by (seed 000 §3.2 Q5)';

-------------------------------------------------------------------------------
-- Fine-tuning: the ground truth of model search (seed 002 §4.3)
-------------------------------------------------------------------------------

CREATE FUNCTION shift._py_finetune(model_ids text[], train_reader text, validation_reader text, test_reader text,
                                   params jsonb)
RETURNS TABLE (model_id text, test_accuracy double precision, validation_accuracy double precision,
               settings jsonb, seconds double precision)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.finetune(plpy, model_ids, train_reader, validation_reader, test_reader, params)
$python$;

CREATE FUNCTION shift.finetune(
    model_ids text[],
    train_reader text,
    validation_reader text,
    test_reader text,
    params jsonb DEFAULT '{}'
) RETURNS TABLE (model_id text, test_accuracy double precision, validation_accuracy double precision,
                 settings jsonb, seconds double precision)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
    RETURN QUERY SELECT * FROM shift._py_finetune(model_ids, train_reader, validation_reader, test_reader, params);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM shift._raise(st, msg, det, hnt);
END
$$;
COMMENT ON FUNCTION shift.finetune IS
    'fine-tune models on a train reader (new linear head, then the whole network at each learning rate of a grid), '
    'keep the best on the validation reader, and record its test accuracy in shift.finetune_results; waits for '
    'the workers, and reuses recorded results (seed 002 §4.3)';
