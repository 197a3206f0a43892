-- Generations (issue 18): what applications asked models and what they answered. The
-- record holds the whole generation; the columns are what listings filter and order by.
CREATE TABLE generations (
    id             TEXT NOT NULL PRIMARY KEY,
    -- The insert transaction's place in commit order (the 'generations' sequence).
    seq            BIGINT NOT NULL,
    time_us        BIGINT NOT NULL,
    prompt_name    TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model          TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    variant_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    status         TEXT NOT NULL,
    latency_ms     DOUBLE PRECISION NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cost           DOUBLE PRECISION NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX generations_by_time ON generations (time_us, id);
CREATE INDEX generations_by_prompt ON generations (prompt_name, prompt_version, time_us);
CREATE INDEX generations_by_experiment ON generations (experiment_id, variant_id, time_us);
CREATE INDEX generations_by_seq ON generations (seq);
INSERT INTO event_sequences (stream, value) VALUES ('generations', 0);

-- Usage per hour and attribution, folded forward from the generations (usage.rs in the
-- store): each generation is counted once without its user and once with it.
CREATE TABLE usage_hourly (
    bucket_us      BIGINT NOT NULL,
    per_user       INTEGER NOT NULL,
    -- The attribution as one JSON array: the key the fold looks aggregates up by.
    group_key      TEXT NOT NULL,
    prompt_name    TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model          TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    variant_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    count          BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cost           DOUBLE PRECISION NOT NULL,
    -- The latencies as an HdrHistogram (V2 encoding, base64).
    latency        TEXT NOT NULL,
    PRIMARY KEY (bucket_us, per_user, group_key)
);
CREATE INDEX usage_hourly_by_time ON usage_hourly (per_user, bucket_us);

-- How far the fold has got: the last 'generations' sequence value folded in. Its one
-- row is made by the first fold (an empty table is an empty deployment to `migrate`).
CREATE TABLE usage_rollup (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    through_seq BIGINT NOT NULL
);
