ALTER TABLE audit_pending ADD COLUMN details jsonb;
-- The guard refuses updates; filling the column for rows pending now is this migration's own.
ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_no_update_or_delete;
UPDATE audit_pending SET details = (canonical::jsonb) -> 4;
ALTER TABLE audit_pending ENABLE TRIGGER audit_pending_no_update_or_delete;
ALTER TABLE audit_pending ALTER COLUMN details SET NOT NULL;
