-- suppressd on PostgreSQL: the first schema. Times are microseconds since the Unix epoch
-- (BIGINT); records, events, history entries and changes keep their full detail as suppressd's
-- tag-based protobuf records (a version byte, then the message: BYTEA), beside the columns
-- that rows are found, ordered and counted by. Every table's key starts with the tenant (the
-- distribution column on Citus). Statement forms: docs/postgres.md.

-- The store's secrets and settings: the page-token secret and the address-hash key.
CREATE TABLE suppressd_meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- One row per address: its state. A row whose record is NULL holds no record (a write took
-- its lock and decided nothing).
CREATE TABLE addresses (
    tenant TEXT NOT NULL,
    address_hash BYTEA NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    record BYTEA,
    suppressed_since BIGINT,
    suppression_reason SMALLINT,
    suppression_source TEXT,
    suppression_expires BIGINT,
    list_unsubscribed BOOLEAN NOT NULL DEFAULT FALSE,
    needs_enrichment BOOLEAN NOT NULL DEFAULT FALSE,
    forgotten BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, address_hash)
);
-- Suppressions by time (ListSuppressions, newest first).
CREATE INDEX addresses_suppressed_since ON addresses (tenant, suppressed_since);

-- What ends by itself (a suppression's or a list unsubscribe's expiry), for the sweep.
CREATE TABLE expiries (
    tenant TEXT NOT NULL,
    address_hash BYTEA NOT NULL,
    ends_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, address_hash, ends_at)
);
CREATE INDEX expiries_due ON expiries (ends_at);

CREATE SEQUENCE history_seq;

-- Send results. The key (tenant, event id) is the idempotency guard; `seq` is the number of
-- the history entry that holds it (ties of the bounce listings: the later written first).
CREATE TABLE events (
    tenant TEXT NOT NULL,
    event_id TEXT NOT NULL,
    address_hash BYTEA NOT NULL,
    occurred_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    source TEXT NOT NULL,
    campaign TEXT NOT NULL,
    bounce_type SMALLINT NOT NULL,
    is_bounce BOOLEAN NOT NULL,
    event BYTEA NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
-- The bounce listings: by source and time, and by time.
CREATE INDEX events_by_source_time ON events (tenant, source, occurred_at, seq);
CREATE INDEX events_by_time ON events (tenant, occurred_at, seq);

-- An address's history: a send result (by event id) with the changes of state it caused at
-- its instant, or changes of state alone (`entry`: the changes).
CREATE TABLE history (
    tenant TEXT NOT NULL,
    address_hash BYTEA NOT NULL,
    at BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('history_seq'),
    event_id TEXT,
    entry BYTEA NOT NULL,
    PRIMARY KEY (tenant, address_hash, at, seq)
);

-- Counters of send results by dimension value and bucket (granularity 0: hour, 1: day),
-- kept by upserts that add.
CREATE TABLE counters (
    tenant TEXT NOT NULL,
    dimension SMALLINT NOT NULL,
    value TEXT NOT NULL,
    granularity SMALLINT NOT NULL,
    bucket BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    delivered BIGINT NOT NULL,
    hard BIGINT NOT NULL,
    soft BIGINT NOT NULL,
    block BIGINT NOT NULL,
    complaint BIGINT NOT NULL,
    unsubscribe BIGINT NOT NULL,
    to_accept_all BIGINT NOT NULL,
    PRIMARY KEY (tenant, dimension, value, granularity, bucket)
);

-- Every dimension value with counters.
CREATE TABLE dimension_values (
    tenant TEXT NOT NULL,
    dimension SMALLINT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, dimension, value)
);

-- The change log of the suppression lists that replicas tail: numbered by one counter
-- (`change_counter`), taken under its row lock by each committing writer, so that sequence
-- numbers are in commit order.
CREATE TABLE change_counter (
    id SMALLINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO change_counter (id, last_seq) VALUES (1, 0);

CREATE TABLE changes (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    address_hash BYTEA,
    change BYTEA NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX changes_by_time ON changes (at);

-- Change log retention: the last sequence number removed, per tenant.
CREATE TABLE change_horizons (
    tenant TEXT PRIMARY KEY,
    horizon BIGINT NOT NULL
);

-- Domains: their marks (suppression, accept-all) and activity, and their history.
CREATE TABLE domains (
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    marks BYTEA,
    activity BYTEA,
    suppressed_since BIGINT,
    PRIMARY KEY (tenant, domain)
);
CREATE TABLE domain_history (
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    at BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('history_seq'),
    change BYTEA NOT NULL,
    PRIMARY KEY (tenant, domain, at, seq)
);

-- Delivered addresses by domain (typo suggestions).
CREATE TABLE delivered_addresses (
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    address_hash BYTEA NOT NULL,
    local_part TEXT NOT NULL,
    PRIMARY KEY (tenant, domain, address_hash)
);
