-- The user-facing functions that call Python, one declaration each. This file
-- is not run as it stands: scripts/build_sql.py turns each declaration
--
--     CREATE FUNCTION shift.<name>(<arguments, with their defaults>)
--     RETURNS <type> <volatility>
--     PYTHON [<volatility of the Python function>] api.<function>[(<arguments>)]
--     COMMENT '<text>' ['<more text>' ...];
--
-- into two functions of the install script:
--   shift._py_<name>, in PL/Python: its body makes sure shift._load() has put
--     the pyfuncs package on the path, then returns
--     api.<function>(plpy, <arguments>); without the parentheses the arguments
--     are all of the SQL function's, in order. Its volatility is the one after
--     PYTHON, else the declared one.
--   shift.<name>, in PL/pgSQL, with the same arguments and defaults: it calls
--     shift._py_<name> and re-raises any error through shift._raise, with
--     PL/Python's "plpy.Error: " prefix cut off the message. It carries the
--     COMMENT.
-- Both are SECURITY INVOKER with search_path pg_catalog, pg_temp. Comment
-- lines outside a declaration, but for this first block, are copied into the
-- install script.

-------------------------------------------------------------------------------
-- Registry: models and readers
-------------------------------------------------------------------------------

CREATE FUNCTION shift.register_model(model_id text, source text, locator text, checkpoint text DEFAULT NULL,
    input text DEFAULT 'Vision', upstream_dataset text DEFAULT NULL, upstream_accuracy double precision DEFAULT NULL,
    num_params bigint DEFAULT NULL, feature_dim integer DEFAULT NULL, input_size integer DEFAULT NULL,
    architecture text DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS text VOLATILE
PYTHON api.register_model
COMMENT 'register a pre-trained model: source timm, torchvision, torchscript, hf, onnx or tfhub; returns its id';

CREATE FUNCTION shift.register_models(models jsonb, source text DEFAULT NULL, describe boolean DEFAULT true)
RETURNS TABLE (model_id text, status text, error text) VOLATILE
PYTHON api.register_models
COMMENT 'register a json array of models (objects with register_model''s argument names, or locators); '
        'per entry: pending (a worker will load it), registered, or rejected with the error';

CREATE FUNCTION shift.describe_models(model_ids text[] DEFAULT NULL)
RETURNS TABLE (model_id text, status text, error text) VOLATILE
PYTHON api.describe_models
COMMENT 'load models on a worker now (default: those not loaded yet or failed) and wait; ready or failed with why';

CREATE FUNCTION shift.drop_model(model_id text) RETURNS void VOLATILE
PYTHON api.drop_object("model", model_id)
COMMENT 'forget a model and everything cached for it';

CREATE FUNCTION shift.register_sql_reader(reader_id text, query text, input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}', block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_sql_reader
COMMENT 'register a reader over a query returning columns x and y, with an ORDER BY fixing the sample order; '
        'returns the sample count';

CREATE FUNCTION shift.register_npz_reader(reader_id text, path text, x_key text DEFAULT 'x', y_key text DEFAULT 'y',
    input text DEFAULT 'Vision', options jsonb DEFAULT '{}', block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_npz_reader
COMMENT 'register a reader over arrays of an .npz file the server can read; returns the sample count';

CREATE FUNCTION shift.register_npy_reader(reader_id text, x_path text, y_path text, input text DEFAULT 'Vision',
    options jsonb DEFAULT '{}', block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_npy_reader
COMMENT 'register a reader over two .npy files (samples, labels) the server can read; returns the sample count';

CREATE FUNCTION shift.register_csv_reader(reader_id text, path text, label_column text DEFAULT 'label',
    x_columns text[] DEFAULT NULL, input text DEFAULT NULL, options jsonb DEFAULT '{}', block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_csv_reader
COMMENT 'register a reader over a CSV file with a header: numeric columns, a text column, or image paths; '
        'returns the sample count';

CREATE FUNCTION shift.register_imagefolder_reader(reader_id text, path text, options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_imagefolder_reader
COMMENT 'register a reader over image files in one subfolder per class; returns the sample count';

CREATE FUNCTION shift.register_tfds_reader(reader_id text, path text, split text DEFAULT 'train',
    x_key text DEFAULT NULL, y_key text DEFAULT NULL, input text DEFAULT NULL, options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_tfds_reader
COMMENT 'register a reader over one split of a TFDS prepared directory; returns the sample count';

CREATE FUNCTION shift.register_hf_reader(reader_id text, path text, x_column text DEFAULT NULL,
    y_column text DEFAULT 'label', split text DEFAULT NULL, input text DEFAULT NULL, options jsonb DEFAULT '{}',
    block_size integer DEFAULT 1024)
RETURNS bigint VOLATILE
PYTHON api.register_hf_reader
COMMENT 'register a reader over a Hugging Face dataset saved with save_to_disk (a worker counts it); '
        'returns the sample count';

CREATE FUNCTION shift.drop_reader(reader_id text) RETURNS void VOLATILE
PYTHON api.drop_object("reader", reader_id)
COMMENT 'forget a reader and everything cached for it';

-------------------------------------------------------------------------------
-- Mutable readers (seed 000 §3.1): an initial reader and ordered change-, add- and
-- delete-steps, each a new version <reader>@<k>; the name alone means the latest
-------------------------------------------------------------------------------

CREATE FUNCTION shift.create_mutable_reader(reader_id text, initial_reader text) RETURNS integer VOLATILE
PYTHON api.create_mutable_reader
COMMENT 'make a mutable reader whose version 1 is the samples of initial_reader, in its order; returns 1';

CREATE FUNCTION shift.change_reader(reader_id text, change_reader text, indices bigint[]) RETURNS integer VOLATILE
PYTHON api.change_reader
COMMENT 'new version of a mutable reader: sample j of change_reader replaces the sample at 0-based index '
        'indices[j]; returns the new version';

CREATE FUNCTION shift.add_to_reader(reader_id text, add_reader text) RETURNS integer VOLATILE
PYTHON api.add_to_reader
COMMENT 'new version of a mutable reader: its samples followed by those of add_reader; returns the new version';

CREATE FUNCTION shift.delete_from_reader(reader_id text, indices bigint[]) RETURNS integer VOLATILE
PYTHON api.delete_from_reader
COMMENT 'new version of a mutable reader without the samples at the 0-based indices; returns the new version';

CREATE FUNCTION shift.reader_versions(reader_id text)
RETURNS TABLE (version integer, version_reader text, step text, step_reader text, step_samples bigint,
               num_samples bigint, classes text[], created_at timestamptz) VOLATILE
PYTHON api.reader_versions
COMMENT 'the history of a mutable reader: per version its reader id (<reader>@<k>, usable wherever a reader is), '
        'the step that made it and its size';

-------------------------------------------------------------------------------
-- Scoring, dataset similarity and the recorded fine-tuning history
-------------------------------------------------------------------------------

CREATE FUNCTION shift.score(scorer text, params jsonb, model_ids text[], test_reader text, train_reader text,
    top_k integer DEFAULT NULL, descending boolean DEFAULT false)
RETURNS TABLE (model_id text, score double precision) VOLATILE
PYTHON api.score
COMMENT 'proxy score of each model on (test reader, train reader); the workers compute what the cache lacks. '
        'With top_k, only the best top_k models (by ascending score, or descending) are returned, '
        'and the cost model may find them by successive halving';

CREATE FUNCTION shift.dataset_similarity(metric text, params jsonb, reader_ids text[], target_reader text,
    top_k integer DEFAULT NULL, descending boolean DEFAULT false)
RETURNS TABLE (reader_id text, score double precision) VOLATILE
PYTHON api.dataset_similarity
COMMENT 'distance of each reader (the target itself left out) to the target reader by a dataset similarity metric '
        'such as Task2Vec (lower is more similar); the workers compute the missing embeddings. With top_k, '
        'at least the top_k nearest are returned, found through the HNSW index in a large pool';

CREATE FUNCTION shift.task_distance(reader_a text, reader_b text, distance text DEFAULT 'symmetric',
    alpha double precision DEFAULT 0.15, settings_a jsonb DEFAULT NULL, settings_b jsonb DEFAULT NULL)
RETURNS double precision VOLATILE
PYTHON api.task_distance
COMMENT 'Task2Vec distance from reader_a to reader_b by their stored embeddings: symmetric, normalized_cosine or '
        'asymmetric (d_sym(a, b) - alpha d_sym(a, trivial)); settings pick among several embeddings of a reader';

CREATE FUNCTION shift.benchmark_scores(scorer text, params jsonb, model_ids text[], reader_ids text[])
RETURNS TABLE (model_id text, reader_id text, score double precision) VOLATILE
PYTHON api.benchmark_scores
COMMENT 'recorded fine-tuning results of models on readers, the history meta-learned strategies rank by '
        '(seed 000 §3.2 Q5)';

-------------------------------------------------------------------------------
-- SHiFT-QL: translate, run, explain, and drop its persisted views
-------------------------------------------------------------------------------

-- translate's Python function is STABLE; its wrapper has been VOLATILE since the first release.
CREATE FUNCTION shift.translate(query text) RETURNS text VOLATILE
PYTHON STABLE api.translate
COMMENT 'the plain PostgreSQL a SHiFT-QL query is rewritten into';

CREATE FUNCTION shift.query(query text)
RETURNS TABLE (rank integer, model_id text, score double precision, selected jsonb) VOLATILE
PYTHON api.query
COMMENT 'run a SHiFT-QL query and return its ranked models';

CREATE FUNCTION shift.explain(query text) RETURNS TABLE (section text, content text) VOLATILE
PYTHON api.explain
COMMENT 'a SHiFT-QL query''s tree of scoring views (section tree), its PostgreSQL translation (sql) '
        'and the plan PostgreSQL chose (plan); runs nothing';

CREATE FUNCTION shift.drop_view(name text, cascade boolean DEFAULT false) RETURNS void VOLATILE
PYTHON api.drop_view
COMMENT 'drop a scoring or dataset similarity view (name or schema.name); with cascade, the views that read it too';

-------------------------------------------------------------------------------
-- Fine-tuning: the ground truth of model search (seed 002 §4.3)
-------------------------------------------------------------------------------

CREATE FUNCTION shift.finetune(model_ids text[], train_reader text, validation_reader text, test_reader text,
    params jsonb DEFAULT '{}')
RETURNS TABLE (model_id text, test_accuracy double precision, validation_accuracy double precision,
               settings jsonb, seconds double precision) VOLATILE
PYTHON api.finetune
COMMENT 'fine-tune models on a train reader (new linear head, then the whole network at each learning rate of a grid), '
        'keep the best on the validation reader, and record its test accuracy in shift.finetune_results; waits for '
        'the workers, and reuses recorded results (seed 002 §4.3)';

-------------------------------------------------------------------------------
-- Jobs: how far one is (shift.submit, shift.job_result and shift.cancel_job are in privileges.sql)
-------------------------------------------------------------------------------

CREATE FUNCTION shift.job_status(id bigint)
RETURNS TABLE (job_id bigint, state text, progress real, tasks_done integer, tasks_total integer,
               elapsed interval, remaining interval, error text) VOLATILE
PYTHON api.job_status
COMMENT 'a job''s state (queued, running, done, failed, cancelled), the part of its tasks done, '
        'the time it ran and the time it still needs by the cost model or its rate so far, and its error';
