-- Reference data: local authorities, NHS organisations, job roles and activity codes (CP-IS005, CP-IS008).

CREATE TABLE local_authorities (
    code                  text PRIMARY KEY CHECK (code ~ '^E(06|07|08|09|10|11)[0-9]{6}$'),
    -- The reference list's name; the name in the LA's latest accepted file overrides it on screens.
    reference_name        text NOT NULL CHECK (length(reference_name) BETWEEN 1 AND 200),
    display_name          text CHECK (length(display_name) BETWEEN 1 AND 200),
    emergency_phone       text CHECK (length(emergency_phone) BETWEEN 1 AND 40),
    office_hours_phone    text CHECK (length(office_hours_phone) BETWEEN 1 AND 40),
    contacts_updated_at   timestamptz,
    notification_email    text CHECK (notification_email ~ '^[^@\s]+@[^@\s]+$'),
    -- CP-SC014: an LA's sending can be switched off.
    sending_enabled       boolean NOT NULL DEFAULT true,
    -- CP-SC016: the last sequence number that passed the file checks.
    last_sequence         bigint CHECK (last_sequence >= 0)
);

CREATE INDEX local_authorities_name_idx ON local_authorities (lower(coalesce(display_name, reference_name)));

CREATE TABLE nhs_organisations (
    ods_code   text PRIMARY KEY CHECK (ods_code ~ '^[A-Z0-9]{3,6}$'),
    -- As ODS publishes it (upper case); screens use the readable form (CP-NHS009).
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    town       text,
    postcode   text
);

CREATE TABLE job_roles (
    code  text PRIMARY KEY CHECK (code ~ '^R[0-9]{4}$'),
    name  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200)
);

CREATE TABLE activity_codes (
    code  text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9]{4}$'),
    name  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200)
);
