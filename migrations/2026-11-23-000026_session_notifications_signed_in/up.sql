-- Only signed-in sessions are remembered (src/auth/session_cache.rs), so only a change to one of
-- them is announced: the session clean-up job's deletion of expired sign-in-page sessions (which
-- anyone can make as many of as they like) no longer sends every instance one announcement each.
DROP TRIGGER sessions_notify_update ON sessions;
DROP TRIGGER sessions_notify_delete ON sessions;
CREATE TRIGGER sessions_notify_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL
          AND (OLD.state IS DISTINCT FROM NEW.state
               OR OLD.user_id IS DISTINCT FROM NEW.user_id
               OR OLD.key_hash <> NEW.key_hash
               OR NEW.expires_at < OLD.expires_at
               OR NEW.absolute_expires_at < OLD.absolute_expires_at))
    EXECUTE FUNCTION sessions_notify();
CREATE TRIGGER sessions_notify_delete AFTER DELETE ON sessions FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL)
    EXECUTE FUNCTION sessions_notify();
