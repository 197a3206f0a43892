-- Continuous evaluation: schedules (a run template plus triggers) and release gates.
-- Each record is kept whole as JSON; the columns beside it are what queries need.
CREATE TABLE eval_schedules (
    id            TEXT PRIMARY KEY,
    created_at_us INTEGER NOT NULL,
    record        TEXT NOT NULL
);

-- One gate per prompt and label ("active" for the active pointer).
CREATE TABLE release_gates (
    prompt_name TEXT NOT NULL,
    label       TEXT NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (prompt_name, label)
);
