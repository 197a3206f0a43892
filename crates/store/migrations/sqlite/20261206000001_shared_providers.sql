-- Providers shared by replicas: caps counted for the whole deployment, and health
-- probed by one replica for all.

-- A provider's call slots, numbered from 0; a call holds one while it is in flight.
-- A holder is a replica; its slots are renewed while it lives, freed when it stops
-- cleanly, and free again when the lease lapses (it died). Rows are never deleted, so
-- the numbers stay contiguous and a cap raised later adds the next number.
CREATE TABLE provider_call_slots (
    provider      TEXT NOT NULL,
    slot          BIGINT NOT NULL,
    holder        TEXT,
    expires_at_us BIGINT NOT NULL,
    PRIMARY KEY (provider, slot)
);

-- When the next call to a provider may start under its requests-per-minute cap: each
-- call takes the start after the previous one's, spaced evenly, on the database clock.
CREATE TABLE provider_call_pacing (
    provider      TEXT NOT NULL PRIMARY KEY,
    next_start_us BIGINT NOT NULL
);

-- Each provider's health as the replica holding the prober role last probed it; the
-- other replicas take it from here instead of probing themselves.
CREATE TABLE provider_probes (
    provider             TEXT NOT NULL PRIMARY KEY,
    healthy              BOOLEAN NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    last_error           TEXT NOT NULL,
    probed_at_us         BIGINT NOT NULL
);
