-- Writes to audit_log wait while the index is built (about a minute on a national year).
CREATE INDEX audit_log_action_time_idx ON audit_log (action, occurred_at);
