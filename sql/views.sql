-------------------------------------------------------------------------------
-- Views: live workers, model status, the persisted SHiFT-QL views
-------------------------------------------------------------------------------

-- clock_timestamp(), not now(): a query that waits inside one long statement must see
-- a worker's heartbeat age as it is now, not as it was when its transaction began
CREATE VIEW shift.live_workers AS
    SELECT * FROM shift.workers
    WHERE heartbeat_at > pg_catalog.clock_timestamp() - interval '15 seconds';

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
