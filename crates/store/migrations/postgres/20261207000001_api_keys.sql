-- API keys (issue 17). The record holds the key as listed (role, times, description);
-- the secret is stored only as its SHA-256 (hex), unique, which a call looks keys up by.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_hash   TEXT COLLATE "C" NOT NULL UNIQUE,
    record        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
