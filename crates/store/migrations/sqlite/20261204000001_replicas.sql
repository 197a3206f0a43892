-- Several llmops processes on one database: who is running, who holds each background
-- role, and which definitions changed (for the other processes' caches).

-- One row per process start; a process that stops heartbeating for `leader_lease` is
-- dead, and its leases are free.
CREATE TABLE replicas (
    id              TEXT PRIMARY KEY,
    address         TEXT NOT NULL,
    version         TEXT NOT NULL,
    started_at_us   BIGINT NOT NULL,
    heartbeat_at_us BIGINT NOT NULL,
    stopped         INTEGER NOT NULL
);

-- A background role (the scheduler, the webhook sender, ...) runs on the replica that
-- holds its lease, until the lease expires unrenewed. Times are the database's clock.
CREATE TABLE leases (
    role           TEXT PRIMARY KEY,
    holder         TEXT NOT NULL,
    acquired_at_us BIGINT NOT NULL,
    expires_at_us  BIGINT NOT NULL
);

-- Changes of cached definitions, in commit order (the sequencer's 'changes' stream):
-- each process reloads what another one changed.
CREATE TABLE changes (
    sequence      BIGINT PRIMARY KEY,
    entity        TEXT NOT NULL,
    entity_key    TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
INSERT INTO event_sequences (stream, value) VALUES ('changes', 0);

-- Experiment write batches in commit order (the 'experiment_writes' stream): every
-- exposure and record carries its batch's sequence, so other processes fold exactly
-- the batches they have not seen. Rows written before this migration, or on SQLite
-- (one process), carry 0.
ALTER TABLE experiment_exposures ADD COLUMN batch_sequence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE experiment_metric_records ADD COLUMN batch_sequence BIGINT NOT NULL DEFAULT 0;
CREATE INDEX experiment_exposures_by_batch ON experiment_exposures (batch_sequence);
CREATE INDEX experiment_metric_records_by_batch ON experiment_metric_records (batch_sequence);
INSERT INTO event_sequences (stream, value) VALUES ('experiment_writes', 0);
