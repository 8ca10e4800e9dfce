-- Messaging with local authorities (and, later, NHS systems): endpoint tokens, uploads and their
-- acknowledgements, the LA inbox, and the transmission log (CP-IS061, CP-SC014, CP-SC025).

-- Endpoint tokens: only a SHA-256 of the token is kept (CP-SC025).
CREATE TABLE endpoint_tokens (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('la', 'nhs')),
    la_code       text REFERENCES local_authorities (code),
    ods_code      text REFERENCES nhs_organisations (ods_code),
    label         text NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK ((kind = 'la') = (la_code IS NOT NULL)),
    CHECK ((kind = 'nhs') = (ods_code IS NOT NULL))
);

-- Every message 01 received, whatever its outcome (CP-IS018: the counts add up).
CREATE TABLE uploads (
    id               bigserial PRIMARY KEY,
    la_code          text NOT NULL REFERENCES local_authorities (code),
    message_id       uuid,
    sequence         bigint CHECK (sequence >= 0),
    received_at      timestamptz NOT NULL,
    size_bytes       integer NOT NULL CHECK (size_bytes >= 0),
    channel          text NOT NULL CHECK (channel IN ('mailbox', 'portal')),
    file_code        text NOT NULL CHECK (file_code IN ('CPF01', 'CPF02', 'CPF03', 'CPF04', 'CPF05', 'CPF06')),
    received         integer NOT NULL CHECK (received >= 0),
    accepted         integer NOT NULL CHECK (accepted >= 0),
    rejected         integer NOT NULL CHECK (rejected >= 0),
    -- CP-IS019: the acknowledgement's own id, which correlates to this upload.
    ack_message_id   uuid NOT NULL UNIQUE,
    CHECK (received = accepted + rejected)
);

-- A messageId an LA has sent before is a resubmission (CP-SC017).
CREATE UNIQUE INDEX uploads_message_idx ON uploads (la_code, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX uploads_la_idx ON uploads (la_code, received_at DESC);

ALTER TABLE cp_items ADD COLUMN upload_id bigint REFERENCES uploads (id);

-- The LA's inbox: messages 02, 05 and 06, held until the LA acknowledges them (CP-IS062).
CREATE TABLE mailbox_messages (
    id                uuid PRIMARY KEY,
    la_code           text NOT NULL REFERENCES local_authorities (code),
    message_type      text NOT NULL CHECK (message_type IN ('02', '05', '06')),
    created_at        timestamptz NOT NULL,
    body              text NOT NULL,
    upload_id         bigint REFERENCES uploads (id),
    acknowledged_at   timestamptz
);

CREATE INDEX mailbox_messages_inbox_idx ON mailbox_messages (la_code, created_at) WHERE acknowledged_at IS NULL;
CREATE INDEX mailbox_messages_la_idx ON mailbox_messages (la_code, created_at DESC);

-- CP-IS061: time, origin, destination, type and id of every message in or out; never content.
CREATE TABLE transmissions (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL,
    direction      text NOT NULL CHECK (direction IN ('in', 'out')),
    origin         text NOT NULL CHECK (length(origin) BETWEEN 1 AND 100),
    destination    text NOT NULL CHECK (length(destination) BETWEEN 1 AND 100),
    message_type   text NOT NULL CHECK (message_type IN ('01', '02', '03', '04', '05', '06')),
    message_id     text CHECK (length(message_id) <= 100),
    channel        text NOT NULL CHECK (channel IN ('mailbox', 'portal', 'fhir', 'email'))
);

CREATE INDEX transmissions_at_idx ON transmissions (at DESC, id DESC);

-- A patient's other current names (PDS holds several); the CP-IS002 cross-check tries them all.
CREATE TABLE patient_names (
    nhs_number    text NOT NULL REFERENCES patients (nhs_number) ON DELETE CASCADE,
    given_name    text NOT NULL DEFAULT '' CHECK (length(given_name) <= 100),
    family_name   text NOT NULL CHECK (length(family_name) BETWEEN 1 AND 100),
    PRIMARY KEY (nhs_number, given_name, family_name)
);
