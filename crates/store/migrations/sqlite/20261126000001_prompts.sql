-- The prompt registry. Each version's record is kept whole as JSON (it is immutable);
-- the columns beside it are what queries and constraints need.
CREATE TABLE prompt_versions (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    -- The version without build metadata: versions equal in precedence are duplicates.
    version_key   TEXT NOT NULL,
    record        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    UNIQUE (name, version_key)
);

-- One row per prompt; the single active pointer makes "exactly one active version" a
-- property of the schema rather than of every writer.
CREATE TABLE prompts (
    name              TEXT PRIMARY KEY,
    active_version_id TEXT NOT NULL REFERENCES prompt_versions (id),
    updated_at_us     BIGINT NOT NULL
);

CREATE TABLE prompt_labels (
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    version_id    TEXT NOT NULL REFERENCES prompt_versions (id),
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (name, label)
);
CREATE INDEX prompt_labels_by_version ON prompt_labels (version_id);

-- Event sequences are assigned by incrementing a row inside the committing transaction:
-- the row lock orders commits, so sequence order is commit order (a bare database
-- sequence would hand out numbers that can commit out of order).
CREATE TABLE event_sequences (
    stream TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO event_sequences (stream, value) VALUES ('prompts', 0);

CREATE TABLE prompt_events (
    sequence      BIGINT PRIMARY KEY,
    prompt_name   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX prompt_events_by_prompt ON prompt_events (prompt_name, sequence);
