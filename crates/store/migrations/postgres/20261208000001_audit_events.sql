-- The audit log (issue 17): every changing call by a known caller, with its outcome.
-- Ids are UUIDv7, so their order is the order the entries were made; pages walk it.
CREATE TABLE audit_events (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    time_us    BIGINT NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    api_key_id TEXT NOT NULL,
    method     TEXT COLLATE "C" NOT NULL,
    resource   TEXT COLLATE "C" NOT NULL,
    code       TEXT NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (time_us);
CREATE INDEX audit_events_by_actor ON audit_events (actor, id);
