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
    tans_embedding    vector,
    fennec_embedding  vector,
    registered_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE shift.models IS 'the Models view: one row per pre-trained model (seed 000 §3.1)';

CREATE TABLE shift.readers (
    reader_id     text PRIMARY KEY CHECK (reader_id ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    kind          text NOT NULL CHECK (kind IN ('sql', 'npz')),
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

-------------------------------------------------------------------------------
-- Work queue and the workers that drain it
-------------------------------------------------------------------------------

CREATE TABLE shift.tasks (
    task_id      bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('inference', 'proxy', 'datasim', 'finetune')),
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
    'register a pre-trained model: source timm, torchvision, torchscript (hf, tfhub, onnx to come); returns its id';

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
RETURNS TABLE (name text, proxy text, higher_is_better boolean, parameters jsonb, description text)
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
                   'shift.features, shift.labels, shift.costs TO %s', role_name);
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shift TO %s', role_name);
END
$$;
