-------------------------------------------------------------------------------
-- Hand-written functions. shift._load puts the pyfuncs package, installed in a
-- versioned directory the server can read (GUC shift.python_dir), on the
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

-- A failed task runs again: its attempts and deaths start over. Queries reset other failed
-- tasks themselves; a quarantined one (it killed the workers that ran it) waits for this.
CREATE FUNCTION shift.retry_task(task_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_status text;
BEGIN
    SELECT t.status INTO found_status FROM shift.tasks t WHERE t.task_id = retry_task.task_id FOR UPDATE;
    IF found_status IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('unknown task %s', task_id),
            HINT = 'failed tasks are listed by SELECT task_id, error FROM shift.tasks WHERE status = ''failed''';
    END IF;
    IF found_status <> 'failed' THEN
        RETURN false;
    END IF;
    UPDATE shift.tasks t SET status = 'queued', attempts = 0, deaths = 0, quarantined = false, error = NULL,
           retry_at = NULL, progress = 0, worker_id = NULL, lease_until = NULL, finished_at = NULL
    WHERE t.task_id = retry_task.task_id;
    PERFORM pg_notify('shift_tasks', '');
    RETURN true;
END
$$;
COMMENT ON FUNCTION shift.retry_task(bigint) IS
    'queue a failed task again, quarantined ones included; false when it had not failed';

CREATE FUNCTION shift.retry_failed_tasks() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE shift.tasks t SET status = 'queued', attempts = 0, deaths = 0, quarantined = false, error = NULL,
           retry_at = NULL, progress = 0, worker_id = NULL, lease_until = NULL, finished_at = NULL
    WHERE t.status = 'failed';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('shift_tasks', '');
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION shift.retry_failed_tasks() IS 'queue every failed task again; returns how many';
