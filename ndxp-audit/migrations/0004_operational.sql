-- NDXP message log schema, version 4: lookup columns for transaction queries.
-- Copies of fields of the record (the record itself stays the only source of
-- truth and is never updated); rows written before this version have NULLs
-- here and are found only by time.

ALTER TABLE message_log ADD COLUMN client TEXT;
ALTER TABLE message_log ADD COLUMN service TEXT;
ALTER TABLE message_log ADD COLUMN status INTEGER;
ALTER TABLE message_log ADD COLUMN problem_code TEXT;
CREATE INDEX message_log_client ON message_log (client, received_at);
CREATE INDEX message_log_service ON message_log (service, received_at);
