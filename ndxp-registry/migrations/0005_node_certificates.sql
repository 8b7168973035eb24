-- NDXP registry schema, version 5: several authentication (TLS)
-- certificates per node, so a node's certificate can be rotated without
-- removing the node (docs/operator-guide.md, "Rotate certificates").
-- Portable SQL: the same text runs on SQLite and PostgreSQL; times are
-- fixed-width RFC 3339 text in UTC.

-- Every authentication certificate of a node; the global configuration
-- lists all of them. A certificate belongs to at most one node.
-- nodes.auth_cert_pem / nodes.auth_cert_sha256 stay and hold the newest
-- row of this table for the node (kept in step by the store).
CREATE TABLE node_certificates (
    member_id         TEXT NOT NULL,
    node_name         TEXT NOT NULL,
    auth_cert_pem     TEXT NOT NULL,
    auth_cert_sha256  TEXT NOT NULL UNIQUE,
    added_at          TEXT NOT NULL,
    PRIMARY KEY (member_id, node_name, auth_cert_sha256),
    FOREIGN KEY (member_id, node_name) REFERENCES nodes (member_id, name) ON DELETE CASCADE
);

INSERT INTO node_certificates (member_id, node_name, auth_cert_pem, auth_cert_sha256, added_at)
    SELECT member_id, name, auth_cert_pem, auth_cert_sha256, created_at FROM nodes;

-- What a registration request asks for: a new node ('node') or one more
-- authentication certificate for an existing node of the same member
-- ('add_certificate'). Requests made before version 5 are all 'node'.
ALTER TABLE registration_requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'node'
    CHECK (kind IN ('node', 'add_certificate'));
