DROP TRIGGER users_sessions_notify_truncate ON users;
DROP TRIGGER users_sessions_notify_delete ON users;
DROP TRIGGER users_sessions_notify_update ON users;
DROP FUNCTION users_sessions_notify();
DROP TRIGGER sessions_notify_truncate ON sessions;
DROP TRIGGER sessions_notify_delete ON sessions;
DROP TRIGGER sessions_notify_update ON sessions;
DROP FUNCTION sessions_notify();
