-- Entries already purged stay purged: with audit_purged gone, the verifier of the previous version
-- reports the first gap as a removed entry.
DROP INDEX access_events_nhs_number_idx;

DROP TRIGGER audit_log_delete_only_purged ON audit_log;
DROP TRIGGER audit_log_no_update ON audit_log;
DROP FUNCTION audit_log_delete_only_purged();

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

DROP TABLE audit_purged;
DROP FUNCTION audit_purged_refuse_change();
