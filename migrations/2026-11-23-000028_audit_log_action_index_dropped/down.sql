CREATE INDEX audit_log_action_time_idx ON audit_log (action, occurred_at);
