-- Experiments: the definition as JSON (the domain owns its shape), with the columns
-- listing and loading need.
CREATE TABLE experiments (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    record        TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);

-- A user's first assignment. The key makes a repeated exposure a no-op.
CREATE TABLE experiment_exposures (
    experiment_id  TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    variant_id     TEXT NOT NULL,
    exposed_at_us  INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, user_id)
);

-- Raw metric records, kept for re-analysis; the in-memory statistics are rebuilt from
-- them at start-up, in id order.
CREATE TABLE experiment_metric_records (
    id             INTEGER PRIMARY KEY,
    experiment_id  TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant_id     TEXT NOT NULL,
    metric         TEXT NOT NULL,
    value          REAL NOT NULL,
    user_id        TEXT NOT NULL,
    record_id      TEXT,
    recorded_at_us INTEGER NOT NULL
);
CREATE INDEX experiment_metric_records_by_experiment ON experiment_metric_records (experiment_id, id);
-- A retried record with the same id is not stored twice. Records without an id have a
-- NULL record_id, and NULLs never conflict in a unique index (SQLite and PostgreSQL).
CREATE UNIQUE INDEX experiment_metric_records_idempotency
    ON experiment_metric_records (experiment_id, record_id);
