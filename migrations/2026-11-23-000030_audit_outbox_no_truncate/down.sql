ALTER TABLE audit_outbox RESET (vacuum_truncate);
