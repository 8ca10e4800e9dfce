-- Issue 8: every signed-in page reads its session and, in the same statement, the person's
-- principal: the account and each role profile with its organisation's and job role's names and
-- its activity codes, as a JSON array of rows (src/auth/session_store.rs). Building that array was
-- most of the statement's cost (measured with pgbench on the national dataset: 27,000 a second
-- with it, 73,000 without, on this 2-core machine), and a page's session statement cost more at
-- the database than a search's own lookup.
--
-- The array is now kept with the account (users.principal) and rebuilt by triggers whenever
-- anything it is built from changes; the session statement reads it as stored. user_principal()
-- is the one definition of the array: the triggers store it, Principal::load reads it directly,
-- and tests/app/sessions.rs checks after each kind of change that every stored array equals it.
-- (The role chooser and the administration pages read a profile's columns through
-- auth::users::profiles, as before.)
--
-- The rebuilds run at COMMIT (deferred constraint triggers), each locking the accounts it
-- rebuilds and then reading them afresh, so that:
-- * two transactions that change what one account's array is built from (an administrator
--   removing a role profile while that LA's file renames the LA) cannot leave it built from the
--   state before either: whichever rebuilds second waits for the first to commit, then reads both
--   changes (a rebuild that only waited inside its UPDATE would re-check the row but build the
--   array from its earlier snapshot, writing the removed profile back);
-- * an upload that renames its LA locks that LA's staff accounts only while it commits, not for
--   the seconds a national file takes (their sign-ins update the same rows).
-- What can still lag is a name alone: a profile added at an LA at the very moment the LA is
-- renamed may keep the earlier name until the next rebuild of that account. A name grants
-- nothing. Every change that grants or removes access (the account, its profiles, their activity
-- codes) is rebuilt by the changing transaction itself.
--
-- Names are looked up by key for the one or two profiles (a join would have the planner
-- hash every organisation).

CREATE FUNCTION user_principal(uid bigint) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(json_agg(p ORDER BY p.profile_id), '[]'::json)::text FROM (
        SELECT u.id, u.username, u.sds_user_id, u.display_name, u.must_change_password, u.disabled_at,
               rp.id AS profile_id, rp.nhs_org_code, rp.la_code,
               CASE WHEN rp.id IS NULL THEN NULL ELSE coalesce(
                   (SELECT o.name FROM nhs_organisations o WHERE o.ods_code = rp.nhs_org_code),
                   (SELECT coalesce(la.display_name, la.reference_name) FROM local_authorities la WHERE la.code = rp.la_code),
                   '') END AS organisation_name,
               rp.job_role_code,
               (SELECT jr.name FROM job_roles jr WHERE jr.code = rp.job_role_code) AS job_role_name,
               ARRAY(SELECT a.activity_code FROM role_profile_activities a WHERE a.role_profile_id = rp.id
                     ORDER BY a.activity_code) AS activity_codes
        FROM users u LEFT JOIN role_profiles rp ON rp.user_id = u.id
        WHERE u.id = uid
    ) AS p
$$;

ALTER TABLE users ADD COLUMN principal text;

-- Rebuilds the stored array of the given accounts: their rows are locked first (in id order, so
-- two rebuilds never wait for each other crosswise), then built by a new statement, whose snapshot
-- (READ COMMITTED) includes every rebuild of them that committed before. Its UPDATE sets only
-- `principal`, which no trigger below looks at, so it never fires itself again.
CREATE FUNCTION users_rebuild_principal(uids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users WHERE id = ANY(uids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE users SET principal = user_principal(id) WHERE id = ANY(uids);
END;
$$;

CREATE FUNCTION users_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM users_rebuild_principal(ARRAY[NEW.id]);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER users_principal_insert AFTER INSERT ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION users_principal_changed();
-- Any update that changes a column the array holds, whichever columns its SET lists.
CREATE CONSTRAINT TRIGGER users_principal_update AFTER UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN ((OLD.id, OLD.username, OLD.sds_user_id, OLD.display_name, OLD.must_change_password,
                        OLD.disabled_at)
                       IS DISTINCT FROM (NEW.id, NEW.username, NEW.sds_user_id, NEW.display_name,
                                         NEW.must_change_password, NEW.disabled_at))
    EXECUTE FUNCTION users_principal_changed();

CREATE FUNCTION role_profiles_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM users_rebuild_principal(ARRAY[OLD.user_id]);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM users_rebuild_principal(ARRAY[OLD.user_id, NEW.user_id]);
    ELSE
        PERFORM users_rebuild_principal(ARRAY[NEW.user_id]);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER role_profiles_principal AFTER INSERT OR UPDATE OR DELETE ON role_profiles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION role_profiles_principal_changed();

CREATE FUNCTION role_profile_activities_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A profile's own deletion (its activities go with it) is rebuilt by role_profiles' trigger;
    -- here the profile is gone and nothing is rebuilt twice. A profile moved to another account
    -- meanwhile is rebuilt for both by role_profiles' trigger too.
    PERFORM users_rebuild_principal(ARRAY(
        SELECT rp.user_id FROM role_profiles rp
        WHERE rp.id IN (CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.role_profile_id END,
                        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.role_profile_id END)));
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER role_profile_activities_principal
    AFTER INSERT OR UPDATE OR DELETE ON role_profile_activities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION role_profile_activities_principal_changed();

-- TRUNCATE fires no row trigger (nor can a statement trigger be deferred): every account is
-- rebuilt at once.
CREATE FUNCTION users_rebuild_every_principal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM users_rebuild_principal(ARRAY(SELECT id FROM users));
    RETURN NULL;
END;
$$;
CREATE TRIGGER role_profiles_principal_truncate AFTER TRUNCATE ON role_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION users_rebuild_every_principal();
CREATE TRIGGER role_profile_activities_principal_truncate AFTER TRUNCATE ON role_profile_activities
    FOR EACH STATEMENT EXECUTE FUNCTION users_rebuild_every_principal();

-- The names shown with a profile. (Their keys cannot change while a profile refers to them.)
CREATE FUNCTION nhs_organisations_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM users_rebuild_principal(ARRAY(SELECT user_id FROM role_profiles WHERE nhs_org_code = NEW.ods_code));
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER nhs_organisations_principal AFTER UPDATE OF name ON nhs_organisations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION nhs_organisations_principal_changed();

CREATE FUNCTION local_authorities_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM users_rebuild_principal(ARRAY(SELECT user_id FROM role_profiles WHERE la_code = NEW.code));
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER local_authorities_principal
    AFTER UPDATE OF display_name, reference_name ON local_authorities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.display_name IS DISTINCT FROM NEW.display_name
                       OR OLD.reference_name IS DISTINCT FROM NEW.reference_name)
    EXECUTE FUNCTION local_authorities_principal_changed();

CREATE FUNCTION job_roles_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM users_rebuild_principal(ARRAY(SELECT user_id FROM role_profiles WHERE job_role_code = NEW.code));
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER job_roles_principal AFTER UPDATE OF name ON job_roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION job_roles_principal_changed();

UPDATE users SET principal = user_principal(id);
