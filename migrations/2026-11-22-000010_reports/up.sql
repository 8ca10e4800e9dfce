-- Issue 6: the audit trail made provable (CP-IS074) and the reports CP-IS077 to CP-IS081.

-- Signed checkpoints (CP-IS074). Each signs, with a key held in configuration and never in the
-- database, the chain's head at the time (its entry id and hash), how many entries the chain had
-- walked to it, and the previous checkpoint's signature: so rewriting the whole chain (recomputing
-- every hash) no longer matches the signed heads, and a removed checkpoint breaks the next one.
-- The signature is HMAC-SHA256 (src/audit/checkpoint.rs).
CREATE TABLE audit_checkpoints (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL,
    -- The chain's head when signed: an audit_log entry (or, after a purge, a link in audit_purged).
    entry_id        bigint NOT NULL,
    entry_hash      bytea NOT NULL CHECK (length(entry_hash) = 32),
    -- Which key signed it (a fingerprint of the key, never the key), so keys can be rotated.
    key_id          text NOT NULL CHECK (length(key_id) BETWEEN 1 AND 64),
    prev_signature  bytea NOT NULL CHECK (length(prev_signature) = 32),
    signature       bytea NOT NULL UNIQUE CHECK (length(signature) = 32)
);

CREATE FUNCTION audit_checkpoints_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_checkpoints_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_refuse_change();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_refuse_change();

-- Each verification of the trail, on demand or scheduled, and what it found.
CREATE TABLE audit_verifications (
    id                bigserial PRIMARY KEY,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    -- 'user:<id>', 'service' (scheduled) or 'operator' (the CLI).
    run_by            text NOT NULL CHECK (length(run_by) BETWEEN 1 AND 200),
    intact            boolean NOT NULL,
    entries           bigint NOT NULL DEFAULT 0,
    purged            bigint NOT NULL DEFAULT 0,
    checkpoints       bigint NOT NULL DEFAULT 0,
    broken_entry_id   bigint,
    reason            text CHECK (length(reason) <= 1000),
    CHECK (intact = (broken_entry_id IS NULL AND reason IS NULL) OR NOT intact)
);

CREATE INDEX audit_verifications_recent_idx ON audit_verifications (finished_at DESC);

-- CP-IS078: availability from a health probe recorded every minute by each running instance.
CREATE TABLE health_probes (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    instance     text NOT NULL CHECK (length(instance) BETWEEN 1 AND 100),
    ok           boolean NOT NULL,
    latency_ms   double precision NOT NULL CHECK (latency_ms >= 0)
);

CREATE INDEX health_probes_at_idx ON health_probes (at);

-- CP-IS078: requests per minute, per instance and area, with a latency histogram (bucket upper
-- bounds in src/reports/performance.rs) so percentiles can be merged over any period.
CREATE TABLE request_minutes (
    minute          timestamptz NOT NULL,
    instance        text NOT NULL CHECK (length(instance) BETWEEN 1 AND 100),
    area            text NOT NULL CHECK (length(area) BETWEEN 1 AND 100),
    requests        bigint NOT NULL CHECK (requests >= 0),
    client_errors   bigint NOT NULL CHECK (client_errors >= 0),
    server_errors   bigint NOT NULL CHECK (server_errors >= 0),
    buckets         bigint[] NOT NULL,
    PRIMARY KEY (minute, instance, area)
);

-- CP-IS078: the incident log that CP-IS owners keep (severity 1, the worst, to 5).
CREATE TABLE incidents (
    id            bigserial PRIMARY KEY,
    severity      smallint NOT NULL CHECK (severity BETWEEN 1 AND 5),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    started_at    timestamptz NOT NULL,
    resolved_at   timestamptz CHECK (resolved_at >= started_at),
    recorded_by   bigint NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incidents_started_idx ON incidents (started_at DESC);

-- CP-IS081: who viewed which records, filtered by organisation or user over a period.
CREATE INDEX access_events_org_time_idx ON access_events (organisation_code, accessed_at DESC, id DESC);
CREATE INDEX access_events_viewer_time_idx ON access_events (viewer_id, accessed_at DESC, id DESC);
CREATE INDEX access_events_time_id_idx ON access_events (accessed_at DESC, id DESC);
DROP INDEX access_events_time_idx;
-- CP-IS081: which LA updated what, when (the audit's changes to child protection information).
CREATE INDEX audit_log_cp_changes_idx ON audit_log (occurred_at DESC, id DESC) WHERE action LIKE 'cp.%';
CREATE INDEX audit_log_action_time_idx ON audit_log (action, occurred_at);

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('expiry', 'daily_notification', 'audit_retention', 'session_cleanup', 'audit_checkpoint'));
