-- Issue 8: each instance also remembers the accounts' contact details that the tab's access
-- history shows (src/auth/session_cache.rs, AccountContact), so that the history's statement no
-- longer joins users for each of its rows (half of that statement's time on the national
-- dataset). An account whose e-mail, telephone or disabling changes is announced as one whose
-- principal changed ('u' || id, migration 000025), wherever the change is made: the contact is
-- forgotten with the account's sessions. CP-IS059: a disabled account's contact details are shown
-- to nobody, so the disabling must be heard.
DROP TRIGGER users_sessions_notify_update ON users;
CREATE TRIGGER users_sessions_notify_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.principal IS DISTINCT FROM NEW.principal OR OLD.id <> NEW.id
          OR OLD.email IS DISTINCT FROM NEW.email
          OR OLD.telephone IS DISTINCT FROM NEW.telephone
          OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at)
    EXECUTE FUNCTION users_sessions_notify();
