-- NDXP registry schema, version 3: monitoring and reconciliation
-- (docs/monitoring.md). Operational records, outside the registry proper:
-- writing them neither raises the registry version nor appends to the
-- audit trail. Depends only on version 1, so it applies whether or not
-- version 2 was applied before it.
-- Portable SQL: the same text runs on SQLite and PostgreSQL; times are
-- fixed-width RFC 3339 text, so they sort as they compare.

-- Every signed status report a node sent, kept as received.
CREATE TABLE monitoring_status (
    id           TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL,
    node         TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    status       TEXT NOT NULL,
    signed       TEXT NOT NULL
);
CREATE INDEX monitoring_status_node ON monitoring_status (member_id, node, received_at);

-- The latest report of each node, so the status listing reads one row per
-- node however long the history grows.
CREATE TABLE monitoring_latest (
    member_id  TEXT NOT NULL,
    node       TEXT NOT NULL,
    status_id  TEXT NOT NULL,
    PRIMARY KEY (member_id, node)
);

-- The jti of every signed upload still inside the acceptance window:
-- a second upload with the same (member, jti) is a replay.
CREATE TABLE monitoring_jti (
    member_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    seen_at    TEXT NOT NULL,
    PRIMARY KEY (member_id, jti)
);
CREATE INDEX monitoring_jti_seen ON monitoring_jti (seen_at);

-- Reconciliation summaries, one per (member, node, side, period); node is
-- '' for a member that submits its own summaries without a node.
CREATE TABLE recon_summaries (
    member_id     TEXT NOT NULL,
    node          TEXT NOT NULL,
    side          TEXT NOT NULL,
    period_start  TEXT NOT NULL,
    period_end    TEXT NOT NULL,
    summary       TEXT NOT NULL,
    signed        TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    PRIMARY KEY (member_id, node, side, period_start, period_end)
);
CREATE INDEX recon_summaries_period ON recon_summaries (period_start, period_end);

-- Drill-down requests: the ids of one bucket of one node's summary.
-- answer is the JSON array of transaction ids once the node answered.
CREATE TABLE recon_drilldowns (
    id            TEXT PRIMARY KEY,
    member_id     TEXT NOT NULL,
    node          TEXT NOT NULL,
    side          TEXT NOT NULL,
    period_start  TEXT NOT NULL,
    period_end    TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    answered_at   TEXT,
    answer        TEXT,
    signed        TEXT,
    UNIQUE (member_id, node, side, period_start, period_end, bucket)
);
CREATE INDEX recon_drilldowns_node ON recon_drilldowns (member_id, node, answered_at);
CREATE INDEX recon_drilldowns_period ON recon_drilldowns (period_start, period_end);
