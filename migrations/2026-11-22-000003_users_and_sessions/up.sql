-- Users and role profiles stand in for smartcards and Spine role selection (CP-IS042 to CP-IS056).

CREATE TABLE users (
    id                     bigserial PRIMARY KEY,
    username               text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    -- The person's unique id as a smartcard would carry it (UUID); "the same user" in CP-IS047.
    sds_user_id            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    display_name           text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    email                  text CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    telephone              text CHECK (length(telephone) BETWEEN 1 AND 40),
    -- argon2id PHC string.
    password_hash          text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    must_change_password   boolean NOT NULL DEFAULT false,
    -- CP-IS059: a disabled account cannot sign in and its contact details are shown to nobody.
    disabled_at            timestamptz,
    failed_sign_ins        integer NOT NULL DEFAULT 0 CHECK (failed_sign_ins >= 0),
    locked_until           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_profiles (
    id                 bigserial PRIMARY KEY,
    user_id            bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A profile is held at an NHS organisation or, for LA staff, at a local authority: exactly one.
    nhs_org_code       text REFERENCES nhs_organisations (ods_code),
    la_code            text REFERENCES local_authorities (code),
    job_role_code      text NOT NULL REFERENCES job_roles (code),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((nhs_org_code IS NULL) <> (la_code IS NULL))
);

CREATE INDEX role_profiles_user_idx ON role_profiles (user_id);
CREATE UNIQUE INDEX role_profiles_unique_idx
    ON role_profiles (user_id, coalesce(nhs_org_code, la_code), job_role_code);

CREATE TABLE role_profile_activities (
    role_profile_id  bigint NOT NULL REFERENCES role_profiles (id) ON DELETE CASCADE,
    activity_code    text NOT NULL REFERENCES activity_codes (code),
    PRIMARY KEY (role_profile_id, activity_code)
);

-- Server-side sessions, shared by every `cpis serve` instance. Keyed by a hash of the session key,
-- so a database reader cannot hijack a session; the user id lets an administrator end them all.
CREATE TABLE sessions (
    key_hash             bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    user_id              bigint REFERENCES users (id) ON DELETE CASCADE,
    state                jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL
);

CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
