-- Audit retention (CP-IS076): access events and audit entries about a child are purged once the
-- child is past their retention (src/domain/retention.rs), and the rest of the audit chain stays
-- verifiable (CP-IS074).
--
-- The chain is not cut into separate chains. A purged entry leaves behind only its two links
-- (its id, its predecessor's hash and its own hash: no personal data), so the verifier still walks
-- one unbroken chain from the first entry to the last: entries that remain are checked in full,
-- purged ones for continuity only. Each purge also appends a checkpoint entry, action
-- 'audit.purged', to the chain itself, recording how many links it left, their id range and a
-- SHA-256 over them (src/audit/chain.rs), and every link names its checkpoint: so a link removed
-- from audit_purged breaks the chain, and a link added there (to pass off a deleted entry as purged)
-- matches no checkpoint.

CREATE TABLE audit_purged (
    entry_id       bigint PRIMARY KEY,
    prev_hash      bytea NOT NULL UNIQUE CHECK (length(prev_hash) = 32),
    hash           bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    -- The 'audit.purged' entry of the purge that removed it (later in the chain). Not a foreign
    -- key: that would make TRUNCATE audit_log fail on the reference rather than on the refusal,
    -- and the verifier checks it anyway.
    checkpoint_id  bigint NOT NULL CHECK (checkpoint_id > entry_id),
    purged_at      timestamptz NOT NULL,
    reason         text NOT NULL CHECK (reason IN ('retention'))
);

CREATE INDEX audit_purged_checkpoint_idx ON audit_purged (checkpoint_id);

-- audit_purged is append-only like audit_log.
CREATE FUNCTION audit_purged_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_purged is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_purged_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_purged
    FOR EACH ROW EXECUTE FUNCTION audit_purged_refuse_change();

CREATE TRIGGER audit_purged_no_truncate
    BEFORE TRUNCATE ON audit_purged
    FOR EACH STATEMENT EXECUTE FUNCTION audit_purged_refuse_change();

-- audit_log: UPDATE and TRUNCATE stay refused always. DELETE is refused too, except for the purge:
-- inside a transaction that has set cpis.audit_purge to 'on' (SET LOCAL), of an entry about a child,
-- whose links are already recorded, unchanged, in audit_purged.
CREATE FUNCTION audit_log_delete_only_purged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('cpis.audit_purge', true), '') = 'on'
       AND OLD.nhs_number IS NOT NULL
       AND EXISTS (SELECT 1 FROM audit_purged p
                   WHERE p.entry_id = OLD.id AND p.prev_hash = OLD.prev_hash AND p.hash = OLD.hash)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: DELETE refused (only the retention purge removes entries)'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER audit_log_no_update_or_delete ON audit_log;

CREATE TRIGGER audit_log_no_update
    BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_delete_only_purged
    BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_delete_only_purged();

-- The purge removes a child's access events by NHS number; the existing indexes are partial.
CREATE INDEX access_events_nhs_number_idx ON access_events (nhs_number);
