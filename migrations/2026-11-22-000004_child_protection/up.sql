-- Child protection information per (NHS number, LA, type) (CP-IS001, CP-IS031, CP-IS034, CP-IS035).

CREATE TABLE cp_items (
    id               bigserial PRIMARY KEY,
    nhs_number       text NOT NULL REFERENCES patients (nhs_number),
    la_code          text NOT NULL REFERENCES local_authorities (code),
    item_type        text NOT NULL CHECK (item_type IN ('CPP', 'LAC', 'UCPP')),
    -- The LA's own identifier: stored and returned to the LA only, never shown to NHS users (CP-IS051).
    la_child_id      text NOT NULL CHECK (length(la_child_id) BETWEEN 1 AND 100),
    start_date       date NOT NULL,
    end_date         date CHECK (end_date >= start_date),
    delete_date      date CHECK (delete_date >= start_date),
    -- Logical deletion: replaced by a later upload, or expired (CP-IS009, 010, 011, 032, 033).
    deleted_at       timestamptz,
    deleted_reason   text CHECK (deleted_reason IN ('replaced', 'expired', 'delete_date')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- CP-IS033: an unborn plan always carries the expected due date as its end.
    CHECK (item_type <> 'UCPP' OR end_date IS NOT NULL),
    CHECK ((deleted_at IS NULL) = (deleted_reason IS NULL))
);

-- At most one current item of each type per child and LA.
CREATE UNIQUE INDEX cp_items_current_idx ON cp_items (nhs_number, la_code, item_type) WHERE deleted_at IS NULL;
CREATE INDEX cp_items_la_idx ON cp_items (la_code) WHERE deleted_at IS NULL;

-- Every access (CP-IS036, CP-IS047: every access is stored; `shown` is the first-access rule's verdict,
-- decided when the access is recorded, in order, under a lock on the patient row).
CREATE TABLE access_events (
    id                  bigserial PRIMARY KEY,
    nhs_number          text NOT NULL REFERENCES patients (nhs_number),
    accessed_at         timestamptz NOT NULL,
    -- "The same user" of CP-IS047: the account's SDS user id (screens) or NHSD-End-User-ID (API).
    viewer_id           text NOT NULL CHECK (length(viewer_id) BETWEEN 1 AND 200),
    user_id             bigint REFERENCES users (id),
    viewer_name         text NOT NULL CHECK (length(viewer_name) BETWEEN 1 AND 200),
    job_role_code       text NOT NULL CHECK (length(job_role_code) BETWEEN 1 AND 20),
    organisation_code   text NOT NULL CHECK (length(organisation_code) BETWEEN 1 AND 20),
    channel             text NOT NULL CHECK (channel IN ('SCRa', 'FHIR')),
    shown               boolean NOT NULL
);

CREATE INDEX access_events_history_idx ON access_events (nhs_number, accessed_at DESC, id DESC) WHERE shown;
CREATE INDEX access_events_viewer_idx ON access_events (nhs_number, viewer_id, accessed_at DESC) WHERE shown;
CREATE INDEX access_events_time_idx ON access_events (accessed_at);
