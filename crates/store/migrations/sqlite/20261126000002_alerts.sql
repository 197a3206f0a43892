-- Alerts. The record is kept whole as JSON; the columns beside it are what filters,
-- ordering and the dedup constraint need.
CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,
    fingerprint    TEXT NOT NULL,
    alert_type     TEXT NOT NULL,
    severity       TEXT NOT NULL,
    status         TEXT NOT NULL,
    source         TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    acknowledged   INTEGER NOT NULL,
    record         TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    resolved_at_us BIGINT
);
-- At most one open alert per fingerprint: dedup holds even if two writers race.
CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (fingerprint) WHERE status <> 'resolved';
CREATE INDEX alerts_newest_first ON alerts (created_at_us, id);

INSERT INTO event_sequences (stream, value) VALUES ('alerts', 0);
-- The highest alert event sequence removed by retention.
INSERT INTO event_sequences (stream, value) VALUES ('alerts_floor', 0);

CREATE TABLE alert_events (
    sequence      BIGINT PRIMARY KEY,
    alert_id      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);

-- The webhook outbox: rows are written in the transaction of the event they carry.
CREATE TABLE webhook_deliveries (
    id                 TEXT PRIMARY KEY,
    receiver           TEXT NOT NULL,
    sequence           BIGINT NOT NULL,
    body               TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at_us BIGINT NOT NULL,
    last_error         TEXT NOT NULL,
    finished_at_us     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_us);
