-- A per-address limit on sign-in attempts (OWASP ASVS 2.2.1), counted in PostgreSQL so that every
-- instance shares the count. One row per client address: the current window and its attempts.
CREATE TABLE sign_in_throttle (
    address        text PRIMARY KEY CHECK (length(address) BETWEEN 1 AND 64),
    window_start   timestamptz NOT NULL,
    attempts       integer NOT NULL CHECK (attempts >= 0)
);
