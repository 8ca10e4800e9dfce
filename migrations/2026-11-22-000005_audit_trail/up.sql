-- The append-only, hash-chained audit trail (CP-IS073, CP-IS074). Every feature writes to it in the
-- same transaction as the action. Each entry's hash covers its predecessor's hash and its own fields
-- (see src/audit/chain.rs), so an edited, removed or inserted row breaks the chain.

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    occurred_at   timestamptz NOT NULL,
    -- Who acted: 'user:<id>', 'la:<code>', 'nhs-system:<id>', 'operator' or 'service'.
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action        text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    -- The child the entry is about, where there is one (retention, CP-IS075, CP-IS081).
    nhs_number    text CHECK (nhs_number ~ '^[0-9]{10}$'),
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash     bytea NOT NULL UNIQUE CHECK (length(prev_hash) = 32),
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32)
);

CREATE INDEX audit_log_nhs_number_idx ON audit_log (nhs_number, occurred_at) WHERE nhs_number IS NOT NULL;
CREATE INDEX audit_log_occurred_idx ON audit_log (occurred_at);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
