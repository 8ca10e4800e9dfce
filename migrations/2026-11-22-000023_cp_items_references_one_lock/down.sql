-- Back to migration 000020's checks: the items' check locks every parent row FOR KEY SHARE.

CREATE INDEX cp_items_la_idx ON cp_items (la_code) WHERE deleted_at IS NULL;

CREATE OR REPLACE FUNCTION cp_items_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found bigint;
BEGIN
    SELECT count(DISTINCT nhs_number) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM patients p WHERE p.nhs_number IN (SELECT nhs_number FROM new_items) FOR KEY SHARE OF p
    ) locked;
    IF found < wanted THEN
        RAISE EXCEPTION 'insert or update on table "cp_items" violates its reference to "patients"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s of the statement''s %s NHS numbers are not PDS patients.', wanted - found, wanted);
    END IF;

    SELECT count(DISTINCT la_code) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM local_authorities a WHERE a.code IN (SELECT la_code FROM new_items) FOR KEY SHARE OF a
    ) locked;
    IF found < wanted THEN
        RAISE EXCEPTION 'insert or update on table "cp_items" violates its reference to "local_authorities"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s of the statement''s %s LA codes are not local authorities.', wanted - found, wanted);
    END IF;

    SELECT count(DISTINCT upload_id) INTO wanted FROM new_items;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM uploads u WHERE u.id IN (SELECT upload_id FROM new_items) FOR KEY SHARE OF u
    ) locked;
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
    IF EXISTS (SELECT 1 FROM cp_items WHERE upload_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "uploads" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

DROP FUNCTION cp_items_reference_lock();
