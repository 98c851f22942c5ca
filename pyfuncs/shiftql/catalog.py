"""The relations a SHiFT-QL query may name, and their columns.

Seed 000 §3.1 "Unified Logical Views for Model Repositories and Datasets": a
query reads the 'Models' view and the 'DataReaders' view, the scoring and
dataset similarity views persisted before, and the user's own tables. Here they are the
tables shift.models and shift.readers of the install script; this module lists
their columns (a unit test keeps the lists equal to the CREATE TABLE
statements) and resolves the names a user writes, which follow the paper's
spelling (ModelId, UpstreamAccuracy) rather than the tables' (model_id,
upstream_accuracy).
"""

import json
import re
from dataclasses import dataclass

from ..errors import unknown

NUMERIC_TYPES = frozenset({"smallint", "integer", "bigint", "real", "double precision", "numeric"})


@dataclass(frozen=True)
class Relation:
    """One view of seed 000 §3.1: its SHiFT-QL name, its table, its columns in table order."""

    name: str                   # as the paper writes it
    schema: str
    table: str
    columns: tuple              # (column, PostgreSQL type) pairs, in CREATE TABLE order
    synonyms: tuple = ()        # (normalised spelling, column) pairs beyond the obvious ones
    key: str | None = None      # the column naming one row (model_id, reader_id)

    def column_names(self):
        return [c for c, _ in self.columns]

    def column_type(self, column):
        return dict(self.columns).get(column)

    def find_column(self, written):
        """The column a user's spelling means (case and underscores ignored), or None."""
        want = normalise(written)
        for column, _ in self.columns:
            if normalise(column) == want:
                return column
        return dict(self.synonyms).get(want)


def _columns(listing):
    """(name, type) pairs of a listing `name type, name type, ...` (a type may have spaces)."""
    return tuple(tuple(item.strip().split(" ", 1)) for item in listing.split(","))


def normalise(name):
    """The spelling-free form of a name: ModelId, model_id and MODELID are one name."""
    return str(name).lower().replace("_", "")


# seed 000 §3.1 calls the input kind "Modality"
MODELS = Relation("Models", "shift", "models", _columns("""
    model_id text, source text, locator text, checkpoint text, input text, framework text,
    architecture text, num_params bigint, feature_dim integer, input_size integer,
    upstream_dataset text, upstream_accuracy double precision, options jsonb,
    num_classes integer, input_mean double precision[], input_std double precision[],
    loaded_at timestamptz, load_error text, owner name, registered_at timestamptz"""),
    synonyms=(("modality", "input"),), key="model_id")

# seed 000 §3.2 Q5 writes DataReaderId; §3.1 writes Modality
READERS = Relation("DataReaders", "shift", "readers", _columns("""
    reader_id text, kind text, source text, options jsonb, input text, num_samples bigint,
    classes text[], block_size integer, owner name, read_function regprocedure,
    registered_at timestamptz"""),
    synonyms=(("datareaderid", "reader_id"), ("modality", "input")), key="reader_id")

RELATIONS = (MODELS, READERS)

# every spelling a query may use for a relation, normalised; Q5 of §3.2 writes "Readers"
_BY_NAME = {
    "models": MODELS,
    "datareaders": READERS,
    "readers": READERS,
}


def spellings(relation):
    """Every normalised name a query may use for the relation."""
    return {k for k, r in _BY_NAME.items() if r is relation}


def find_relation(written):
    """The relation a user's table name means, or None."""
    return _BY_NAME.get(normalise(written))


# --------------------------------------------------------------------------
# What else a query may name: persisted views, the user's tables, reader and model ids
# --------------------------------------------------------------------------

_VIEW_COMMENT = re.compile(r"\Ashift (scoring|dataset similarity) view, score (ASC|DESC)\n(.*)\Z", re.S)


@dataclass(frozen=True)
class ViewInfo:
    """A persisted SHiFT-QL view (seed 000 §3.1): a PostgreSQL view the catalog recognises by its comment."""

    schema: str
    name: str
    kind: str                   # 'scoring' (rows are models) or 'dataset similarity' (rows are readers)
    columns: tuple              # (column, PostgreSQL type) pairs
    descending: bool = False    # how its score ranks: DESC means higher is better
    definition: str = ""        # the SHiFT-QL statement that created it

    @property
    def key(self):
        return "model_id" if self.kind == "scoring" else "reader_id"

    @property
    def qualified(self):
        return "%s.%s" % (self.schema, self.name)


def view_comment(kind, descending, definition):
    """The comment that marks a PostgreSQL view as a SHiFT-QL view; shift.views parses the same format."""
    return "shift %s view, score %s\n%s" % (kind, "DESC" if descending else "ASC", definition)


def parse_view_comment(comment):
    """(kind, descending, definition) of a SHiFT-QL view's comment, or None for any other comment."""
    match = _VIEW_COMMENT.match(comment or "")
    return (match.group(1), match.group(2) == "DESC", match.group(3)) if match else None


def base_type(pg_type):
    """`numeric(10,2)` → `numeric`: the type without its modifiers."""
    return re.sub(r"\(.*\)", "", pg_type or "").strip() or None


class Catalog:
    """What a translation may look up beyond Models and DataReaders; this one knows nothing more.

    With it, names of views and user tables are taken as written (views are
    unknown, user tables are passed through), and reader and model ids are not
    checked: enough to translate without a database. DatabaseCatalog knows them.
    """

    # where `CREATE SCORING VIEW name` puts a view whose name has no schema; see shift.views
    default_schema = "public"

    def views(self):
        return []

    def view(self, schema, name):
        return next((v for v in self.views() if v.schema == schema and v.name == name), None)

    def table_columns(self, schema, name):
        """(column, type) pairs of a user's table; None when unknown here, () when it does not exist."""
        return None

    def table_names(self, schema):
        return []

    def reader_ids(self):
        """Every registered reader id, or None when not known here."""
        return None

    def unknown_reader(self, name, known):
        """The error for a reader id not among `known`."""
        return unknown("reader", name, known)

    def missing_model_ids(self, ids):
        """Those of `ids` that are not registered models (none when not known here)."""
        return []

    def model_ids(self):
        return []

    def check_interrupts(self):
        """A point where a pending cancel may stop the translation; there is none outside a database."""


class StaticCatalog(Catalog):
    """A catalog given as values (tests, and translating without a database)."""

    def __init__(self, views=(), tables=None, readers=None, models=None, default_schema="public"):
        self._views = list(views)
        self._tables = dict(tables or {})
        self._readers = readers
        self._models = models
        self.default_schema = default_schema

    def views(self):
        return list(self._views)

    def table_columns(self, schema, name):
        if not self._tables:
            return None
        return tuple(self._tables.get("%s.%s" % (schema, name), ()))

    def table_names(self, schema):
        return [k.split(".", 1)[1] for k in self._tables if k.split(".", 1)[0] == schema]

    def reader_ids(self):
        return None if self._readers is None else list(self._readers)

    def missing_model_ids(self, ids):
        return [] if self._models is None else [i for i in ids if i not in self._models]

    def model_ids(self):
        return list(self._models or [])


class DatabaseCatalog(Catalog):
    """The catalog of the database a query runs in, read through `db` (pyfuncs.db.Plpy or alike)."""

    def __init__(self, db):
        self.db = db
        self._views = None
        self._readers = None
        setting = db.one("SELECT current_setting('shift.views_schema', true) AS s")
        self.default_schema = (setting and setting["s"]) or "public"

    def views(self):
        if self._views is None:
            self._views = [
                ViewInfo(r["schema_name"], r["view_name"], r["kind"],
                         tuple((c, base_type(t)) for c, t in json.loads(r["columns"])),
                         r["score_order"] == "DESC", r["definition"])
                for r in self.db.execute(
                    "SELECT schema_name, view_name, kind, score_order, definition, columns::text AS columns "
                    "FROM shift.views")]
        return self._views

    def table_columns(self, schema, name):
        rows = self.db.execute(
            "SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum",
            ["text", "text"], [schema, name])
        return tuple((r["name"], base_type(r["type"])) for r in rows if r["name"] is not None)

    def table_names(self, schema):
        return [r["relname"] for r in self.db.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')", ["text"], [schema])]

    def reader_ids(self):
        if self._readers is None:
            self._readers = [r["reader_id"] for r in self.db.execute("SELECT reader_id FROM shift.readers")]
        return self._readers

    def unknown_reader(self, name, known):
        """42501 for a reader that exists but is another role's private one (see arguments.missing)."""
        from ..arguments import missing

        return missing(self.db, "reader", name)

    def missing_model_ids(self, ids):
        known = {r["model_id"] for r in self.db.execute(
            "SELECT model_id FROM shift.models WHERE model_id = ANY($1)", ["text[]"], [list(ids)])}
        return [i for i in ids if i not in known]

    def model_ids(self):
        return [r["model_id"] for r in self.db.execute("SELECT model_id FROM shift.models")]

    def check_interrupts(self):
        # Python in a backend is not interrupted; running a statement lets PostgreSQL act on a cancel
        self.db.execute("SELECT 1")
