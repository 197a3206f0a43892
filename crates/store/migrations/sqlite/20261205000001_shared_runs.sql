-- Evaluation work shared between replicas (each process is a worker).

-- A run's dataset snapshot is divided into chunks of positions (after, through] as
-- workers claim them; a claim is a lease on the database's clock, renewed while the
-- worker evaluates, and taken over by another worker when it lapses (the worker died).
-- A run's chunks go when it ends.
CREATE TABLE eval_run_chunks (
    run_id         TEXT NOT NULL,
    after_position BIGINT NOT NULL,
    last_position  BIGINT NOT NULL,
    worker         TEXT NOT NULL,
    expires_at_us  BIGINT NOT NULL,
    finished       BOOLEAN NOT NULL,
    PRIMARY KEY (run_id, after_position)
);

-- A run's stored results counted by outcome, in the transaction that stores them, so
-- every process reads the progress of every worker.
ALTER TABLE eval_runs ADD COLUMN done_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE eval_runs ADD COLUMN passed_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE eval_runs ADD COLUMN errored_count BIGINT NOT NULL DEFAULT 0;
UPDATE eval_runs SET
    done_count = (SELECT count(*) FROM eval_run_results r WHERE r.run_id = eval_runs.id),
    passed_count = (SELECT count(*) FROM eval_run_results r WHERE r.run_id = eval_runs.id AND r.passed),
    errored_count = (SELECT count(*) FROM eval_run_results r
                     WHERE r.run_id = eval_runs.id AND COALESCE(json_extract(r.record, '$.error'), '') <> '')
WHERE status = 'running';
