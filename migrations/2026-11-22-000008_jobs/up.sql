-- Scheduled work shared by every `cpis serve` instance (and `cpis jobs run-due`): a job queue
-- claimed with FOR UPDATE SKIP LOCKED, one row per scheduled occurrence (unique per kind and key,
-- inserted with ON CONFLICT DO NOTHING so that every instance may tick and exactly one runs it).

CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('expiry', 'daily_notification', 'audit_retention', 'session_cleanup')),
    -- The occurrence: its scheduled instant, as text, for scheduled jobs.
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    scheduled_for   timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_after       timestamptz NOT NULL,
    last_error      text,
    summary         jsonb,
    started_at      timestamptz,
    finished_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, key)
);

CREATE INDEX jobs_due_idx ON jobs (run_after) WHERE status = 'pending';
CREATE INDEX jobs_recent_idx ON jobs (scheduled_for DESC);

-- E-mails to send (message 05 to each LA's notification address), exactly one per key: a fixed
-- Message-ID per LA and day; transient failures retried with backoff, permanent ones kept.
CREATE TABLE outbound_emails (
    id                bigserial PRIMARY KEY,
    message_key       text NOT NULL UNIQUE CHECK (length(message_key) BETWEEN 1 AND 200),
    message_id        text NOT NULL UNIQUE,
    la_code           text REFERENCES local_authorities (code),
    to_address        text NOT NULL CHECK (to_address ~ '^[^@\s]+@[^@\s]+$'),
    subject           text NOT NULL,
    body_text         text NOT NULL,
    body_html         text NOT NULL,
    attachment_name   text,
    attachment        text,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz NOT NULL,
    last_error        text,
    sent_at           timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbound_emails_due_idx ON outbound_emails (next_attempt_at) WHERE status = 'pending';
