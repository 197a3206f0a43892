-- Datasets: the definition as JSON, with the unique name enforced here too.
CREATE TABLE datasets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    record        TEXT NOT NULL,
    created_at_us INTEGER NOT NULL
);

-- Versioned samples: a row belongs to the versions from added_version up to (not
-- including) removed_version, so any past version can still be read.
CREATE TABLE dataset_samples (
    position        INTEGER PRIMARY KEY,
    dataset_id      TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    sample_id       TEXT NOT NULL,
    added_version   INTEGER NOT NULL,
    removed_version INTEGER,
    record          TEXT NOT NULL
);
CREATE INDEX dataset_samples_by_dataset ON dataset_samples (dataset_id, position);
-- A sample id is unique among a dataset's current samples.
CREATE UNIQUE INDEX dataset_samples_current
    ON dataset_samples (dataset_id, sample_id) WHERE removed_version IS NULL;
