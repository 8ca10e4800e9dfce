DROP TRIGGER sessions_notify_update ON sessions;
DROP TRIGGER sessions_notify_delete ON sessions;
CREATE TRIGGER sessions_notify_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.key_hash <> NEW.key_hash
          OR NEW.expires_at < OLD.expires_at
          OR NEW.absolute_expires_at < OLD.absolute_expires_at)
    EXECUTE FUNCTION sessions_notify();
CREATE TRIGGER sessions_notify_delete AFTER DELETE ON sessions FOR EACH ROW
    EXECUTE FUNCTION sessions_notify();
