-- NDXP message log schema, version 7: fewer B-tree inserts per append.
-- Every index is written inside the group commit, on the single writer's
-- path. No query looks records up by transaction id (transaction queries
-- filter by time, client, service, status, problem code, writer and trace
-- id; reconciliation and timestamping read by time and by writer and seq),
-- so that index goes. The trace id index keeps only the records that have a
-- trace id: a lookup `trace_id = ...` never matches NULL, so it still uses
-- the index, and records without one cost no insert. Records, hashes and
-- chains are untouched.

DROP INDEX message_log_transaction;
DROP INDEX message_log_trace;
CREATE INDEX message_log_trace ON message_log (trace_id) WHERE trace_id IS NOT NULL;
