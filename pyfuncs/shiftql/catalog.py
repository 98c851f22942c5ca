"""The relations a SHiFT-QL query may name, and their columns.

Seed 000 §3.1 "Unified Logical Views for Model Repositories and Datasets": a
query reads the 'Models' view and the 'DataReaders' view. Here they are the
tables shift.models and shift.readers of the install script; this module lists
their columns (a unit test keeps the lists equal to the CREATE TABLE
statements) and resolves the names a user writes, which follow the paper's
spelling (ModelId, UpstreamAccuracy) rather than the tables' (model_id,
upstream_accuracy).
"""

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


def normalise(name):
    """The spelling-free form of a name: ModelId, model_id and MODELID are one name."""
    return str(name).lower().replace("_", "")


MODELS = Relation(
    name="Models",
    schema="shift",
    table="models",
    columns=(
        ("model_id", "text"),
        ("source", "text"),
        ("locator", "text"),
        ("checkpoint", "text"),
        ("input", "text"),
        ("framework", "text"),
        ("architecture", "text"),
        ("num_params", "bigint"),
        ("feature_dim", "integer"),
        ("input_size", "integer"),
        ("upstream_dataset", "text"),
        ("upstream_accuracy", "double precision"),
        ("options", "jsonb"),
        ("tans_embedding", "vector"),
        ("fennec_embedding", "vector"),
        ("registered_at", "timestamptz"),
    ),
    # seed 000 §3.1 calls the input kind "Modality"
    synonyms=(("modality", "input"),),
    key="model_id",
)

READERS = Relation(
    name="DataReaders",
    schema="shift",
    table="readers",
    columns=(
        ("reader_id", "text"),
        ("kind", "text"),
        ("source", "text"),
        ("options", "jsonb"),
        ("input", "text"),
        ("num_samples", "bigint"),
        ("classes", "text[]"),
        ("block_size", "integer"),
        ("task2vec", "vector"),
        ("owner", "name"),
        ("registered_at", "timestamptz"),
    ),
    # seed 000 §3.2 Q5 writes DataReaderId; §3.1 writes Modality
    synonyms=(("datareaderid", "reader_id"), ("modality", "input")),
    key="reader_id",
)

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


def relation(written):
    """The relation a user's table name means; 42704 naming the closest ones otherwise."""
    found = find_relation(written)
    if found is None:
        raise unknown("table", str(written), [r.name for r in RELATIONS])
    return found
