-- The service's own demographic store, standing in for PDS (CP-IS005), modelled on the PDS FHIR API.

CREATE TABLE patients (
    nhs_number       text PRIMARY KEY CHECK (nhs_number ~ '^[0-9]{10}$'),
    given_name       text NOT NULL DEFAULT '' CHECK (length(given_name) <= 100),
    family_name      text NOT NULL CHECK (length(family_name) BETWEEN 1 AND 100),
    gender           text NOT NULL CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    birth_date       date NOT NULL,
    death_date       date CHECK (death_date >= birth_date),
    postcode         text CHECK (postcode ~ '^[A-Z0-9]{5,7}$'),
    address          text CHECK (length(address) <= 300),
    gp_ods           text CHECK (gp_ods ~ '^[A-Z0-9]{3,6}$'),
    -- S-flag: address, telephone and GP never shown; never found by postcode.
    restricted       boolean NOT NULL DEFAULT false,
    -- A superseded number points at the current record; an invalidated one is not found.
    superseded_by    text REFERENCES patients (nhs_number) DEFERRABLE INITIALLY DEFERRED,
    invalidated      boolean NOT NULL DEFAULT false,
    -- Search keys kept by the application (lower case, Soundex) so that indexes match the queries.
    family_key       text NOT NULL,
    given_key        text NOT NULL,
    family_soundex   text NOT NULL,
    given_soundex    text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (superseded_by IS NULL OR superseded_by <> nhs_number),
    CHECK (NOT (invalidated AND superseded_by IS NOT NULL))
);

-- Demographic search: family name (exact or prefix) with a birth date or range.
CREATE INDEX patients_family_birth_idx ON patients (family_key text_pattern_ops, birth_date)
    WHERE superseded_by IS NULL AND NOT invalidated;
CREATE INDEX patients_family_soundex_idx ON patients (family_soundex, birth_date)
    WHERE superseded_by IS NULL AND NOT invalidated;
-- "Swapped names": the given name searched as a family name.
CREATE INDEX patients_given_birth_idx ON patients (given_key text_pattern_ops, birth_date)
    WHERE superseded_by IS NULL AND NOT invalidated;
CREATE INDEX patients_superseded_by_idx ON patients (superseded_by) WHERE superseded_by IS NOT NULL;
