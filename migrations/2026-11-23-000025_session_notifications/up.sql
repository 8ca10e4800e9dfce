-- Issue 8: each `cpis serve` instance remembers the sessions it has read (src/auth/session_cache.rs)
-- and forgets one as soon as anything a session load returns changes, wherever the change was
-- made: another instance, an administrator's transaction, a job or a hand-written statement.
-- These triggers say so on the channel `cpis_sessions` as the change commits (NOTIFY is delivered
-- at commit, never for a rolled-back change):
--   'k' || hex(key_hash)  one session's state, user, expiry brought forward, or the row gone;
--   'u' || user id        the principal the account keeps (migration 000024) changed, or the
--                         account is gone;
--   '*'                   a table emptied: forget everything.
-- An idle expiry moved later (every load that extends it, about once a minute per session) says
-- nothing: a remembered session is only used while its expiry needs no extending anyway.

CREATE FUNCTION sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('cpis_sessions', '*');
    ELSE
        PERFORM pg_notify('cpis_sessions', 'k' || encode(OLD.key_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER sessions_notify_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.key_hash <> NEW.key_hash
          OR NEW.expires_at < OLD.expires_at
          OR NEW.absolute_expires_at < OLD.absolute_expires_at)
    EXECUTE FUNCTION sessions_notify();
CREATE TRIGGER sessions_notify_delete AFTER DELETE ON sessions FOR EACH ROW
    EXECUTE FUNCTION sessions_notify();
CREATE TRIGGER sessions_notify_truncate AFTER TRUNCATE ON sessions FOR EACH STATEMENT
    EXECUTE FUNCTION sessions_notify();

CREATE FUNCTION users_sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('cpis_sessions', '*');
    ELSE
        PERFORM pg_notify('cpis_sessions', 'u' || OLD.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_sessions_notify_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.principal IS DISTINCT FROM NEW.principal OR OLD.id <> NEW.id)
    EXECUTE FUNCTION users_sessions_notify();
CREATE TRIGGER users_sessions_notify_delete AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION users_sessions_notify();
CREATE TRIGGER users_sessions_notify_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT
    EXECUTE FUNCTION users_sessions_notify();
