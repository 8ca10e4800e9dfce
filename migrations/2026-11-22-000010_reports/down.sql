ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
DELETE FROM jobs WHERE kind = 'audit_checkpoint';
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('expiry', 'daily_notification', 'audit_retention', 'session_cleanup'));
DROP INDEX audit_log_action_time_idx;
DROP INDEX audit_log_cp_changes_idx;
CREATE INDEX access_events_time_idx ON access_events (accessed_at);
DROP INDEX access_events_time_id_idx;
DROP INDEX access_events_viewer_time_idx;
DROP INDEX access_events_org_time_idx;
DROP TABLE incidents;
DROP TABLE request_minutes;
DROP TABLE health_probes;
DROP TABLE audit_verifications;
DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
DROP TRIGGER audit_checkpoints_no_update_or_delete ON audit_checkpoints;
DROP TABLE audit_checkpoints;
DROP FUNCTION audit_checkpoints_refuse_change();
