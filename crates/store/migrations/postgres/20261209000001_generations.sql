-- Generations (issue 18): what applications asked models and what they answered. The
-- record holds the whole generation; the columns are what listings filter and order by.
CREATE TABLE generations (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    time_us        BIGINT NOT NULL,
    prompt_name    TEXT COLLATE "C" NOT NULL,
    prompt_version TEXT COLLATE "C" NOT NULL,
    model          TEXT COLLATE "C" NOT NULL,
    experiment_id  TEXT COLLATE "C" NOT NULL,
    variant_id     TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL,
    status         TEXT NOT NULL,
    record         TEXT NOT NULL
);
CREATE INDEX generations_by_time ON generations (time_us, id);
CREATE INDEX generations_by_prompt ON generations (prompt_name, prompt_version, time_us);
CREATE INDEX generations_by_experiment ON generations (experiment_id, variant_id, time_us);
-- Updated first by every insert transaction of generations: the lock under which they
-- add to usage_hourly one at a time (usage.rs in the store).
INSERT INTO event_sequences (stream, value) VALUES ('generations', 0);

-- Usage per hour and attribution, added to by the transactions that store generations
-- (usage.rs in the store): each generation is counted once without its user and once
-- with it.
CREATE TABLE usage_hourly (
    bucket_us      BIGINT NOT NULL,
    per_user       BOOLEAN NOT NULL,
    -- The attribution as one JSON array: the key the fold looks aggregates up by.
    group_key      TEXT COLLATE "C" NOT NULL,
    prompt_name    TEXT COLLATE "C" NOT NULL,
    prompt_version TEXT COLLATE "C" NOT NULL,
    model          TEXT COLLATE "C" NOT NULL,
    experiment_id  TEXT COLLATE "C" NOT NULL,
    variant_id     TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL,
    count          BIGINT NOT NULL,
    errors         BIGINT NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cost           DOUBLE PRECISION NOT NULL,
    -- The latencies: `bin:count` pairs of 2%-wide logarithmic bins (usage.rs).
    latency        TEXT NOT NULL,
    PRIMARY KEY (bucket_us, per_user, group_key)
);
CREATE INDEX usage_hourly_by_time ON usage_hourly (per_user, bucket_us);
