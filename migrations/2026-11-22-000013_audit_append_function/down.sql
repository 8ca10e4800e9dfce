DROP FUNCTION audit_append(bigint, timestamptz, text[], text[], text[], jsonb[], text[]);
