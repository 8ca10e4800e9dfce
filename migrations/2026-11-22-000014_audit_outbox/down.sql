DROP TABLE audit_outbox;
DROP FUNCTION audit_outbox_append();
