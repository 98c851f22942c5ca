-------------------------------------------------------------------------------
-- Hand-written functions. shift._load puts the pyfuncs package, installed in a
-- versioned directory the server can read (shift.python_dir as postgresql.conf sets it), on the
-- session's sys.path once; every PL/Python body first makes sure it ran.
-- shift._raise re-raises an error caught by a wrapper (see python_functions.sql)
-- without PL/Python's "plpy.Error: " prefix.
-------------------------------------------------------------------------------

CREATE FUNCTION shift._load() RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    version = "0.1.0"
    if GD.get("shift.version") not in (None, version):
        plpy.fatal("the shift extension changed version under this session; open a new session")
    if "shift.version" not in GD:
        import os, sys
        # only postgresql.conf or ALTER SYSTEM choose which Python the server imports, never a session's SET
        row = plpy.execute("SELECT coalesce(shift._server_setting('shift.python_dir'), '') AS d, "
                           "coalesce(current_setting('shift.python_dir', true), '') AS s")[0]
        base = row["d"]
        if row["s"] and row["s"] != base:
            plpy.warning("shift.python_dir = %r is ignored: only a superuser sets it, in postgresql.conf or with "
                         "ALTER SYSTEM" % row["s"])
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

CREATE FUNCTION shift._raise(state text, message text, detail text, hint text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- an error that crossed PL/Python twice (a cancel inside a nested call) carries the prefix twice
    message := regexp_replace(message, '^((plpy\.(Error|Fatal)|spiexceptions\.[A-Za-z]+): )+', '');
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

-- The scorer registry: no argument and no error a caller could cause, so no wrapper.
CREATE FUNCTION shift.scorers()
RETURNS TABLE (name text, proxy text, higher_is_better boolean, parameters jsonb, description text, kind text)
LANGUAGE plpython3u STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $python$
    GD.get("shift.version") or plpy.execute("SELECT shift._load()")
    from pyfuncs import api
    return api.scorers_table()
$python$;

-- Failed tasks queued again as if new: attempts and deaths start over, quarantine is lifted. The one
-- reset of shift.retry_task (as its definer) and shift.retry_failed_tasks (as the admin calling it);
-- invoker's rights, so a user calling it directly cannot write shift.tasks. NULL: every failed task.
CREATE FUNCTION shift._requeue_failed(task_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE shift.tasks t SET status = 'queued', attempts = 0, deaths = 0, quarantined = false, error = NULL,
           retry_at = NULL, progress = 0, worker_id = NULL, lease_until = NULL, finished_at = NULL
    WHERE t.status = 'failed' AND (task_ids IS NULL OR t.task_id = ANY(task_ids));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('shift_tasks', '');
    END IF;
    RETURN n;
END
$$;

-- Every failed task, quarantined ones included, runs again (an admin's: it writes shift.tasks).
CREATE FUNCTION shift.retry_failed_tasks() RETURNS bigint
LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._requeue_failed(NULL) $$;
COMMENT ON FUNCTION shift.retry_failed_tasks() IS 'queue every failed task again; returns how many';

-- What identifies the data behind a reader today, as one text: what a cached embedding is keyed by
-- (shift.task_embeddings.reader_version). The one place to change when readers get versions of their
-- own (change, add and delete readers, seed 000 §5). NULL for a reader the caller cannot see.
CREATE FUNCTION shift._reader_version(reader text) RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$ SELECT shift._version_of(r) FROM shift.readers r WHERE r.reader_id = reader $$;

-- The same of a row of shift.readers. No SET clause, so that PostgreSQL inlines it into the query
-- reading the rows (every name in it is qualified): a pool of 10,000 readers is versioned in one scan,
-- not by 10,000 calls that each look their reader up again.
CREATE FUNCTION shift._version_of(r shift.readers) RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT pg_catalog.md5(pg_catalog.concat_ws(E'\x1f', r.kind, r.source, r.options::text, r.num_samples::text,
                                               r.classes::text, r.block_size::text,
                                               extract(epoch FROM r.registered_at)::text))
$$;
