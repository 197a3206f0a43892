-- Online evaluations (issue 19): production generations sampled and scored as they
-- arrive. The record holds the whole definition.
CREATE TABLE online_evaluations (
    id            TEXT NOT NULL PRIMARY KEY,
    created_at_us BIGINT NOT NULL,
    record        TEXT NOT NULL
);

-- Samples waiting for scoring, queued by the transaction that stores their generation.
-- A scorer claims a sample until claimed_until_us (renewing while it works); a lapsed
-- claim may be taken by another.
CREATE TABLE online_queue (
    evaluation_id    TEXT NOT NULL,
    generation_id    TEXT NOT NULL,
    enqueued_us      BIGINT NOT NULL,
    claimed_by       TEXT NOT NULL DEFAULT '',
    claimed_until_us BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (evaluation_id, generation_id)
);
CREATE INDEX online_queue_by_age ON online_queue (enqueued_us);
CREATE INDEX online_queue_by_worker ON online_queue (claimed_by);

-- How many samples wait: updated with every enqueue and completion (its row lock
-- serialises them), so the queue's bound is checked without counting it.
CREATE TABLE online_queue_depth (
    id    BIGINT NOT NULL PRIMARY KEY,
    depth BIGINT NOT NULL
);
INSERT INTO online_queue_depth (id, depth) VALUES (1, 0);

-- One verdict per evaluation and generation: the primary key makes scoring count once.
CREATE TABLE online_scores (
    evaluation_id TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    scored_at_us  BIGINT NOT NULL,
    record        TEXT NOT NULL,
    PRIMARY KEY (evaluation_id, generation_id)
);
CREATE INDEX online_scores_by_generation ON online_scores (generation_id);

-- Totals per evaluation, minute of the generations' time and attribution, added to by
-- the transactions that store verdicts.
CREATE TABLE online_aggregates (
    evaluation_id  TEXT NOT NULL,
    minute_us      BIGINT NOT NULL,
    group_key      TEXT NOT NULL,
    prompt_name    TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    model          TEXT NOT NULL,
    experiment_id  TEXT NOT NULL,
    variant_id     TEXT NOT NULL,
    record         TEXT NOT NULL,
    PRIMARY KEY (evaluation_id, minute_us, group_key)
);
