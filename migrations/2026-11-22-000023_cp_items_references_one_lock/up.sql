-- Issue 8: cp_items' reference check (migration 000017) locked every distinct child of a statement
-- FOR KEY SHARE, as a foreign key does. For a national file that is 60,000 patients' rows, each
-- lock a write to the patient's tuple and a WAL record: 0.72 to 0.82 s of the items' insert on
-- the national dataset, against 0.27 to 0.32 s for the same check without the row locks.
--
-- What those locks were for is one race: a parent deleted (or re-keyed) while an item naming it
-- is being inserted. Both sides now meet at one advisory lock instead, "CPISREFS":
-- * an insert into cp_items takes it shared (any number of uploads at once), before its check
--   looks for the parents, and holds it to its transaction's end;
-- * deleting or re-keying a parent takes it exclusive, before its check looks for items.
-- So whichever goes second waits for the first to end and then, with a fresh snapshot (READ
-- COMMITTED: each statement of the trigger takes one), sees what the first did: the insert no
-- longer finds the deleted parent, or the delete finds the new items. Both are refused, as with a
-- foreign key (tests/app/schema.rs runs both orders for a patient and for an upload).
--
-- The service never deletes or re-keys a parent, so nothing of the service ever waits for this
-- lock. Whoever does (an operator by hand) waits for every upload in flight, and new uploads wait
-- behind that delete: one key for every parent, where a foreign key locks only the rows named. An insert outside READ COMMITTED keeps the row locks: its snapshot is its transaction's
-- first, so only the row lock (a serialization failure on a row deleted since) protects it.
-- Deleting a parent outside READ COMMITTED was already refused (migration 000020).
--
-- cp_items_la_idx goes too: an index on la_code of the current items, which every item wrote.
-- Reads by LA use cp_items_la_child_idx (la_code, nhs_number); the upload's replacement reads
-- cp_items_current_idx.

CREATE FUNCTION cp_items_reference_lock() RETURNS bigint LANGUAGE sql IMMUTABLE AS
    'SELECT x''4350495352454653''::bigint'; -- "CPISREFS"

CREATE OR REPLACE FUNCTION cp_items_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found bigint;
BEGIN
    IF current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM pg_advisory_xact_lock_shared(cp_items_reference_lock());
    ELSE
        -- Each parent row locked as a foreign key locks it: one deleted since this transaction's
        -- snapshot is a serialization failure here. The advisory lock is not taken as well: it
        -- could deadlock with a parent's delete, which locks the parent's row before its trigger
        -- asks for the lock exclusively.
        PERFORM 1 FROM patients p WHERE p.nhs_number IN (SELECT nhs_number FROM new_items) FOR KEY SHARE OF p;
        PERFORM 1 FROM local_authorities a WHERE a.code IN (SELECT la_code FROM new_items) FOR KEY SHARE OF a;
        PERFORM 1 FROM uploads u WHERE u.id IN (SELECT upload_id FROM new_items) FOR KEY SHARE OF u;
    END IF;

    SELECT count(DISTINCT nhs_number) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM patients p WHERE p.nhs_number IN (SELECT nhs_number FROM new_items);
    IF found < wanted THEN
        RAISE EXCEPTION 'insert or update on table "cp_items" violates its reference to "patients"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s of the statement''s %s NHS numbers are not PDS patients.', wanted - found, wanted);
    END IF;

    SELECT count(DISTINCT la_code) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM local_authorities a WHERE a.code IN (SELECT la_code FROM new_items);
    IF found < wanted THEN
        RAISE EXCEPTION 'insert or update on table "cp_items" violates its reference to "local_authorities"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s of the statement''s %s LA codes are not local authorities.', wanted - found, wanted);
    END IF;

    SELECT count(DISTINCT upload_id) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM uploads u WHERE u.id IN (SELECT upload_id FROM new_items);
    IF found < wanted THEN
        RAISE EXCEPTION 'insert or update on table "cp_items" violates its reference to "uploads"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s of the statement''s %s upload ids are not uploads.', wanted - found, wanted);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION patients_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.nhs_number = OLD.nhs_number THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    PERFORM pg_advisory_xact_lock(cp_items_reference_lock());
    IF EXISTS (SELECT 1 FROM cp_items WHERE nhs_number = OLD.nhs_number) THEN
        RAISE EXCEPTION '% on table "patients" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE OR REPLACE FUNCTION local_authorities_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.code = OLD.code THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    PERFORM pg_advisory_xact_lock(cp_items_reference_lock());
    IF EXISTS (SELECT 1 FROM cp_items WHERE la_code = OLD.code) THEN
        RAISE EXCEPTION '% on table "local_authorities" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE OR REPLACE FUNCTION uploads_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    PERFORM cp_items_parent_isolation_check();
    PERFORM pg_advisory_xact_lock(cp_items_reference_lock());
    IF EXISTS (SELECT 1 FROM cp_items WHERE upload_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "uploads" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

DROP INDEX cp_items_la_idx;
