-- cp_items' three references (to patients, local_authorities and uploads) checked once per
-- statement instead of once per row.
--
-- Why (issue 8, measured on the national dataset): a 60,000-record upload inserts 120,000 items in
-- one statement, and a foreign key runs its check (a lookup that locks the parent row FOR KEY SHARE)
-- for every row and every reference: 360,000 lookups, 5.1 s of the insert against 2.1 s for the
-- rows and their indexes. Checked per statement, the same guarantee costs one pass: each distinct
-- referenced row is looked up and locked FOR KEY SHARE once (0.35 s for 60,000 children).
--
-- The guarantee is a foreign key's, kept in both directions:
-- * cp_items -> parent: after every INSERT, every NHS number, LA code and upload id the statement
--   wrote must name an existing row, which stays locked FOR KEY SHARE until the transaction ends
--   (a concurrent DELETE or key change of that row waits for it, then sees the items).
-- * an item's references never change (an item is replaced, never re-pointed): refused.
-- * parent: deleting a referenced row, or changing its key, is refused. Its row lock conflicts
--   with the items' FOR KEY SHARE, so a delete racing an insert either waits and then sees the new
--   items, or goes first and the insert's check no longer finds (and cannot lock) the row.
-- tests/app/schema.rs proves each of these, the two races included. (Migration 000020 closes two
-- gaps found in review: a parent deleted outside READ COMMITTED, and TRUNCATE.)

ALTER TABLE cp_items
    DROP CONSTRAINT cp_items_nhs_number_fkey,
    DROP CONSTRAINT cp_items_la_code_fkey,
    DROP CONSTRAINT cp_items_upload_id_fkey;

CREATE FUNCTION cp_items_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER cp_items_references_exist
    AFTER INSERT ON cp_items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION cp_items_check_references();

CREATE FUNCTION cp_items_refuse_repointing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'update on table "cp_items" refused: an item''s NHS number, LA and upload never change (a later upload replaces the item)'
        USING ERRCODE = 'foreign_key_violation';
END;
$$;

CREATE TRIGGER cp_items_references_fixed
    BEFORE UPDATE OF nhs_number, la_code, upload_id ON cp_items
    FOR EACH ROW
    WHEN (OLD.nhs_number IS DISTINCT FROM NEW.nhs_number
          OR OLD.la_code IS DISTINCT FROM NEW.la_code
          OR OLD.upload_id IS DISTINCT FROM NEW.upload_id)
    EXECUTE FUNCTION cp_items_refuse_repointing();

-- The parents' side. One small function each rather than one with dynamic SQL: patients and
-- local authorities probe an index of cp_items on their column; cp_items has no index on
-- upload_id (nor had it under the foreign key), so refusing an upload's deletion reads the table,
-- which nothing in the service does (uploads are never deleted).
CREATE FUNCTION patients_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.nhs_number = OLD.nhs_number THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM cp_items WHERE nhs_number = OLD.nhs_number) THEN
        RAISE EXCEPTION '% on table "patients" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER patients_cp_items_refer
    BEFORE DELETE OR UPDATE OF nhs_number ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_refuse_if_cp_items_refer();

CREATE FUNCTION local_authorities_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.code = OLD.code THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM cp_items WHERE la_code = OLD.code) THEN
        RAISE EXCEPTION '% on table "local_authorities" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER local_authorities_cp_items_refer
    BEFORE DELETE OR UPDATE OF code ON local_authorities
    FOR EACH ROW EXECUTE FUNCTION local_authorities_refuse_if_cp_items_refer();

CREATE FUNCTION uploads_refuse_if_cp_items_refer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM cp_items WHERE upload_id = OLD.id) THEN
        RAISE EXCEPTION '% on table "uploads" violates the reference from "cp_items"', TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER uploads_cp_items_refer
    BEFORE DELETE OR UPDATE OF id ON uploads
    FOR EACH ROW EXECUTE FUNCTION uploads_refuse_if_cp_items_refer();
