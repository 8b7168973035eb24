-- NDXP message log schema, version 6: the W3C trace id of each exchange.
-- A copy of the record's optional `trace_id` member for lookups ("follow a
-- request through both nodes": query each node's log by trace id). Rows
-- written before this version, and records without a trace id, have NULL.

ALTER TABLE message_log ADD COLUMN trace_id TEXT;
CREATE INDEX message_log_trace ON message_log (trace_id);
