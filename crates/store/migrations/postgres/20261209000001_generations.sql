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
