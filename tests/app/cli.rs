//! The operator commands, run as an operator would (messages.md, operator commands).

use std::process::Command;

use crate::support::db::count;
use crate::support::{Template, TestDatabase};

fn cpis(db: &TestDatabase, args: &[&str]) -> std::process::Output {
    cpis_with_key(db, None, args)
}

/// `cpis` with the audit key in CPIS_AUDIT_KEY, or none at all.
fn cpis_with_key(db: &TestDatabase, key: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cpis"));
    command
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("CPIS_LOG", "warn")
        .env_remove("CPIS_AUDIT_KEY")
        .env_remove("CPIS_AUDIT_KEY_FILE");
    if let Some(key) = key {
        command.env("CPIS_AUDIT_KEY", key);
    }
    command.output().expect("run cpis")
}

fn tables(db: &TestDatabase) -> Vec<i64> {
    let mut conn = db.conn();
    [
        "patients",
        "users",
        "role_profiles",
        "cp_items",
        "access_events",
        "audit_log",
        "local_authorities",
        "nhs_organisations",
    ]
    .iter()
    .map(|t| count(&mut conn, &format!("SELECT count(*) FROM {t}")))
    .collect()
}

#[test]
fn seed_demo_twice_changes_nothing() {
    let db = TestDatabase::empty();
    let first = cpis(&db, &["seed", "--demo"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let after_first = tables(&db);
    assert!(after_first[0] >= 20_000, "at least 20,000 patients");
    assert_eq!(after_first[6], 152, "152 local authorities");
    let second = cpis(&db, &["seed", "--demo"]);
    assert!(second.status.success());
    assert_eq!(tables(&db), after_first);
}

#[test]
fn seed_covers_every_kind_of_patient_and_item() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    for (what, sql) in [
        ("restricted", "SELECT count(*) FROM patients WHERE restricted"),
        ("superseded", "SELECT count(*) FROM patients WHERE superseded_by IS NOT NULL"),
        ("invalidated", "SELECT count(*) FROM patients WHERE invalidated"),
        ("CPP", "SELECT count(*) FROM cp_items WHERE item_type = 'CPP'"),
        ("LAC", "SELECT count(*) FROM cp_items WHERE item_type = 'LAC'"),
        ("UCPP", "SELECT count(*) FROM cp_items WHERE item_type = 'UCPP'"),
        ("deleted", "SELECT count(*) FROM cp_items WHERE deleted_at IS NOT NULL"),
        ("two LAs", "SELECT count(*) FROM (SELECT nhs_number FROM cp_items GROUP BY nhs_number HAVING count(DISTINCT la_code) > 1) x"),
        ("CPP and LAC", "SELECT count(*) FROM (SELECT nhs_number FROM cp_items GROUP BY nhs_number, la_code HAVING count(DISTINCT item_type) > 1) x"),
        ("several LAs hold data", "SELECT count(DISTINCT la_code) - 10 FROM cp_items"),
    ] {
        assert!(count(&mut conn, sql) > 0, "{what}");
    }
    // Every persona of domain.md has an account.
    assert_eq!(count(&mut conn, "SELECT count(*) FROM users"), cpis::seed::demo::PERSONAS.len() as i64);
}

const HEADER: &str = "nhs_number,given_name,family_name,gender,birth_date,death_date,postcode,address,gp_ods,restricted,superseded_by,invalidated\n";

#[test]
fn pds_import_loads_and_updates_patients() {
    let db = TestDatabase::new(Template::Reference);
    let dir = std::env::temp_dir().join(format!("cpis-pds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("patients.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}9990000034,Oliver,Bennett,male,2018-03-04,,ME14 1XX,12 Tonbridge Road,Y01234,false,,false\n\
             9990000026,Oliver,Bennett,male,2018-03-04,,,,,false,9990000034,false\n\
             9000000025,Janet,Smythe,female,2005-11-09,,LS1 6AE,,,true,,false\n"
        ),
    )
    .unwrap();
    let out = cpis(&db, &["pds", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut conn = db.conn();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM patients"), 3);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM patients WHERE nhs_number = '9990000026' AND superseded_by = '9990000034'"
        ),
        1
    );
    // Importing an update changes the row.
    std::fs::write(&file, format!("{HEADER}9990000034,Oliver,Bennett-Jones,male,2018-03-04,,,,,false,,false\n"))
        .unwrap();
    assert!(cpis(&db, &["pds", "import", file.to_str().unwrap()]).status.success());
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM patients WHERE family_name = 'Bennett-Jones' AND family_key = 'bennett-jones'"
        ),
        1
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'pds.imported'"), 2);
}

#[test]
fn a_bad_pds_file_is_refused_whole_with_line_numbers() {
    let db = TestDatabase::new(Template::Reference);
    let dir = std::env::temp_dir().join(format!("cpis-pds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}9990000034,Oliver,Bennett,male,2018-03-04,,,,,false,,false\n\
             9990000035,Bad,Number,male,2018-03-04,,,,,false,,false\n"
        ),
    )
    .unwrap();
    let out = cpis(&db, &["pds", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3") && stderr.contains("nothing was imported"), "{stderr}");
    assert_eq!(count(&mut db.conn(), "SELECT count(*) FROM patients"), 0, "nothing half-stored");
    // A superseded_by that names nobody is refused too, and nothing is stored.
    std::fs::write(&file, format!("{HEADER}9990000026,Oliver,Bennett,male,2018-03-04,,,,,false,9990000042,false\n"))
        .unwrap();
    let out = cpis(&db, &["pds", "import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("9990000042"));
    assert_eq!(count(&mut db.conn(), "SELECT count(*) FROM patients"), 0);
    let out = cpis(&db, &["pds", "import", "/no/such/file.csv"]);
    assert!(!out.status.success());
}

#[test]
fn commands_explain_a_missing_database_url() {
    let out = Command::new(env!("CARGO_BIN_EXE_cpis")).arg("migrate").env_remove("DATABASE_URL").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL is not set"));
}

#[test]
fn token_la_prints_the_token_alone_and_stores_only_its_hash() {
    let db = TestDatabase::new(Template::Reference);
    let out = cpis(&db, &["token", "la", "E10000016"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert_eq!(stdout.lines().count(), 1, "the token alone on stdout");
    assert!(token.starts_with("cpisla_") && token.len() > 40);
    let mut conn = db.conn();
    assert_eq!(
        count(&mut conn, &format!("SELECT count(*) FROM endpoint_tokens WHERE la_code = 'E10000016' AND token_hash = sha256(convert_to('{token}', 'UTF8'))")),
        1
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'token.issued'"), 1);
    let nhs = cpis(&db, &["token", "nhs", "RJZ"]);
    assert!(nhs.status.success());
    assert!(String::from_utf8(nhs.stdout).unwrap().starts_with("cpisnhs_"));
    let unknown = cpis(&db, &["token", "la", "E99999999"]);
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty(), "nothing on stdout when no token was issued");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no local authority"));
}

#[test]
fn audit_verify_exits_zero_when_intact_and_names_the_first_bad_entry() {
    let db = TestDatabase::new(Template::Demo);
    let out = cpis(&db, &["audit", "verify"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("intact"));
    assert!(stderr.contains("checkpoints checked (no audit key"), "{stderr}");
    // The run is recorded, as the operator's, and audited.
    let mut conn = db.conn();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_verifications WHERE run_by = 'operator' AND intact"), 1);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'audit.verified' AND actor = 'operator'"),
        1
    );
    // Tamper as the database superuser, bypassing the triggers (CP-IS074).
    let id = count(&mut conn, "SELECT min(id) FROM audit_log");
    crate::support::db::execute(&mut conn, "SET session_replication_role = replica");
    crate::support::db::execute(&mut conn, &format!("UPDATE audit_log SET actor = 'user:999' WHERE id = {id}"));
    let out = cpis(&db, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("entry {id}")));
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM audit_verifications WHERE NOT intact AND broken_entry_id = {id}")
        ),
        1
    );
}

#[test]
fn audit_checkpoint_signs_and_audit_verify_checks_it_with_the_key() {
    let db = TestDatabase::new(Template::Demo);
    let key = "ab".repeat(32);
    let other = "cd".repeat(32);
    // No key: nothing to sign with.
    let out = cpis(&db, &["audit", "checkpoint"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit key"));
    let out = cpis_with_key(&db, Some(&key), &["audit", "checkpoint"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checkpoint 1 signed the chain up to entry"), "{stderr}");
    assert!(!stderr.contains(&key), "the key is never printed");
    let mut conn = db.conn();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_checkpoints"), 1);

    let out = cpis_with_key(&db, Some(&key), &["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 checkpoints checked"), "{stderr}");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_verifications WHERE intact AND checkpoints = 1"), 1);

    // Another key cannot vouch for it: exit 1, naming the checkpoint.
    let out = cpis_with_key(&db, Some(&other), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(checkpoint 1)") && stderr.contains("another key"), "{stderr}");
}
