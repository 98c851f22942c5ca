-------------------------------------------------------------------------------
-- Privileges: several users on one database
--
-- Roles. shift_worker (the workers' privileges: read everything, write the
-- caches and the queue) and shift_trusted_models (may register models whose
-- loading runs code) are group roles, made once per cluster; a worker logs in
-- as shift_worker or as a member of it. shift.grant_usage(role) makes a user:
-- read shift's tables (rows of other users' private readers hidden by
-- row-level security), run shift's functions, create reader functions in
-- schema shift_readers. Users write shift's tables only through the functions
-- below marked SECURITY DEFINER; each pins search_path, checks its arguments
-- and says why it may write what the caller may not (as pgmq and pgai do).
-- shift.grant_admin(role) hands out the rest.
--
-- Who calls. A SECURITY DEFINER function sees itself as current_user, so the
-- invoker-side code passes its current_user as `caller`, and shift._caller
-- accepts it only when the session's login role could become that role (or is
-- a worker, which enqueues on the callers' behalf over the loopback
-- connection). A forged caller is one the session could SET ROLE to anyway.
-------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'shift_worker') THEN
        CREATE ROLE shift_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'shift_trusted_models') THEN
        CREATE ROLE shift_trusted_models NOLOGIN;
    END IF;
END
$$;

-- The SECURITY DEFINER functions SQL readers become (see shift._reader_function); users may create
-- them here, the workers may run them. Nothing else of shift's lives in it.
CREATE SCHEMA shift_readers;
COMMENT ON SCHEMA shift_readers IS 'one function per SQL reader, owned by its owner: how workers read it';
REVOKE ALL ON SCHEMA shift_readers FROM PUBLIC;

-- The same for jobs: shift.submit makes one SECURITY DEFINER function of the submitter here, which
-- runs the job's query with the submitter's privileges when a worker calls it.
CREATE SCHEMA shift_jobs;
COMMENT ON SCHEMA shift_jobs IS 'one function per queued or running job, owned by its submitter: how workers run it';
REVOKE ALL ON SCHEMA shift_jobs FROM PUBLIC;

CREATE FUNCTION shift._caller(claimed name) RETURNS name
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF claimed IS NULL OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = claimed) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('role %s does not exist', claimed);
    END IF;
    IF NOT (pg_has_role(session_user, claimed, 'MEMBER') OR pg_has_role(session_user, 'shift_worker', 'MEMBER')) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('session user %s may not act for role %s', session_user, claimed);
    END IF;
    RETURN claimed;
END
$$;

-- Whether `role` may see and use a reader: it has its owner's privileges, it was granted the reader
-- (directly, through a group, or to public), or it is a worker. A dropped owner's readers are the admins'.
CREATE FUNCTION shift._may_use(role name, reader_owner name, reader text) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(role, 'shift_worker', 'USAGE') OR has_table_privilege(role, 'shift.readers', 'DELETE')
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = reader_owner AND pg_has_role(role, r.oid, 'USAGE'))
        OR EXISTS (SELECT FROM shift.reader_grants g
                    -- sharing a mutable reader shares its versions, <reader>@<k>
                    WHERE g.reader_id IN (reader, split_part(reader, '@', 1))
                      AND (g.grantee = 'public'
                           OR EXISTS (SELECT FROM pg_roles r
                                       WHERE r.rolname = g.grantee AND pg_has_role(role, r.oid, 'USAGE'))))
$$;

CREATE FUNCTION shift._has_role(role name, granted name) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = role AND r.rolsuper)
        OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = granted AND pg_has_role(role, r.oid, 'USAGE'))
$$;

CREATE FUNCTION shift._is_admin(role name) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT has_table_privilege(role, 'shift.readers', 'DELETE') $$;

-------------------------------------------------------------------------------
-- Row-level security: a reader, and everything computed from it, is seen only
-- by those who may use it. Models, costs and workers are shared.
-------------------------------------------------------------------------------

ALTER TABLE shift.readers ENABLE ROW LEVEL SECURITY;
-- A reader's owner sees it without the function call: most rows a user reads are their own, and a pool
-- of 10,000 readers is checked in milliseconds instead of a second.
CREATE POLICY visible ON shift.readers
    USING (owner = current_user OR shift._may_use(current_user, owner, reader_id));

ALTER TABLE shift.labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.labels
    USING (EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = labels.reader_id));

ALTER TABLE shift.features ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.features
    USING (EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = features.reader_id));

ALTER TABLE shift.version_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.version_sources
    USING (EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = version_sources.reader_id));

ALTER TABLE shift.reader_costs ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.reader_costs
    USING (EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = reader_costs.reader_id));

ALTER TABLE shift.reader_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.reader_sources
    USING (EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = reader_sources.reader_id));

ALTER TABLE shift.scores ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.scores
    USING ((SELECT count(*) FROM shift.readers r WHERE r.reader_id IN (scores.test_reader, scores.train_reader))
           = CASE WHEN test_reader = train_reader THEN 1 ELSE 2 END);

ALTER TABLE shift.finetune_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.finetune_results
    USING (NOT EXISTS (SELECT FROM unnest(ARRAY[train_reader, validation_reader, test_reader]) AS u(id)
                        WHERE NOT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = u.id)));

-- an embedding derives from its reader: seen exactly where the reader is. A function, which the planner
-- cannot inline, so that it is asked per row: for the few rows an HNSW scan yields, not as a hash of every
-- reader the caller may see built first (95 ms at 10,000 readers, bench/task_retrieval.py)
CREATE FUNCTION shift._reader_visible(reader text) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = reader)
$$;

ALTER TABLE shift.task_embeddings ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.task_embeddings USING (shift._reader_visible(reader_id));

ALTER TABLE shift.plans ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.plans
    USING (NOT EXISTS (SELECT FROM unnest(ARRAY[test_reader, train_reader]) AS u(id)
                        WHERE NOT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = u.id)));

ALTER TABLE shift.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.tasks
    USING (NOT EXISTS (SELECT FROM unnest(readers) AS u(id)
                        WHERE NOT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = u.id))
           AND (readers <> '{}' OR payload ? 'model_id' OR pg_has_role(current_user, 'shift_worker', 'USAGE')
                OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = requested_by
                                                    AND pg_has_role(current_user, r.oid, 'USAGE'))));

-- A job, and its rows, are seen by those with its owner's privileges, admins and the workers.
ALTER TABLE shift.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.jobs
    USING (shift._has_role(current_user, owner) OR shift._is_admin(current_user)
           OR pg_has_role(current_user, 'shift_worker', 'USAGE'));

ALTER TABLE shift.job_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON shift.job_results
    USING (EXISTS (SELECT FROM shift.jobs j WHERE j.job_id = job_results.job_id));

-------------------------------------------------------------------------------
-- What registration and dropping need, checked where the row is written
-------------------------------------------------------------------------------

-- NULL when `role` may register (and a worker may load) a model so described; else why not.
-- A server path is read with the workers' file access (pg_read_server_files, as COPY FROM a file
-- needs); TorchScript, SavedModels (tfhub) and Hugging Face code run when loaded (shift_trusted_models).
CREATE FUNCTION shift._model_denied(role name, source text, locator text, checkpoint text, options jsonb)
RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN (source IN ('torchscript', 'tfhub') OR coalesce(options->>'trust_remote_code', 'false') = 'true')
             AND NOT shift._has_role(role, 'shift_trusted_models')
            THEN format('model source %s%s runs code when loaded and needs role shift_trusted_models', source,
                        CASE WHEN source = 'hf' THEN ' with trust_remote_code' ELSE '' END)
        WHEN (source IN ('torchscript', 'onnx') OR checkpoint IS NOT NULL
              OR locator ~ '^(/|\./|\.\./|~|file:)')
             AND NOT shift._has_role(role, 'pg_read_server_files')
            THEN format('model %s names a server path and needs role pg_read_server_files',
                        coalesce(checkpoint, locator))
    END
$$;

-- NULL when `role` may register a reader of this kind; else why not.
CREATE FUNCTION shift._reader_denied(role name, kind text) RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    -- a mutable reader and its versions read nothing themselves: their sources' own tasks are checked
    SELECT CASE WHEN kind NOT IN ('sql', 'mutable', 'version') AND NOT shift._has_role(role, 'pg_read_server_files')
                THEN format('a %s reader reads a server file and needs role pg_read_server_files', kind) END
$$;

-- SECURITY DEFINER: users may not write shift.models. The row's owner is the verified caller; the
-- table's CHECKs validate the values; _model_denied decides what may be loaded from where.
CREATE FUNCTION shift._store_model(caller name, m jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    denied text := shift._model_denied(role, m->>'source', m->>'locator', m->>'checkpoint',
                                       coalesce(m->'options', '{}'));
BEGIN
    IF denied IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('permission denied to register model %s', m->>'model_id'),
            DETAIL = denied, HINT = 'a superuser can GRANT the role named to ' || role;
    END IF;
    INSERT INTO shift.models (model_id, source, locator, checkpoint, input, framework, architecture, num_params,
                              feature_dim, input_size, upstream_dataset, upstream_accuracy, options, owner)
    SELECT r.model_id, r.source, r.locator, r.checkpoint, r.input, r.framework, r.architecture, r.num_params,
           r.feature_dim, r.input_size, r.upstream_dataset, r.upstream_accuracy, coalesce(r.options, '{}'), role
      FROM jsonb_populate_record(NULL::shift.models, m) AS r;
    RETURN m->>'model_id';
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('model %s is already registered', m->>'model_id'),
        HINT = format('drop it first with shift.drop_model(%L)', m->>'model_id');
END
$$;

-- SECURITY DEFINER: users may not write shift.readers. The owner is the verified caller. A SQL
-- reader must come with its reading function, made by the caller in shift_readers, SECURITY DEFINER
-- and owned by the caller: that is what the workers run, so they read with the owner's privileges.
CREATE FUNCTION shift._store_reader(caller name, r jsonb, reading_function regprocedure) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    denied text := shift._reader_denied(role, r->>'kind');
BEGIN
    IF denied IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('permission denied to register reader %s', r->>'reader_id'),
            DETAIL = denied, HINT = 'a superuser can GRANT pg_read_server_files TO ' || role || ', or use a SQL reader';
    END IF;
    IF (r->>'kind' = 'sql') <> (reading_function IS NOT NULL) OR (reading_function IS NOT NULL AND NOT EXISTS (
            SELECT FROM pg_proc p
             WHERE p.oid = reading_function AND p.pronamespace = 'shift_readers'::regnamespace AND p.prosecdef
               AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = role))) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('reader %s: %s is not a reading function of role %s', r->>'reader_id', reading_function, role);
    END IF;
    IF EXISTS (SELECT FROM shift.readers x WHERE lower(x.reader_id) = lower(r->>'reader_id')) THEN
        RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('reader %s is already registered', r->>'reader_id'),
            HINT = format('drop it first with shift.drop_reader(%L)', r->>'reader_id');
    END IF;
    INSERT INTO shift.readers (reader_id, kind, source, options, input, num_samples, classes, block_size, owner,
                               read_function)
    SELECT x.reader_id, x.kind, x.source, coalesce(x.options, '{}'), x.input, x.num_samples, x.classes, x.block_size,
           role, reading_function
      FROM jsonb_populate_record(NULL::shift.readers, r) AS x;
    RETURN (r->>'num_samples')::bigint;
END
$$;

-- SECURITY DEFINER: users may not write shift.readers. Stores version (options->>'version') of the
-- mutable reader `mutable` (pyfuncs/versions.py composes and checks it): version 1 creates the mutable
-- reader, owned by the verified caller; a later one only its owner may add, and only as the next
-- version (the mutable row is locked, so concurrent steps are applied one after the other). Every
-- reader the version reads must be a plain reader the caller may use, and each segment inside it.
CREATE FUNCTION shift._store_version(caller name, mutable text, v jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    k integer := (v->'options'->>'version')::integer;
    m shift.readers;
    seg jsonb;
    src shift.readers;
    total bigint := 0;
BEGIN
    IF v->>'reader_id' IS DISTINCT FROM mutable || '@' || k OR v->>'kind' IS DISTINCT FROM 'version'
       OR v->>'source' IS DISTINCT FROM mutable THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('version %s of reader %s is malformed', k, mutable);
    END IF;
    SELECT * INTO m FROM shift.readers WHERE reader_id = mutable FOR UPDATE;
    IF k = 1 THEN
        IF EXISTS (SELECT FROM shift.readers x WHERE lower(x.reader_id) = lower(mutable)) THEN
            RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('reader %s is already registered', mutable),
                HINT = format('drop it first with shift.drop_reader(%L)', mutable);
        END IF;
    ELSIF NOT FOUND OR m.kind <> 'mutable' OR NOT shift._may_use(role, m.owner, mutable) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown mutable reader %s', mutable);
    ELSIF NOT (shift._has_role(role, m.owner) OR shift._is_admin(role)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('must be owner of reader %s', mutable),
            DETAIL = format('it belongs to %s', m.owner);
    ELSIF k <> (m.options->>'latest')::integer + 1 THEN
        RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = format('reader %s changed while this step was made', mutable),
            HINT = 'run the step again';
    END IF;
    FOR seg IN SELECT * FROM jsonb_array_elements(v->'options'->'segments') LOOP
        SELECT * INTO src FROM shift.readers WHERE reader_id = seg->>0;
        IF NOT FOUND OR NOT shift._may_use(role, src.owner, src.reader_id) THEN
            RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('permission denied for reader %s', seg->>0);
        END IF;
        IF src.kind IN ('mutable', 'version') OR (seg->>1)::bigint < 0
           OR (seg->>2)::bigint <= (seg->>1)::bigint OR (seg->>2)::bigint > src.num_samples THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('segment %s of version %s of reader %s is outside reader %s', seg, k, mutable, seg->>0);
        END IF;
        total := total + (seg->>2)::bigint - (seg->>1)::bigint;
    END LOOP;
    IF total <> (v->>'num_samples')::bigint THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('version %s of reader %s has %s samples in its segments, not %s', k, mutable, total,
                             v->>'num_samples');
    END IF;
    IF k = 1 THEN
        INSERT INTO shift.readers (reader_id, kind, source, options, input, num_samples, classes, block_size, owner)
        SELECT mutable, 'mutable', v->'options'->'step'->>'reader', jsonb_build_object('latest', 1), x.input,
               x.num_samples, x.classes, x.block_size, role
          FROM jsonb_populate_record(NULL::shift.readers, v) AS x;
    ELSE
        UPDATE shift.readers r SET options = r.options || jsonb_build_object('latest', k), num_samples = x.num_samples,
               classes = x.classes
          FROM jsonb_populate_record(NULL::shift.readers, v) AS x WHERE r.reader_id = mutable;
    END IF;
    INSERT INTO shift.readers (reader_id, kind, source, options, input, num_samples, classes, block_size, owner)
    SELECT x.reader_id, 'version', mutable, x.options, x.input, x.num_samples, x.classes, x.block_size,
           (SELECT owner FROM shift.readers WHERE reader_id = mutable)
      FROM jsonb_populate_record(NULL::shift.readers, v) AS x;
    INSERT INTO shift.version_sources (reader_id, source_id)
    SELECT DISTINCT v->>'reader_id', s->>0 FROM jsonb_array_elements(v->'options'->'segments') s;
    RETURN k;
END
$$;

-- SECURITY DEFINER: users may not delete from the registry. Only a role with the owner's privileges,
-- or an admin, drops a model or reader; the caches go by cascade, a SQL reader's function with it.
-- Returns false when there is no such object (the caller reports it with the ids it can see).
CREATE FUNCTION shift._drop_object(caller name, kind text, object_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    found_owner name;
    fn regprocedure;
BEGIN
    IF kind = 'model' THEN
        SELECT owner INTO found_owner FROM shift.models WHERE model_id = object_id;
    ELSIF kind = 'reader' THEN
        SELECT owner, read_function INTO found_owner, fn FROM shift.readers WHERE reader_id = object_id;
        IF FOUND AND NOT shift._may_use(role, found_owner, object_id) THEN
            RETURN false;  -- a private reader is not there for those who may not see it
        END IF;
    ELSE
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('unknown kind of object %s', kind);
    END IF;
    IF found_owner IS NULL THEN
        RETURN false;
    END IF;
    IF NOT (shift._has_role(role, found_owner) OR shift._is_admin(role)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('must be owner of %s %s', kind, object_id),
            DETAIL = format('it belongs to %s', found_owner);
    END IF;
    IF kind = 'model' THEN
        DELETE FROM shift.models WHERE model_id = object_id;
    ELSE
        IF object_id LIKE '%@%' THEN
            RAISE EXCEPTION USING ERRCODE = '42809',
                MESSAGE = format('reader %s is a version of mutable reader %s', object_id, split_part(object_id, '@', 1)),
                HINT = 'versions go with their mutable reader: drop that';
        END IF;
        -- a mutable reader's versions go with it; a reader a version reads from stays while the version does
        DELETE FROM shift.readers WHERE shift.readers.kind = 'version' AND source = object_id;
        IF EXISTS (SELECT FROM shift.version_sources s WHERE s.source_id = object_id) THEN
            RAISE EXCEPTION USING ERRCODE = '2BP01',
                MESSAGE = format('reader %s is read by versions of mutable reader %s', object_id,
                                 (SELECT string_agg(DISTINCT split_part(s.reader_id, '@', 1), ', ')
                                    FROM shift.version_sources s WHERE s.source_id = object_id)),
                HINT = 'drop the mutable reader first';
        END IF;
        DELETE FROM shift.readers WHERE reader_id = object_id;
        IF fn IS NOT NULL THEN
            EXECUTE format('DROP FUNCTION IF EXISTS %s', fn);
        END IF;
    END IF;
    RETURN true;
END
$$;

-- SECURITY DEFINER: the owner of a private reader learns the id of a reader it may not see, so that
-- a query over it fails with 42501, not as if it did not exist. Only the owner's name is revealed.
CREATE FUNCTION shift._reader_owner(reader text) RETURNS name
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT owner FROM shift.readers WHERE lower(reader_id) = lower(reader) ORDER BY reader_id = reader DESC LIMIT 1 $$;

-------------------------------------------------------------------------------
-- The queue: tasks are written only through shift._enqueue and
-- shift._queue_describe, so each names the readers it reads and who asked
-------------------------------------------------------------------------------

-- The readers a task payload names: inference (reader_id), proxy (test_reader, train_reader),
-- fine-tuning (train_, validation_, test_reader), dataset similarity (reader_ids, target_reader).
CREATE FUNCTION shift._payload_readers(payload jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT v ORDER BY v), '{}')
      FROM (SELECT payload->>k AS v
              FROM unnest(ARRAY['reader_id', 'test_reader', 'train_reader', 'validation_reader', 'target_reader']) k
            UNION ALL
            SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(payload->'reader_ids') = 'array'
                                                  THEN payload->'reader_ids' ELSE '[]' END)) AS s
     WHERE v IS NOT NULL
$$;

-- Of a pool of readers at their current versions, those lacking a task embedding of this kind and these
-- settings (and those the caller may not use). SECURITY DEFINER: row security on shift.task_embeddings
-- looks each row's reader up again (10 us a row, 0.1 s for a pool of 10,000), while the caller's right
-- to each reader is checked here once, cheaply for its own, and only ids it passed come back.
CREATE FUNCTION shift._lacking_embeddings(caller name, kind text, settings jsonb, readers text[],
                                          versions text[]) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    lacking text[];
BEGIN
    SELECT coalesce(array_agg(u.id ORDER BY u.n), '{}') INTO lacking
      FROM unnest(readers, versions) WITH ORDINALITY AS u(id, v, n)
     WHERE NOT EXISTS (SELECT FROM shift.readers r JOIN shift.task_embeddings e USING (reader_id)
                        WHERE r.reader_id = u.id AND e.reader_version = u.v
                          AND e.kind = _lacking_embeddings.kind AND e.settings = _lacking_embeddings.settings
                          AND (r.owner = role OR shift._may_use(role, r.owner, r.reader_id)));
    RETURN lacking;
END
$$;

-- SECURITY DEFINER: users may not write shift.tasks. Each task is checked before it is written: its
-- kind is one the workers run, its readers are ones the verified caller may use (else 42501), a
-- reader to be counted from a server path needs pg_read_server_files. `tasks` is a json array of
-- {kind, key, payload, depends_on: [indices of earlier entries]}; the ids come back in its order.
-- Rows are written in the order of their keys, dependencies after, so two enqueues that share keys
-- take their row locks in one order and cannot deadlock.
CREATE FUNCTION shift._enqueue(caller name, waiter integer, tasks jsonb) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    t record;
    used text[];
    missing text;
    ids bigint[] := array_fill(NULL::bigint, ARRAY[jsonb_array_length(tasks)]);
    id bigint;
BEGIN
    FOR t IN SELECT e AS task, i::int AS pos FROM jsonb_array_elements(tasks) WITH ORDINALITY AS a(e, i)
              ORDER BY e->>'key' LOOP
        IF t.task->>'kind' IS NULL OR t.task->>'kind' NOT IN ('inference', 'proxy', 'datasim', 'finetune', 'describe', 'validate') THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('unknown task kind %s', t.task->>'kind');
        END IF;
        used := shift._payload_readers(t.task->'payload');
        SELECT u INTO missing FROM unnest(used) u
         WHERE NOT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = u AND shift._may_use(role, r.owner, u))
         LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('permission denied for reader %s', missing),
                DETAIL = format('role %s may not use it', role);
        END IF;
        IF t.task->'payload' ? 'reader' AND NOT shift._has_role(role, 'pg_read_server_files') THEN
            RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'permission denied to read a server path',
                DETAIL = 'counting a reader from a server path needs role pg_read_server_files';
        END IF;
        INSERT INTO shift.tasks AS x (kind, key, payload, waiters, readers, requested_by)
        VALUES (t.task->>'kind', t.task->>'key', t.task->'payload', ARRAY[waiter], used, role)
        -- A done task is queued again (its results may have been dropped since), and so is a failed
        -- one, unless it is quarantined: it killed the workers that ran it, and only shift.retry_task
        -- resets it. Waiters: this query's backend and those of the others still connected.
        ON CONFLICT (key) DO UPDATE SET
            waiters = ARRAY(SELECT DISTINCT w FROM unnest(x.waiters || waiter) w
                             WHERE w IN (SELECT pid FROM pg_stat_activity)),
            requested_by = EXCLUDED.requested_by,
            status = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                          THEN 'queued' ELSE x.status END,
            attempts = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                            THEN 0 ELSE x.attempts END,
            deaths = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                          THEN 0 ELSE x.deaths END,
            retry_at = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                            THEN NULL ELSE x.retry_at END,
            error = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                         THEN NULL ELSE x.error END,
            progress = CASE WHEN x.status = 'done' OR (x.status = 'failed' AND NOT x.quarantined)
                            THEN 0 ELSE x.progress END
        RETURNING task_id INTO id;
        ids[t.pos] := id;
    END LOOP;
    FOR t IN SELECT e AS task, i::int AS pos FROM jsonb_array_elements(tasks) WITH ORDINALITY AS a(e, i) LOOP
        UPDATE shift.tasks x SET depends_on = (
            SELECT coalesce(array_agg(ids[d::int + 1] ORDER BY n), '{}')
              FROM jsonb_array_elements_text(coalesce(t.task->'depends_on', '[]')) WITH ORDINALITY AS b(d, n)
             WHERE d::int + 1 < t.pos)
         WHERE x.task_id = ids[t.pos];
    END LOOP;
    PERFORM pg_notify('shift_tasks', '');
    RETURN ids;
END
$$;

-- SECURITY DEFINER: users may not write shift.tasks. A user may queue again a failed task it can see
-- (every reader it names is one the verified caller may use), quarantined ones included: that is how
-- a task that killed its workers is tried again on purpose. Others are 42704, as if not there.
CREATE FUNCTION shift._retry_task(caller name, task bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    target shift.tasks;
BEGIN
    SELECT * INTO target FROM shift.tasks t WHERE t.task_id = task FOR UPDATE;
    IF NOT FOUND OR EXISTS (SELECT FROM unnest(target.readers) u
                             WHERE NOT EXISTS (SELECT FROM shift.readers r
                                                WHERE r.reader_id = u AND shift._may_use(role, r.owner, u))) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown task %s', task),
            HINT = 'failed tasks are listed by SELECT task_id, error FROM shift.tasks WHERE status = ''failed''';
    END IF;
    IF target.status <> 'failed' THEN
        RETURN false;
    END IF;
    PERFORM shift._requeue_failed(ARRAY[task]);  -- the row is locked and failed: it is queued
    RETURN true;
END
$$;

-- A failed task runs again: its attempts and deaths start over. Queries reset other failed
-- tasks themselves; a quarantined one (it killed the workers that ran it) waits for this.
CREATE FUNCTION shift.retry_task(task_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._retry_task(current_user, task_id) $$;
COMMENT ON FUNCTION shift.retry_task(bigint) IS
    'queue a failed task again, quarantined ones included; false when it had not failed';

-- SECURITY DEFINER: a describe task loads a registered model (shared by all) to fill in what its
-- library knows; anyone may ask again for models that exist. Queued in the caller's transaction.
CREATE FUNCTION shift._queue_describe(model_ids text[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO shift.tasks AS t (kind, key, payload, requested_by)
    SELECT 'describe', 'describe/model/' || m.model_id, jsonb_build_object('model_id', m.model_id), session_user
      FROM shift.models m WHERE m.model_id = ANY(model_ids) ORDER BY m.model_id
    ON CONFLICT (key) DO UPDATE SET status = 'queued', attempts = 0, error = NULL, progress = 0, worker_id = NULL,
        lease_until = NULL, payload = EXCLUDED.payload
    WHERE t.status IN ('done', 'failed')
$$;

-- SECURITY DEFINER: plans are a shared log of what the planner chose; a row is written only when a
-- query ran work (a cached answer writes nothing), for readers the caller may use.
CREATE FUNCTION shift._record_plan(caller name, p jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
BEGIN
    IF EXISTS (SELECT FROM unnest(ARRAY[p->>'test_reader', p->>'train_reader']) u
                WHERE NOT EXISTS (SELECT FROM shift.readers r WHERE r.reader_id = u AND shift._may_use(role, r.owner, u)))
    THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'permission denied to record a plan over these readers';
    END IF;
    INSERT INTO shift.plans (scorer, params, model_ids, test_reader, train_reader, top_k, mode, choice,
                             estimate_full, estimate_sh, terms, measured_seconds)
    SELECT x.scorer, x.params, x.model_ids, x.test_reader, x.train_reader, x.top_k, x.mode, x.choice,
           x.estimate_full, x.estimate_sh, coalesce(x.terms, '{}'), x.measured_seconds
      FROM jsonb_populate_record(NULL::shift.plans, p) AS x;
END
$$;

-- SECURITY DEFINER: a SQL reader's reading function is executable by its owner and the workers only,
-- but a query by anyone who may use the reader must know whether the rows behind it changed since
-- its cached blocks were fingerprinted. This gives that and no more: one md5 over the rows in the
-- reader's order, read through the reading function (so with the owner's privileges), for a caller
-- that may use the reader. PostgreSQL hashes the rows; no Python runs. NULL for a file reader.
CREATE FUNCTION shift._reader_digest(caller name, reader text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    target shift.readers;
    digest text;
BEGIN
    SELECT * INTO target FROM shift.readers r WHERE r.reader_id = reader;
    IF NOT FOUND OR NOT shift._may_use(role, target.owner, target.reader_id) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown reader %s', reader);
    END IF;
    IF target.read_function IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT md5(string_agg(md5(r.x::text) || md5(coalesce(r.y, %L)), %L ORDER BY r.n)) '
                   'FROM %s() WITH ORDINALITY AS r(x, y, n)', '', '', target.read_function::oid::regproc)
       INTO digest;
    RETURN coalesce(digest, md5(''));
END
$$;

-- NULL when the worker may run a task now; else why not. Checked again at run time, since rights
-- change: the asker may still use every reader, file readers' owners may still read server files,
-- and the model's owner may still have it loaded from where and how it says.
CREATE FUNCTION shift._task_denied(task bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT format('role %s may no longer use reader %s', t.requested_by, r.reader_id)
           FROM unnest(t.readers) u JOIN shift.readers r ON r.reader_id = u
          WHERE t.requested_by IS NOT NULL AND NOT shift._may_use(t.requested_by, r.owner, r.reader_id) LIMIT 1),
        (SELECT format('owner %s of reader %s: %s', r.owner, r.reader_id, shift._reader_denied(r.owner, r.kind))
           FROM unnest(t.readers) u JOIN shift.readers r ON r.reader_id = u
          WHERE shift._reader_denied(r.owner, r.kind) IS NOT NULL LIMIT 1),
        (SELECT format('owner %s of model %s: %s', m.owner, m.model_id,
                       shift._model_denied(m.owner, m.source, m.locator, m.checkpoint, m.options))
           FROM shift.models m WHERE m.model_id = t.payload->>'model_id'
            AND shift._model_denied(m.owner, m.source, m.locator, m.checkpoint, m.options) IS NOT NULL))
      FROM shift.tasks t WHERE t.task_id = task
$$;

-------------------------------------------------------------------------------
-- Jobs: a SHiFT-QL text run by a worker, outliving the submitter's connection.
-- The worker is not a member of the submitter and must not be: the text runs
-- inside a SECURITY DEFINER function the submitter made in shift_jobs, where
-- PostgreSQL refuses SET ROLE; the worker only calls it and stores its rows.
-------------------------------------------------------------------------------

-- Whether `role` may see a job of `job_owner`: as for a reader, its owner's privileges, an admin's, a worker's.
CREATE FUNCTION shift._may_see_job(role name, job_owner name) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT shift._has_role(role, job_owner) OR shift._is_admin(role) OR pg_has_role(role, 'shift_worker', 'USAGE')
$$;

-- SECURITY DEFINER: drops a job's function, which only its owner (or a superuser) may.
CREATE FUNCTION shift._drop_job_function(fn oid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF fn IS NOT NULL AND EXISTS (SELECT FROM pg_proc p WHERE p.oid = fn AND p.pronamespace = 'shift_jobs'::regnamespace)
    THEN
        EXECUTE format('DROP FUNCTION %s', fn::regprocedure);
    END IF;
END
$$;

-- SECURITY DEFINER: users may not write shift.jobs. The owner is the verified caller; the function must be
-- the caller's own SECURITY DEFINER function in shift_jobs, of no arguments and no other job: run by the
-- worker as anything else (the worker's own privileges, another user's) it would run the text as someone else.
CREATE FUNCTION shift._store_job(caller name, query text, fn regprocedure) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    id bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_proc p
                    WHERE p.oid = fn AND p.pronamespace = 'shift_jobs'::regnamespace AND p.prosecdef AND p.pronargs = 0
                      AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = role))
       OR EXISTS (SELECT FROM shift.jobs j WHERE j.run_function = fn) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('%s is not a job function of role %s', fn, role);
    END IF;
    INSERT INTO shift.jobs (query, owner, run_function) VALUES (query, role, fn) RETURNING job_id INTO id;
    PERFORM pg_notify('shift_jobs', id::text);
    RETURN id;
END
$$;

-- Queue a SHiFT-QL text as a job; its id comes back. A text that cannot be translated fails here, as
-- shift.query would. The function made here (owned by the caller, executable by the workers alone)
-- runs the text with the caller's privileges; the job is queued when the caller's transaction commits.
CREATE FUNCTION shift.submit(query text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := 'shift_jobs.' || quote_ident('job_' || replace(gen_random_uuid()::text, '-', ''));
BEGIN
    PERFORM shift.translate(query);
    EXECUTE format('CREATE FUNCTION %s() RETURNS TABLE (rank integer, model_id text, score double precision, '
                   'selected jsonb) LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp '
                   'AS %L', fn, format('SELECT * FROM shift.query(%L)', query));
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s() TO shift_worker', fn);
    RETURN shift._store_job(current_user, query, (fn || '()')::regprocedure);
END
$$;
COMMENT ON FUNCTION shift.submit(text) IS
    'run a SHiFT-QL query as a job on a worker, which outlives this connection; returns the job id';

-- SECURITY DEFINER: ends a job for the runner that holds it (its backend pid), counts its tasks and drops its
-- function. Only a worker's session may: users end their jobs with shift.cancel_job.
CREATE FUNCTION shift._finish_job(job bigint, runner integer, outcome text, error text DEFAULT NULL,
                                  state text DEFAULT NULL, detail text DEFAULT NULL, hint text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this shift.jobs;
BEGIN
    IF NOT pg_has_role(session_user, 'shift_worker', 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('session user %s is not a shift worker', session_user);
    END IF;
    IF outcome IS NULL OR outcome NOT IN ('done', 'failed', 'cancelled') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('a job cannot end %s', outcome);
    END IF;
    SELECT * INTO this FROM shift.jobs j WHERE j.job_id = job AND j.status = 'running' AND j.backend_pid = runner
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;  -- no longer this runner's: cancelled while queued, or taken over after a lost lease
    END IF;
    UPDATE shift.jobs j SET status = outcome, finished_at = now(), lease_until = NULL, run_function = NULL,
           error = _finish_job.error, sqlstate = state, error_detail = detail, error_hint = hint,
           tasks_total = c.total, tasks_done = c.done
      FROM (SELECT count(*) AS total, count(*) FILTER (WHERE t.status = 'done') AS done
              FROM shift.tasks t
             WHERE runner = ANY(t.waiters) AND (t.status IN ('queued', 'running') OR t.finished_at >= this.started_at)) c
     WHERE j.job_id = job;
    PERFORM shift._drop_job_function(this.run_function);
    RETURN true;
END
$$;

-- SECURITY DEFINER: users may not write shift.jobs. Those who may see a job may cancel it: a queued one
-- ends now; a running one is marked, and its runner cancels the statement. False when it had ended.
CREATE FUNCTION shift._cancel_job(caller name, job bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    this shift.jobs;
BEGIN
    SELECT * INTO this FROM shift.jobs j WHERE j.job_id = job FOR UPDATE;
    IF NOT FOUND OR NOT shift._may_see_job(role, this.owner) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown job %s', job),
            HINT = 'your jobs are listed by SELECT job_id, status, query FROM shift.jobs';
    END IF;
    IF this.status = 'queued' THEN
        UPDATE shift.jobs j SET status = 'cancelled', cancel_requested = true, finished_at = now(), run_function = NULL
         WHERE j.job_id = job;
        PERFORM shift._drop_job_function(this.run_function);
        RETURN true;
    ELSIF this.status = 'running' THEN
        UPDATE shift.jobs j SET cancel_requested = true WHERE j.job_id = job;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

CREATE FUNCTION shift.cancel_job(id bigint) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._cancel_job(current_user, id) $$;
COMMENT ON FUNCTION shift.cancel_job(bigint) IS
    'cancel a queued or running job (its running statement is cancelled within seconds); false when it had ended';

-- The rows of a done job, as shift.query returned them; a failed job raises the error its query raised.
CREATE FUNCTION shift.job_result(id bigint)
RETURNS TABLE (rank integer, model_id text, score double precision, selected jsonb)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    this shift.jobs;
BEGIN
    SELECT * INTO this FROM shift.jobs j WHERE j.job_id = id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown job %s', id),
            HINT = 'your jobs are listed by SELECT job_id, status, query FROM shift.jobs';
    ELSIF this.status = 'done' THEN
        RETURN QUERY SELECT r.rank, r.model_id, r.score, r.selected FROM shift.job_results r
                      WHERE r.job_id = id ORDER BY r.rank;
    ELSIF this.status = 'failed' THEN
        PERFORM shift._raise(coalesce(this.sqlstate, 'XX000'), coalesce(this.error, 'the job failed'),
                             this.error_detail, this.error_hint);
    ELSIF this.status = 'cancelled' THEN
        RAISE EXCEPTION USING ERRCODE = '57014', MESSAGE = format('job %s was cancelled', id);
    ELSE
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('job %s is %s, not done yet', id, this.status),
            HINT = format('SELECT * FROM shift.job_status(%s) says how far it is', id);
    END IF;
END
$$;
COMMENT ON FUNCTION shift.job_result(bigint) IS
    'the ranked models of a done job, as shift.query returns them; a failed job raises its error';

-------------------------------------------------------------------------------
-- Settings that choose code or connections count only when a superuser set them
-------------------------------------------------------------------------------

-- SECURITY DEFINER: reads pg_file_settings (superuser only), i.e. postgresql.conf and ALTER SYSTEM.
-- A session's SET of shift.python_dir or shift.loopback_dsn never reaches the code that imports or
-- connects. Only shift's own settings are answered.
CREATE FUNCTION shift._server_setting(setting_name text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.setting FROM pg_file_settings f
     WHERE f.name = setting_name AND setting_name IN ('shift.python_dir', 'shift.loopback_dsn') AND f.error IS NULL
     ORDER BY f.seqno DESC LIMIT 1
$$;

-- SECURITY DEFINER: where this server listens, for the loopback connection; unix_socket_directories
-- is readable only with pg_read_all_settings, and a path of a socket is no secret.
CREATE FUNCTION shift._server_socket() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT split_part(current_setting('unix_socket_directories'), ',', 1) $$;

-------------------------------------------------------------------------------
-- Sharing readers
-------------------------------------------------------------------------------

-- SECURITY DEFINER: users may not write shift.reader_grants; only a role with the owner's
-- privileges (or an admin) shares or unshares a reader.
CREATE FUNCTION shift._share_reader(caller name, reader text, grantee name, share boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role name := shift._caller(caller);
    found_owner name;
BEGIN
    SELECT owner INTO found_owner FROM shift.readers WHERE reader_id = reader;
    IF NOT FOUND OR NOT shift._may_use(role, found_owner, reader) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown reader %s', reader);
    END IF;
    IF NOT (shift._has_role(role, found_owner) OR shift._is_admin(role)) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('must be owner of reader %s', reader);
    END IF;
    IF grantee <> 'public' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = grantee) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('role %s does not exist', grantee);
    END IF;
    IF share THEN
        INSERT INTO shift.reader_grants (reader_id, grantee, granted_by) VALUES (reader, grantee, role)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM shift.reader_grants g WHERE g.reader_id = reader AND g.grantee = _share_reader.grantee;
    END IF;
END
$$;

CREATE FUNCTION shift.grant_reader(reader text, grantee name) RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._share_reader(current_user, reader, grantee, true) $$;
COMMENT ON FUNCTION shift.grant_reader(text, name) IS
    'let a role (or public) see and use a reader you own, and what is cached for it';

CREATE FUNCTION shift.revoke_reader(reader text, grantee name) RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._share_reader(current_user, reader, grantee, false) $$;
COMMENT ON FUNCTION shift.revoke_reader(text, name) IS 'take back shift.grant_reader';

-------------------------------------------------------------------------------
-- Who gets what
-------------------------------------------------------------------------------

-- The workers: read everything, fill the caches, run the queue, load models' metadata.
GRANT USAGE ON SCHEMA shift, shift_readers, shift_jobs TO shift_worker;
GRANT SELECT ON ALL TABLES IN SCHEMA shift TO shift_worker;
GRANT INSERT, UPDATE ON shift.features, shift.labels, shift.scores, shift.costs, shift.reader_costs,
    shift.proxy_costs, shift.finetune_results, shift.task_embeddings, shift.model_embeddings,
    shift.reader_sources TO shift_worker;
GRANT INSERT, UPDATE, DELETE ON shift.workers TO shift_worker;
GRANT UPDATE, DELETE ON shift.tasks TO shift_worker;
-- jobs: claim, renew the lease, give back, prune; store the rows. Ending one drops its function: shift._finish_job.
GRANT UPDATE (status, worker_id, backend_pid, lease_until, attempts, started_at), DELETE ON shift.jobs TO shift_worker;
GRANT INSERT ON shift.job_results TO shift_worker;
GRANT UPDATE (loaded_at, load_error, framework, architecture, num_params, feature_dim, input_size, input,
              num_classes, input_mean, input_std, upstream_dataset, upstream_accuracy) ON shift.models TO shift_worker;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shift FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shift TO shift_worker;

CREATE FUNCTION shift.grant_usage(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA shift_readers, shift_jobs TO %s', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA shift TO %s', role_name);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shift TO %s', role_name);
END
$$;
COMMENT ON FUNCTION shift.grant_usage(regrole) IS
    'make a role a user of shift: query, register hub models and SQL readers, fine-tune, share its readers';

CREATE FUNCTION shift.grant_admin(role_name regrole) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM shift.grant_usage(role_name);
    EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA shift TO %s WITH GRANT OPTION', role_name);
    EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA shift TO %s WITH GRANT OPTION', role_name);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shift TO %s WITH GRANT OPTION', role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA shift TO %s WITH GRANT OPTION', role_name);
END
$$;
COMMENT ON FUNCTION shift.grant_admin(regrole) IS
    'everything grant_usage gives, plus writing, dropping and granting all of shift''s tables';

REVOKE ALL ON FUNCTION shift.grant_usage(regrole), shift.grant_admin(regrole) FROM PUBLIC, shift_worker;

-------------------------------------------------------------------------------
-- A function a worker runs as its owner (a SQL reader's, a job's) must stay
-- SECURITY DEFINER: made SECURITY INVOKER by CREATE OR REPLACE or ALTER
-- FUNCTION, it would run with the worker's privileges.
-------------------------------------------------------------------------------

CREATE FUNCTION shift._keep_definer_functions() RETURNS event_trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad text;
BEGIN
    SELECT c.object_identity INTO bad
      FROM pg_event_trigger_ddl_commands() c JOIN pg_proc p ON p.oid = c.objid
     WHERE c.classid = 'pg_proc'::regclass AND NOT p.prosecdef
       AND (p.pronamespace IN ('shift_readers'::regnamespace, 'shift_jobs'::regnamespace)
            OR EXISTS (SELECT FROM shift.readers r WHERE r.read_function = p.oid)
            OR EXISTS (SELECT FROM shift.jobs j WHERE j.run_function = p.oid))
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = format('function %s must stay SECURITY DEFINER', bad),
            DETAIL = 'shift''s workers run the functions of schemas shift_readers and shift_jobs as their owners';
    END IF;
END
$$;

CREATE EVENT TRIGGER shift_keep_definer_functions ON ddl_command_end
    WHEN TAG IN ('CREATE FUNCTION', 'ALTER FUNCTION')
    EXECUTE FUNCTION shift._keep_definer_functions();
