//! The national-scale dataset, built once per generator version in a private database on the
//! bench cluster (a marker table says which version is there), and reused by later runs.
//!
//! What it holds, with the application's own derived columns:
//! - 1,000,000 PDS patients (plus the demo's 20,000) with the search keys the import stores
//!   (`normalise_name`, `soundex`: computed by the crate for each name, joined in SQL), synthetic
//!   numbers from the never-issued 999 range and, once that is used up, the 998 range;
//! - 100,000 children with information across all 152 LAs (CPP 37%, LAC 58%, both 5%; 12% ended
//!   within the last year) and 2,500 pregnant women with an unborn plan;
//! - 20,000 clinician accounts (B0264 + B0107 at the 242 trusts) and 30,000 FHIR end users;
//! - 5,000,000 access events over a year (about 410,000 a month; the UK day before the build holds
//!   100,000 of them, for the daily run), 70% on screens and 30% through the FHIR API, each with its
//!   `shown` flag (CP-IS047: lag over the same viewer and child) and its audit entry in the hash
//!   chain, computed with `cpis::audit::chain` exactly as the tab writes it;
//! - the demo personas (`cpis::seed::demo`), so the bench can sign in as helen.ward.

use std::time::Instant;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Date, Integer, Jsonb, Nullable, Text, Timestamptz};

use crate::common::exec;
use cpis::audit::chain;
use cpis::domain::dates::{uk_date, uk_day_bounds};
use cpis::domain::names::{normalise_name, soundex};

/// Bump when the dataset's shape changes: a database with another version is rebuilt. 2: the
/// clinicians' password hash at the service's argon2 parameters of 2026-11-24 (7 MiB, 5 passes);
/// at the former ones each sign-in would also rehash.
pub const GENERATOR_VERSION: i32 = 2;
pub const PATIENTS: i64 = 1_000_000;
pub const CHILDREN: i64 = 100_000;
pub const MOTHERS: i64 = 2_500;
pub const CLINICIANS: i64 = 20_000;
pub const FHIR_USERS: i64 = 30_000;
pub const EVENTS: i64 = 5_000_000;
pub const PEAK_DAY_EVENTS: i64 = 100_000;
/// Every clinician account's password (bench only).
pub const PASSWORD: &str = "bench-passphrase-2026";

#[derive(Debug, Clone, QueryableByName)]
pub struct Marker {
    #[diesel(sql_type = Integer)]
    pub version: i32,
    #[diesel(sql_type = Timestamptz)]
    pub built_at: DateTime<Utc>,
    #[diesel(sql_type = Date)]
    pub peak_day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub build_seconds: i64,
}

pub fn marker(conn: &mut PgConnection) -> Option<Marker> {
    diesel::sql_query("SELECT version, built_at, peak_day, build_seconds FROM bench_dataset")
        .get_result(conn)
        .ok()
        .filter(|m: &Marker| m.version == GENERATOR_VERSION)
}

fn step(what: &str, started: Instant) {
    eprintln!("  dataset: {what} ({:.0} s)", started.elapsed().as_secs_f64());
}

/// The demo population's family names.
const COMMON_FAMILY: &[&str] = cpis::seed::demo::FAMILY;
const SYLLABLES_A: &[&str] = &[
    "Ash", "Brad", "Cart", "Dun", "Elm", "Fair", "Gold", "Hart", "Ing", "Kirk", "Lang", "Mar", "North", "Oak", "Pen",
    "Rad", "Stan", "Thorn", "Wal", "Whit", "Black", "Brook", "Crans", "Farn", "Hol", "Lock", "Mill", "Red", "Rush",
    "West",
];
const SYLLABLES_B: &[&str] = &[
    "ley", "ton", "field", "wood", "ford", "well", "by", "ham", "worth", "bridge", "more", "dale", "stead", "ridge",
    "cott", "hurst", "wick", "combe", "land", "shaw", "gate", "lowe", "brook", "mere", "ington", "ell", "sby",
    "thwaite", "hope", "den",
];
/// Given names beyond the demo's (`cpis::seed::demo::GIVEN_F` and `GIVEN_M` come first).
const MORE_GIVEN_F: &[&str] = &[
    "Aisha", "Maya", "Sophie", "Jessica", "Chloe", "Lucy", "Holly", "Megan", "Amber", "Laura", "Sarah", "Emma",
    "Rebecca", "Katie", "Jade", "Leah", "Nadia", "Priya", "Fatima", "Maryam", "Alice", "Florence", "Matilda", "Elsie",
    "Phoebe", "Harriet", "Imogen", "Esme",
];
const MORE_GIVEN_M: &[&str] = &[
    "Daniel", "James", "William", "Samuel", "Joseph", "Lucas", "Adam", "Ryan", "Liam", "Mason", "Logan", "Dylan",
    "Tyler", "Kai", "Ali", "Omar", "Yusuf", "Ibrahim", "Aaron", "Ben", "Callum", "Connor", "Jamie", "Lewis", "Luke",
    "Max", "Owen", "Sam", "Toby",
];

/// Given names: the demo's first, then the bench's further ones.
fn given_names(common: &[&str], more: &[&str]) -> Vec<String> {
    common.iter().chain(more).map(|s| s.to_string()).collect()
}

/// Family names: the common ones first (the search picks them most often), then made-up rarer ones.
fn family_names() -> Vec<String> {
    let mut v: Vec<String> = COMMON_FAMILY.iter().map(|s| s.to_string()).collect();
    for a in SYLLABLES_A {
        for b in SYLLABLES_B {
            v.push(format!("{a}{b}"));
        }
    }
    v
}

/// A names table: (index, name, key, soundex) with the keys computed by the crate.
fn names_table(conn: &mut PgConnection, table: &str, names: &[String]) {
    exec(conn, &format!("CREATE TEMP TABLE {table} (i int PRIMARY KEY, name text, key text, sx text)"));
    let idx: Vec<i32> = (0..names.len() as i32).collect();
    let keys: Vec<String> = names.iter().map(|n| normalise_name(n)).collect();
    let sx: Vec<String> = names.iter().map(|n| soundex(n)).collect();
    diesel::sql_query(format!(
        "INSERT INTO {table} SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[])"
    ))
    .bind::<Array<Integer>, _>(&idx)
    .bind::<Array<Text>, _>(names)
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Text>, _>(&sx)
    .execute(conn)
    .unwrap();
}

pub fn build(conn: &mut PgConnection, now: DateTime<Utc>) -> Marker {
    let started = Instant::now();
    cpis::db::migrate(conn).unwrap();
    cpis::seed::reference::load(conn).unwrap();
    exec(conn, "SET synchronous_commit = off");
    exec(conn, "SET work_mem = '256MB'");
    exec(conn, "SET maintenance_work_mem = '512MB'");
    let today = uk_date(now);
    let peak_day = today.pred_opt().unwrap();
    let (peak_start, peak_end) = uk_day_bounds(peak_day);

    // Names, with the keys the import derives.
    let families = family_names();
    names_table(conn, "bench_family", &families);
    let given_f = given_names(cpis::seed::demo::GIVEN_F, MORE_GIVEN_F);
    let given_m = given_names(cpis::seed::demo::GIVEN_M, MORE_GIVEN_M);
    names_table(conn, "bench_given_f", &given_f);
    names_table(conn, "bench_given_m", &given_m);

    // NHS numbers (modulus 11 in SQL; checked with the crate's function below), and per-patient
    // random draws.
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE bench_people AS \
             WITH n AS ( \
               SELECT s, (11 - (((s/100000000)%10*10 + (s/10000000)%10*9 + (s/1000000)%10*8 + (s/100000)%10*7 \
                 + (s/10000)%10*6 + (s/1000)%10*5 + (s/100)%10*4 + (s/10)%10*3 + (s%10)*2) % 11)) % 11 AS c \
               FROM generate_series(998000000::bigint, 999999999::bigint) s \
               WHERE s < 999000000 OR s >= 999100000 \
             ), v AS ( \
               SELECT row_number() OVER (ORDER BY s >= 999000000 DESC, s) AS i, s::text || c::text AS nhs \
               FROM n WHERE c < 10 \
             ) \
             SELECT i, nhs, random() AS kind, random() AS age, random() AS sex, random() AS g, random() AS f \
             FROM v WHERE i <= {PATIENTS}"
        ),
    );
    exec(conn, "CREATE UNIQUE INDEX ON bench_people (i)");
    let sample: Vec<Nhs> = diesel::sql_query("SELECT nhs FROM bench_people TABLESAMPLE SYSTEM (2)").load(conn).unwrap();
    assert!(sample.iter().all(|n| cpis::domain::nhs_number::is_valid(&n.nhs)), "valid NHS numbers");
    step("numbers", started);

    let nf = families.len();
    let (ngf, ngm) = (given_f.len(), given_m.len());
    // 25% children (0-17), 20% women of 16-45, 55% adults of 18-95.
    exec(
        conn,
        &format!(
            "INSERT INTO patients (nhs_number, given_name, family_name, gender, birth_date, death_date, postcode, \
               address, gp_ods, restricted, superseded_by, invalidated, family_key, given_key, family_soundex, \
               given_soundex) \
             SELECT p.nhs, g.name, fam.name, q.gender, q.birth, \
               CASE WHEN q.years > 75 AND p.i % 20 = 0 THEN current_date - (p.i % 300)::int END, \
               (ARRAY['LS','M','B','SE','N','E','CT','ME','TN','BS','L','NE','S','NG','LE'])[1 + p.i % 15] \
                 || (1 + (p.i / 15) % 19) || ((p.i / 300) % 10) || chr(65 + ((p.i / 3000) % 26)::int) \
                 || chr(65 + ((p.i / 78000) % 26)::int), \
               (1 + p.i % 199) || ' ' || (ARRAY['High Street','Station Road','Church Lane','Park Avenue', \
                 'Mill Road','Victoria Street','Green Lane','Manor Road','Queens Road','Kings Road'])[1 + (p.i / 7) % 10], \
               'Y' || lpad((p.i % 9000)::text, 5, '0'), \
               p.i % 200 = 3, NULL, p.i % 1000 = 7, fam.key, g.key, fam.sx, g.sx \
             FROM bench_people p \
             CROSS JOIN LATERAL ( \
               SELECT CASE WHEN p.kind < 0.25 THEN p.age * 18 \
                           WHEN p.kind < 0.45 THEN 16 + p.age * 29 \
                           ELSE 18 + p.age * 77 END AS years, \
                      CASE WHEN p.kind >= 0.25 AND p.kind < 0.45 THEN 'female' \
                           WHEN p.sex > 0.999 THEN 'unknown' \
                           WHEN p.sex < 0.5 THEN 'female' ELSE 'male' END AS gender \
             ) q0 \
             CROSS JOIN LATERAL (SELECT q0.years, q0.gender, \
               current_date - (q0.years * 365.25)::int - (p.i % 7)::int AS birth) q \
             JOIN bench_family fam ON fam.i = least({nf} - 1, floor({nf} * power(p.f, 2.2))::int) \
             JOIN LATERAL ( \
               SELECT name, key, sx FROM bench_given_f WHERE q.gender <> 'male' \
                 AND i = least({ngf} - 1, floor({ngf} * power(p.g, 1.6))::int) \
               UNION ALL \
               SELECT name, key, sx FROM bench_given_m WHERE q.gender = 'male' \
                 AND i = least({ngm} - 1, floor({ngm} * power(p.g, 1.6))::int) \
             ) g ON true"
        ),
    );
    // A few superseded numbers, each pointing at the next patient (as a merge would).
    exec(
        conn,
        "UPDATE patients p SET superseded_by = nxt.nhs, restricted = false \
         FROM bench_people a JOIN bench_people nxt ON nxt.i = a.i + 1 \
         WHERE p.nhs_number = a.nhs AND a.i % 500 = 11 AND nxt.i % 1000 <> 7",
    );
    step("1,000,000 patients", started);

    // Children with information and mothers with an unborn plan.
    exec(
        conn,
        "CREATE TEMP TABLE bench_las AS SELECT row_number() OVER (ORDER BY code) - 1 AS k, code \
         FROM local_authorities",
    );
    let las: i64 = count(conn, "SELECT count(*) AS n FROM bench_las");
    assert_eq!(las, 152, "the 152 local authorities");
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE bench_info AS \
             SELECT row_number() OVER () AS t, nhs_number AS nhs, birth_date, 'child' AS who, random() AS r \
             FROM (SELECT nhs_number, birth_date FROM patients \
                   WHERE birth_date > current_date - interval '17 years 6 months' \
                     AND superseded_by IS NULL AND NOT invalidated AND nhs_number >= '998' \
                   ORDER BY md5(nhs_number) LIMIT {CHILDREN}) c"
        ),
    );
    exec(
        conn,
        &format!(
            "INSERT INTO bench_info \
             SELECT {CHILDREN} + row_number() OVER (), nhs_number, birth_date, 'mother', random() \
             FROM (SELECT nhs_number, birth_date FROM patients \
                   WHERE gender = 'female' AND birth_date BETWEEN current_date - interval '42 years' \
                     AND current_date - interval '17 years' \
                     AND superseded_by IS NULL AND NOT invalidated AND nhs_number >= '998' \
                   ORDER BY md5(nhs_number || 'm') LIMIT {MOTHERS}) m"
        ),
    );
    exec(conn, "CREATE UNIQUE INDEX ON bench_info (t)");
    // LAs weighted (a few large counties, many small unitaries); start dates within the last years;
    // 12% ended within the last 330 days (still retrievable).
    exec(
        conn,
        "CREATE TEMP TABLE bench_items AS \
         SELECT i.t, i.nhs, i.birth_date, i.who, la.code AS la, \
           CASE WHEN i.who = 'mother' THEN 'UCPP' WHEN i.r < 0.37 THEN 'CPP' WHEN i.r < 0.95 THEN 'LAC' ELSE 'BOTH' END \
             AS kind, random() AS s, random() AS e \
         FROM bench_info i JOIN bench_las la ON la.k = least(151, floor(152 * power((hashint4(i.t::int)::bigint + 2147483648) \
           / 4294967296.0, 1.4))::int)",
    );
    exec(
        conn,
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date) \
         SELECT nhs, la, k.kind, 'B' || lpad(t::text, 7, '0'), st, \
           CASE WHEN k.kind = 'UCPP' THEN current_date + 1 + (e * 200)::int \
                WHEN e < 0.12 THEN greatest(st, current_date - (e / 0.12 * 330)::int) END \
         FROM bench_items b \
         CROSS JOIN LATERAL (SELECT unnest(CASE WHEN b.kind = 'BOTH' THEN ARRAY['CPP','LAC'] ELSE ARRAY[b.kind] END) \
           AS kind) k \
         CROSS JOIN LATERAL (SELECT greatest(b.birth_date, current_date - 10 - (s * CASE k.kind WHEN 'LAC' THEN 1500 \
           WHEN 'CPP' THEN 700 ELSE 200 END)::int) AS st) d",
    );
    exec(
        conn,
        "UPDATE local_authorities l SET emergency_phone = '01632 960' || lpad((100 + 2 * (b.k % 450))::text, 3, '0'), \
           office_hours_phone = '01632 960' || lpad((101 + 2 * (b.k % 450))::text, 3, '0'), \
           contacts_updated_at = now(), notification_email = 'cpis-alerts-' || lower(l.code) || '@example.org' \
         FROM bench_las b WHERE b.code = l.code",
    );
    step("child protection items", started);

    // Clinicians (accounts with one role profile each) and FHIR end users.
    let hash = cpis::auth::password::hash(PASSWORD);
    exec(conn, "CREATE TEMP TABLE bench_trusts AS SELECT row_number() OVER (ORDER BY ods_code) - 1 AS k, ods_code, name FROM nhs_organisations");
    let trusts = count(conn, "SELECT count(*) AS n FROM bench_trusts");
    diesel::sql_query(format!(
        "INSERT INTO users (username, display_name, email, telephone, password_hash) \
         SELECT 'clin' || lpad(i::text, 5, '0'), \
           (CASE WHEN i % 3 = 0 THEN 'Dr ' ELSE '' END) || (SELECT name FROM bench_given_f WHERE i = n.i % {ngf}) \
             || ' ' || (SELECT name FROM bench_family WHERE i = (n.i * 7) % {nf}), \
           'clin' || lpad(i::text, 5, '0') || '@nhs.example.org', '020 7946 ' || lpad((i % 10000)::text, 4, '0'), $1 \
         FROM generate_series(1, {CLINICIANS}) n(i)"
    ))
    .bind::<Text, _>(&hash)
    .execute(conn)
    .unwrap();
    exec(
        conn,
        &format!(
            "INSERT INTO role_profiles (user_id, nhs_org_code, job_role_code) \
             SELECT u.id, t.ods_code, (ARRAY['R8000','R8000','R8001','R8003','R1070','R0260','R0680'])[1 + u.id % 7] \
             FROM users u JOIN bench_trusts t ON t.k = (u.id * 31) % {trusts} WHERE u.username LIKE 'clin%'"
        ),
    );
    exec(
        conn,
        "INSERT INTO role_profile_activities (role_profile_id, activity_code) \
         SELECT rp.id, a FROM role_profiles rp JOIN users u ON u.id = rp.user_id, unnest(ARRAY['B0264','B0107']) a \
         WHERE u.username LIKE 'clin%'",
    );
    // Sixty trusts with an NHS system calling the FHIR API: their tokens name the audit's actor.
    let orgs: Vec<Ods> = diesel::sql_query("SELECT ods_code FROM bench_trusts ORDER BY k LIMIT 60").load(conn).unwrap();
    for o in &orgs {
        cpis::mailbox::tokens::issue_nhs(conn, cpis::audit::Actor::Operator, &o.ods_code, "bench dataset").unwrap();
    }
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE bench_viewers AS \
             SELECT (u.id - (SELECT min(id) FROM users WHERE username LIKE 'clin%'))::int AS v, u.sds_user_id::text AS viewer_id, \
               u.id AS user_id, u.display_name AS name, rp.job_role_code AS role, rp.nhs_org_code AS org, 'SCRa' AS channel, \
               NULL::bigint AS token_id \
             FROM users u JOIN role_profiles rp ON rp.user_id = u.id WHERE u.username LIKE 'clin%' \
             UNION ALL \
             SELECT {CLINICIANS} + k, '5' || lpad(k::text, 11, '0'), NULL, \
               (SELECT name FROM bench_given_m WHERE i = k % {ngm}) || ' ' || (SELECT name FROM bench_family WHERE i = (k * 13) % {nf}), \
               (ARRAY['R8000','R8001','R1070','R0680'])[1 + k % 4], t.ods_code, 'FHIR', t.id \
             FROM generate_series(0, {FHIR_USERS} - 1) k \
             JOIN LATERAL (SELECT id, ods_code FROM endpoint_tokens WHERE ods_code IS NOT NULL \
                           ORDER BY id OFFSET (k % 60) LIMIT 1) t ON true"
        ),
    );
    exec(conn, "CREATE UNIQUE INDEX ON bench_viewers (v)");
    step("accounts", started);

    // 5,000,000 access events: the year spread evenly, less the peak day, which gets 100,000.
    let year_start = now - TimeDelta::days(365);
    let peak_len = (peak_end - peak_start).num_seconds();
    let targets = CHILDREN + MOTHERS;
    diesel::sql_query(format!(
        "CREATE TEMP TABLE bench_events AS \
         SELECT CASE WHEN n <= {PEAK_DAY_EVENTS} THEN $2 + make_interval(secs => random() * {peak_len}) \
                     ELSE $1 + make_interval(secs => x.off + CASE WHEN $1 + make_interval(secs => x.off) >= $2 \
                       THEN {peak_len} ELSE 0 END) END AS at, \
                least({targets}, 1 + floor({targets} * power(random(), 2.0)))::bigint AS t, \
                CASE WHEN random() < 0.7 THEN floor(random() * {CLINICIANS}) \
                     ELSE {CLINICIANS} + floor(random() * {FHIR_USERS}) END::int AS v \
         FROM generate_series(1, {EVENTS}) n, LATERAL (SELECT random() * (365 * 86400 - {peak_len}) + 0 * n AS off) x"
    ))
    .bind::<Timestamptz, _>(year_start)
    .bind::<Timestamptz, _>(peak_start)
    .execute(conn)
    .unwrap();
    exec(
        conn,
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, user_id, viewer_name, job_role_code, \
           organisation_code, channel, shown) \
         SELECT i.nhs, e.at, w.viewer_id, w.user_id, w.name, w.role, w.org, w.channel, \
           coalesce(e.at - lag(e.at) OVER (PARTITION BY e.t, e.v ORDER BY e.at) >= interval '24 hours', true) \
         FROM bench_events e JOIN bench_info i ON i.t = e.t JOIN bench_viewers w ON w.v = e.v \
         ORDER BY e.at",
    );
    step("5,000,000 access events", started);

    // Their audit entries, chained in id order with the crate's own hash.
    audit_entries(conn);
    step("audit chain", started);

    cpis::seed::demo::load(conn, now).unwrap();
    exec(conn, "VACUUM ANALYZE");
    step("demo personas, vacuum", started);
    let secs = started.elapsed().as_secs() as i64;
    exec(conn, "CREATE TABLE bench_dataset (version int, built_at timestamptz, peak_day date, build_seconds bigint)");
    diesel::sql_query("INSERT INTO bench_dataset VALUES ($1, $2, $3, $4)")
        .bind::<Integer, _>(GENERATOR_VERSION)
        .bind::<Timestamptz, _>(now)
        .bind::<Date, _>(peak_day)
        .bind::<BigInt, _>(secs)
        .execute(conn)
        .unwrap();
    marker(conn).expect("the marker just written")
}

#[derive(QueryableByName)]
struct Nhs {
    #[diesel(sql_type = Text)]
    nhs: String,
}

#[derive(QueryableByName)]
struct Ods {
    #[diesel(sql_type = Text)]
    ods_code: String,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}

#[derive(QueryableByName)]
struct Ev {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Timestamptz)]
    accessed_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    token_id: Option<i64>,
    #[diesel(sql_type = Text)]
    job_role_code: String,
    #[diesel(sql_type = Text)]
    organisation_code: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Bool)]
    shown: bool,
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = Bytea)]
    hash: Vec<u8>,
}

/// One audit entry per access event, as `cpis::cpis::alert::record_openings` records it (action, actor,
/// details), chained after the current head in id order.
fn audit_entries(conn: &mut PgConnection) {
    let mut prev = diesel::sql_query("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .get_result::<Head>(conn)
        .optional()
        .unwrap()
        .map(|h| h.hash)
        .unwrap_or_else(|| chain::GENESIS.to_vec());
    // The NHS system (token) behind each FHIR end user's organisation.
    exec(
        conn,
        "CREATE TEMP TABLE bench_org_token AS SELECT DISTINCT ON (ods_code) ods_code AS org, id AS token_id \
         FROM endpoint_tokens WHERE ods_code IS NOT NULL ORDER BY ods_code, id",
    );
    let mut after = 0i64;
    loop {
        let rows: Vec<Ev> = diesel::sql_query(
            "SELECT e.id, e.nhs_number, e.accessed_at, e.user_id, t.token_id, e.job_role_code, e.organisation_code, \
               e.channel, e.shown \
             FROM access_events e LEFT JOIN bench_org_token t ON e.channel = 'FHIR' AND t.org = e.organisation_code \
             WHERE e.id > $1 ORDER BY e.id LIMIT 25000",
        )
        .bind::<BigInt, _>(after)
        .load(conn)
        .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.id;
        let n = rows.len();
        let (mut at, mut actors, mut numbers, mut details, mut prevs, mut hashes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            let actor = match (r.channel.as_str(), r.user_id, r.token_id) {
                ("SCRa", Some(u), _) => format!("user:{u}"),
                (_, _, Some(t)) => format!("nhs-system:{t}"),
                _ => "anonymous".to_owned(),
            };
            let occurred_at = chain::to_micros(r.accessed_at);
            let d = serde_json::json!({
                "access_event_id": r.id,
                "shown": r.shown,
                "job_role": r.job_role_code,
                "organisation": r.organisation_code,
                "channel": r.channel,
            });
            let fields = chain::EntryFields {
                occurred_at,
                actor: &actor,
                action: "access.alert_tab_opened",
                nhs_number: Some(&r.nhs_number),
                details: &d,
            };
            let hash = chain::entry_hash(&prev, &fields).to_vec();
            prevs.push(std::mem::replace(&mut prev, hash.clone()));
            hashes.push(hash);
            at.push(occurred_at);
            actors.push(actor);
            numbers.push(r.nhs_number);
            details.push(d);
        }
        diesel::sql_query(
            "INSERT INTO audit_log (occurred_at, actor, action, nhs_number, details, prev_hash, hash) \
             SELECT t, a, 'access.alert_tab_opened', n, d, p, h \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[], $6::bytea[]) \
             WITH ORDINALITY AS u(t, a, n, d, p, h, i) ORDER BY i",
        )
        .bind::<Array<Timestamptz>, _>(&at)
        .bind::<Array<Text>, _>(&actors)
        .bind::<Array<Text>, _>(&numbers)
        .bind::<Array<Jsonb>, _>(&details)
        .bind::<Array<Bytea>, _>(&prevs)
        .bind::<Array<Bytea>, _>(&hashes)
        .execute(conn)
        .unwrap();
    }
}
