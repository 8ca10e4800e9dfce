-- Issue 8: each instance also remembers the endpoint tokens it has found live
-- (src/auth/session_cache.rs), so that a FHIR search or a mailbox call no longer reads
-- endpoint_tokens to know its caller. A token revoked, changed or deleted (also by a cascade) is
-- announced on the sessions' channel as 't' || id, wherever the change is made; the table emptied
-- forgets everything. CP-NHS018: a revoked token must be refused at once, so revocation must be
-- heard. A new token needs no announcement: a token not found is never remembered.
CREATE FUNCTION endpoint_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('cpis_sessions', '*');
    ELSE
        PERFORM pg_notify('cpis_sessions', 't' || OLD.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER endpoint_tokens_notify_update AFTER UPDATE ON endpoint_tokens FOR EACH ROW
    WHEN (OLD.id <> NEW.id
          OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.la_code IS DISTINCT FROM NEW.la_code
          OR OLD.ods_code IS DISTINCT FROM NEW.ods_code
          OR OLD.token_hash IS DISTINCT FROM NEW.token_hash
          OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION endpoint_tokens_notify();
CREATE TRIGGER endpoint_tokens_notify_delete AFTER DELETE ON endpoint_tokens FOR EACH ROW
    EXECUTE FUNCTION endpoint_tokens_notify();
CREATE TRIGGER endpoint_tokens_notify_truncate AFTER TRUNCATE ON endpoint_tokens FOR EACH STATEMENT
    EXECUTE FUNCTION endpoint_tokens_notify();
