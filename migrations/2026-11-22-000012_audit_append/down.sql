ALTER TABLE audit_log ADD CONSTRAINT audit_log_prev_hash_key UNIQUE (prev_hash);
ALTER TABLE audit_log ADD CONSTRAINT audit_log_hash_key UNIQUE (hash);
