-------------------------------------------------------------------------------
-- Privileges: what a role needs to use shift
-------------------------------------------------------------------------------

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
