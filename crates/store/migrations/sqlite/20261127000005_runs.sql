-- Evaluation runs: the record as JSON, with the columns listings filter on.
CREATE TABLE eval_runs (
    id            TEXT PRIMARY KEY,
    dataset_id    TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    record        TEXT NOT NULL
);

-- One result per sample of a run, in the dataset's order (position).
CREATE TABLE eval_run_results (
    run_id    TEXT NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
    sample_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    passed    INTEGER NOT NULL,
    record    TEXT NOT NULL,
    PRIMARY KEY (run_id, sample_id)
);
CREATE INDEX eval_run_results_by_position ON eval_run_results (run_id, position);
