ALTER TABLE audit_outbox RESET (vacuum_truncate, toast.vacuum_truncate);
