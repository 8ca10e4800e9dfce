DROP TRIGGER users_sessions_notify_update ON users;
CREATE TRIGGER users_sessions_notify_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.principal IS DISTINCT FROM NEW.principal OR OLD.id <> NEW.id)
    EXECUTE FUNCTION users_sessions_notify();
