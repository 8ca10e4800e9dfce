-- Issue 8: a large upload held the audit chain's lock for seconds. Its 60,000 per-record entries
-- were appended under the lock, which is held until the upload's transaction commits (no entry
-- may chain onto one that could still roll back), and every tab opening's COMMIT needs that lock:
-- measured, openings waited up to 5.4 s and one was answered 503 while a national file was stored.
--
-- Now such entries are written here, in the action's transaction (they commit with it or not at
-- all), without the lock. Right after the commit the same request chains them in chunks, each
-- chunk its own short transaction under the lock (src/audit/mod.rs, chain_pending), and answers
-- only then; other appenders get the lock between chunks. Entries a crash leaves here are chained
-- by the next upload, at the service's start, by the hourly checkpoint job and before a checkpoint
-- is signed. Until chained they are the chain's unprotected tail: the trigger below refuses
-- changes, and deletes other than the chaining's (which sets cpis.audit_chaining).
CREATE TABLE audit_pending (
    id           bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    nhs_number   text CHECK (nhs_number ~ '^[0-9]{10}$'),
    details      jsonb NOT NULL,
    -- The entry's canonical text (src/audit/chain.rs), which the chain hashes.
    canonical    text NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

CREATE FUNCTION audit_pending_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(current_setting('cpis.audit_chaining', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_pending entries are only moved into the chain: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_pending_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_pending_guard();

CREATE TRIGGER audit_pending_no_truncate
    BEFORE TRUNCATE ON audit_pending
    FOR EACH STATEMENT EXECUTE FUNCTION audit_pending_guard();
