-- NDXP registry schema, version 1.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
-- Times are RFC 3339 text in UTC with nanoseconds (fixed width, so text order is time order).

CREATE TABLE registry_state (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    version    BIGINT NOT NULL,
    audit_seq  BIGINT NOT NULL
);
INSERT INTO registry_state (id, version, audit_seq) VALUES (1, 0, 0);

CREATE TABLE members (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE subsystems (
    id          TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL
);
CREATE INDEX subsystems_member ON subsystems (member_id);

CREATE TABLE nodes (
    member_id         TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    address           TEXT NOT NULL,
    auth_cert_pem     TEXT NOT NULL,
    auth_cert_sha256  TEXT NOT NULL UNIQUE,
    created_at        TEXT NOT NULL,
    PRIMARY KEY (member_id, name)
);

CREATE TABLE services (
    id             TEXT PRIMARY KEY,
    subsystem_id   TEXT NOT NULL REFERENCES subsystems (id) ON DELETE CASCADE,
    description    TEXT NOT NULL,
    openapi        TEXT,
    deprecated_at  TEXT,
    sunset_at      TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX services_subsystem ON services (subsystem_id);

CREATE TABLE subsystem_groups (
    code         TEXT PRIMARY KEY,
    description  TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE group_members (
    group_code    TEXT NOT NULL REFERENCES subsystem_groups (code) ON DELETE CASCADE,
    subsystem_id  TEXT NOT NULL REFERENCES subsystems (id) ON DELETE CASCADE,
    PRIMARY KEY (group_code, subsystem_id)
);
CREATE INDEX group_members_subsystem ON group_members (subsystem_id);

-- Exactly one of grantee_subsystem / grantee_group is set; grantee is the
-- unique key text ("subsystem:ID" or "group:CODE").
CREATE TABLE access_rights (
    service_id         TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    grantee            TEXT NOT NULL,
    grantee_subsystem  TEXT REFERENCES subsystems (id) ON DELETE CASCADE,
    grantee_group      TEXT REFERENCES subsystem_groups (code) ON DELETE CASCADE,
    granted_at         TEXT NOT NULL,
    PRIMARY KEY (service_id, grantee),
    CHECK ((grantee_subsystem IS NULL) <> (grantee_group IS NULL))
);
CREATE INDEX access_rights_subsystem ON access_rights (grantee_subsystem);
CREATE INDEX access_rights_group ON access_rights (grantee_group);

CREATE TABLE subscriptions (
    id          TEXT PRIMARY KEY,
    service_id  TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES subsystems (id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'rejected', 'cancelled')),
    created_at  TEXT NOT NULL
);
-- At most one live (requested or approved) subscription per client and service.
CREATE UNIQUE INDEX subscriptions_live ON subscriptions (service_id, client_id)
    WHERE state IN ('requested', 'approved');
CREATE INDEX subscriptions_client ON subscriptions (client_id);

CREATE TABLE subscription_events (
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    state            TEXT NOT NULL,
    at               TEXT NOT NULL,
    actor            TEXT NOT NULL,
    note             TEXT,
    PRIMARY KEY (subscription_id, seq)
);

CREATE TABLE registration_requests (
    id                TEXT PRIMARY KEY,
    member_id         TEXT NOT NULL,
    node_name         TEXT NOT NULL,
    address           TEXT NOT NULL,
    auth_cert_pem     TEXT NOT NULL,
    auth_cert_sha256  TEXT NOT NULL,
    signed_request    TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    submitted_at      TEXT NOT NULL,
    decided_at        TEXT,
    decided_by        TEXT,
    reason            TEXT
);
-- At most one pending request per member and node name.
CREATE UNIQUE INDEX registration_pending ON registration_requests (member_id, node_name)
    WHERE state = 'pending';

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('operator', 'member')),
    member_id     TEXT,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT,
    CHECK ((kind = 'member') = (member_id IS NOT NULL))
);

CREATE TABLE audit_log (
    id      BIGINT PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);

CREATE TABLE global_confs (
    version           BIGINT PRIMARY KEY,
    registry_version  BIGINT NOT NULL,
    document          TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL
);
