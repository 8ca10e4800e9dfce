//! `cpis seed --demo`: a synthetic population in the 999 test range (never issued NHS numbers),
//! named fixtures for every rule a tester wants to see, and one demo account per persona of
//! domain.md. Dates are relative to the day of seeding. Running it twice changes nothing: the
//! whole set is written in one transaction, and a second run finds it there and stops.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::audit::{self, Actor, Event};
use crate::auth::password;
use crate::domain::access_history::first_access_flags;
use crate::domain::dates::{anniversary, uk_date};
use crate::domain::nhs_number;
use crate::domain::roles::{B0107, B0264, CPX01, CPX02, CPX03};
use crate::pds::patient::{self, Gender, NewPatient};
use crate::schema::{access_events, cp_items, local_authorities, role_profile_activities, role_profiles, users};

/// The password of every demo account (listed in README.md). Demo only.
pub const DEMO_PASSWORD: &str = "demo-passphrase-2026";
pub const POPULATION: usize = 20_000;

/// A demo persona (domain.md, "The people and what they do").
pub struct Persona {
    pub username: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub telephone: &'static str,
    /// (organisation: NHS ODS code or LA code, job role, activity codes)
    pub profiles: &'static [(&'static str, &'static str, &'static [&'static str])],
}

pub const PERSONAS: &[Persona] = &[
    Persona {
        username: "amy.patel",
        name: "Dr Amy Patel",
        email: "amy.patel@nhs.example.org",
        telephone: "020 7946 0101",
        profiles: &[("RJZ", "R8000", &[B0264, B0107])],
    },
    Persona {
        username: "sam.okafor",
        name: "Sam Okafor",
        email: "sam.okafor@nhs.example.org",
        telephone: "020 7946 0102",
        profiles: &[("RRU", "R1070", &[B0264, B0107])],
    },
    Persona {
        username: "grace.hughes",
        name: "Grace Hughes",
        email: "grace.hughes@nhs.example.org",
        telephone: "020 7946 0103",
        profiles: &[("RJZ", "R0680", &[B0264, B0107])],
    },
    Persona {
        username: "lee.carter",
        name: "Lee Carter",
        email: "lee.carter@nhs.example.org",
        telephone: "020 7946 0104",
        profiles: &[("RJZ", "R8009", &[B0264])],
    },
    Persona {
        username: "nadia.khan",
        name: "Dr Nadia Khan",
        email: "nadia.khan@nhs.example.org",
        telephone: "020 7946 0105",
        profiles: &[("RR8", "R8000", &[B0264, B0107]), ("RRK", "R8008", &[B0264])],
    },
    Persona {
        username: "ravi.shah",
        name: "Ravi Shah",
        email: "ravi.shah@nhs.example.org",
        telephone: "020 7946 0106",
        profiles: &[("RJZ", "R5080", &[CPX01])],
    },
    Persona {
        username: "helen.ward",
        name: "Helen Ward",
        email: "helen.ward@nhs.example.org",
        telephone: "020 7946 0107",
        profiles: &[("RJZ", "R0001", &[CPX02])],
    },
    Persona {
        username: "owen.price",
        name: "Dr Owen Price",
        email: "owen.price@nhs.example.org",
        telephone: "020 7946 0108",
        profiles: &[("RJZ", "R5105", &[CPX02])],
    },
    Persona {
        username: "kent.social",
        name: "Priya Das",
        email: "priya.das@kent.example.org",
        telephone: "01632 960110",
        profiles: &[("E10000016", "R9000", &[CPX03])],
    },
];

pub const KENT: &str = "E10000016";
pub const MANCHESTER: &str = "E08000003";
pub const LEEDS: &str = "E08000035";
pub const BIRMINGHAM: &str = "E08000025";

/// The named fixtures, by NHS number (README.md lists them).
pub mod fixtures {
    /// 17-year-old mother with her own CPP and an unborn plan (Kent).
    pub const AMELIA_HART: &str = "9990000018";
    /// Superseded by OLIVER_BENNETT; Kent still holds a CPP under this old number.
    pub const OLIVER_OLD_NUMBER: &str = "9990000026";
    pub const OLIVER_BENNETT: &str = "9990000034";
    /// CPP from Kent and LAC from Manchester; 30 earlier accesses (the 25 cap).
    pub const MIA_THOMPSON: &str = "9990000042";
    /// CPP and LAC from Leeds.
    pub const NOAH_WILLIAMS: &str = "9990000050";
    /// Adult mother with an unborn plan only (Birmingham): midwives see it, nobody else does.
    pub const SARAH_COLLINS: &str = "9990000069";
    /// CPP ended 300 days ago: still shown.
    pub const JACK_ROBINSON: &str = "9990000077";
    /// CPP ended 400 days ago: no longer retrievable, so no tab.
    pub const ELLA_WRIGHT: &str = "9990000085";
    /// CPP whose delete date has passed, and an item replaced by a later upload: no tab.
    pub const HARRY_GREEN: &str = "9990000093";
    /// Restricted (S-flag) record: address and GP never shown.
    pub const AVA_HALL: &str = "9990000107";
    /// Invalidated number: not found.
    pub const LEO_BAKER: &str = "9990000115";
    /// 18 years and 200 days old with a CPP left open: ended on the 18th birthday, still shown.
    pub const CHLOE_EVANS: &str = "9990000123";
    /// A child with no information: no tab.
    pub const ALFIE_MOORE: &str = "9990000131";
    /// The PDS sandbox's patients.
    pub const JANE_SMITH: &str = "9000000009";
    pub const JANET_SMYTHE: &str = "9000000025";
}

/// Girls' given names (also drawn on, first, by the national benchmark's dataset).
pub const GIVEN_F: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Freya",
    "Willow",
    "Evie",
    "Poppy",
    "Ella",
    "Charlotte",
    "Emily",
    "Ruby",
    "Sienna",
    "Hannah",
    "Zara",
];
/// Boys' given names (also drawn on, first, by the national benchmark's dataset).
pub const GIVEN_M: &[&str] = &[
    "Muhammad", "Noah", "Oliver", "George", "Leo", "Arthur", "Oscar", "Harry", "Theodore", "Jack", "Charlie",
    "Freddie", "Alfie", "Jacob", "Thomas", "Henry", "Archie", "Ethan", "Isaac", "Joshua", "Reuben",
];
/// A hundred common family names (also drawn on by the national
/// benchmark's dataset).
pub const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Thomas",
    "Clarke",
    "Jackson",
    "Wood",
    "Harris",
    "Edwards",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Hughes",
    "Moore",
    "Clark",
    "King",
    "Harrison",
    "Lewis",
    "Baker",
    "Lee",
    "Allen",
    "Morris",
    "Khan",
    "Scott",
    "Watson",
    "Davis",
    "Parker",
    "James",
    "Bennett",
    "Young",
    "Phillips",
    "Richardson",
    "Mitchell",
    "Bailey",
    "Carter",
    "Cook",
    "Singh",
    "Shaw",
    "Bell",
    "Collins",
    "Morgan",
    "Kelly",
    "Begum",
    "Miller",
    "Cox",
    "Hussain",
    "Marshall",
    "Simpson",
    "Price",
    "Anderson",
    "Adams",
    "Wilkinson",
    "Ali",
    "Ahmed",
    "Foster",
    "Ellis",
    "Murphy",
    "Chapman",
    "Mason",
    "Gray",
    "Richards",
    "Webb",
    "Griffiths",
    "Hunt",
    "Palmer",
    "Campbell",
    "Holmes",
    "Mills",
    "Rogers",
    "Barnes",
    "Knight",
    "Matthews",
    "Barker",
    "Powell",
    "Stevens",
    "Kaur",
    "Fisher",
    "Butler",
    "Dixon",
    "Russell",
    "Harvey",
    "Pearson",
    "Smyth",
];
const POSTCODE_AREAS: &[&str] = &["LS", "M", "B", "SE", "N", "E", "CT", "ME", "TN", "BS", "L", "NE", "S", "NG", "LE"];
const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Park Avenue",
    "Mill Road",
    "Victoria Street",
    "Green Lane",
    "Manor Road",
    "Queens Road",
    "Kings Road",
];

/// The valid NHS numbers of the 999 test range, in order from 999 000 001x.
pub fn test_numbers() -> impl Iterator<Item = String> {
    (999_000_001u64..=999_999_999).filter_map(|stem| {
        let nine = stem.to_string();
        nhs_number::check_digit(&nine).map(|check| format!("{nine}{check}"))
    })
}

/// The `n`th valid NHS number of the test range.
pub fn test_number(n: usize) -> String {
    test_numbers().nth(n).expect("the test range holds millions of numbers")
}

/// A summary of what was loaded.
pub type Summary = String;

pub fn load(conn: &mut PgConnection, now: DateTime<Utc>) -> anyhow::Result<Summary> {
    let already: bool =
        diesel::select(diesel::dsl::exists(users::table.filter(users::username.eq(PERSONAS[0].username))))
            .get_result(conn)?;
    if already {
        return Ok("already loaded; nothing changed".into());
    }
    let today = uk_date(now);
    let patients = population(today);
    let hashed = password::hash(DEMO_PASSWORD);
    conn.transaction(|conn| {
        patient::insert_missing(conn, &patients)?;
        let user_ids = personas(conn, &hashed)?;
        let (items, changes) = items(conn, today)?;
        // CP-IS075: what was held, and when, is read from the audit trail; the seeded items are
        // recorded there as if each child's information had arrived from its LA now.
        audit::record_many(conn, changes)?;
        let accesses = accesses(conn, now)?;
        la_contacts(conn, now)?;
        audit::record(
            conn,
            Event::new(Actor::Operator, "seed.demo_loaded").details(serde_json::json!({
                "patients": patients.len(), "users": user_ids.len(), "items": items, "access_events": accesses
            })),
        )?;
        Ok(format!(
            "{} patients, {} demo accounts, {} child protection items, {} access events",
            patients.len(),
            user_ids.len(),
            items,
            accesses
        ))
    })
}

fn years_ago(today: NaiveDate, years: i32, extra_days: i64) -> NaiveDate {
    anniversary(today, -years) - TimeDelta::days(extra_days)
}

fn with_address(mut p: NewPatient, postcode: &str, address: &str) -> NewPatient {
    p.postcode = Some(postcode.replace(' ', ""));
    p.address = Some(address.into());
    p.gp_ods = Some("Y01234".into());
    p
}

fn named(today: NaiveDate) -> Vec<NewPatient> {
    use fixtures::*;
    let mut v = vec![
        with_address(
            NewPatient::new(AMELIA_HART, "Amelia", "Hart", Gender::Female, years_ago(today, 17, 40)),
            "CT1 2AB",
            "4 Castle Row, Canterbury",
        ),
        with_address(
            NewPatient::new(OLIVER_BENNETT, "Oliver", "Bennett", Gender::Male, years_ago(today, 8, 10)),
            "ME14 1XX",
            "12 Tonbridge Road, Maidstone",
        ),
        with_address(
            NewPatient::new(MIA_THOMPSON, "Mia", "Thompson", Gender::Female, years_ago(today, 6, 100)),
            "M13 9WL",
            "7 Oxford Road, Manchester",
        ),
        with_address(
            NewPatient::new(NOAH_WILLIAMS, "Noah", "Williams", Gender::Male, years_ago(today, 12, 5)),
            "LS9 7TF",
            "22 Beckett Street, Leeds",
        ),
        with_address(
            NewPatient::new(SARAH_COLLINS, "Sarah", "Collins", Gender::Female, years_ago(today, 29, 60)),
            "B15 2GW",
            "3 Mindelsohn Way, Birmingham",
        ),
        with_address(
            NewPatient::new(JACK_ROBINSON, "Jack", "Robinson", Gender::Male, years_ago(today, 10, 20)),
            "CT9 4AN",
            "9 Ramsgate Road, Margate",
        ),
        with_address(
            NewPatient::new(ELLA_WRIGHT, "Ella", "Wright", Gender::Female, years_ago(today, 9, 30)),
            "TN24 0LZ",
            "1 Kennington Road, Ashford",
        ),
        with_address(
            NewPatient::new(HARRY_GREEN, "Harry", "Green", Gender::Male, years_ago(today, 7, 3)),
            "LS1 4AP",
            "15 Park Row, Leeds",
        ),
        with_address(
            NewPatient::new(AVA_HALL, "Ava", "Hall", Gender::Female, years_ago(today, 15, 77)),
            "SE5 9RS",
            "Withheld",
        ),
        NewPatient::new(LEO_BAKER, "Leo", "Baker", Gender::Male, years_ago(today, 5, 12)),
        with_address(
            NewPatient::new(CHLOE_EVANS, "Chloe", "Evans", Gender::Female, years_ago(today, 18, 200)),
            "M1 1AE",
            "30 Portland Street, Manchester",
        ),
        with_address(
            NewPatient::new(ALFIE_MOORE, "Alfie", "Moore", Gender::Male, years_ago(today, 4, 50)),
            "B1 1BB",
            "8 Broad Street, Birmingham",
        ),
        with_address(
            NewPatient::new(
                JANE_SMITH,
                "Jane",
                "Smith",
                Gender::Female,
                NaiveDate::from_ymd_opt(2010, 10, 22).expect("date"),
            ),
            "LS1 6AE",
            "1 Trevelyan Square, Boar Lane, Leeds",
        ),
        with_address(
            NewPatient::new(
                JANET_SMYTHE,
                "Janet",
                "Smythe",
                Gender::Female,
                NaiveDate::from_ymd_opt(2005, 11, 9).expect("date"),
            ),
            "LS1 6AE",
            "Withheld",
        ),
    ];
    v.push(NewPatient {
        superseded_by: Some(OLIVER_BENNETT.into()),
        ..NewPatient::new(OLIVER_OLD_NUMBER, "Oliver", "Bennett", Gender::Male, years_ago(today, 8, 10))
    });
    for p in v.iter_mut() {
        if p.nhs_number == AVA_HALL || p.nhs_number == JANET_SMYTHE {
            p.restricted = true;
        }
        if p.nhs_number == LEO_BAKER {
            p.invalidated = true;
        }
    }
    v
}

/// The named fixtures and a generated population of POPULATION patients in all.
pub fn population(today: NaiveDate) -> Vec<NewPatient> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x0C15_DE40);
    let mut out = named(today);
    let mut numbers = test_numbers().skip(100);
    while out.len() < POPULATION {
        let number = numbers.next().expect("the test range holds millions of numbers");
        let kind = rng.gen_range(0..100);
        let (gender, age) = match kind {
            0..=69 => (if rng.gen_bool(0.5) { Gender::Female } else { Gender::Male }, rng.gen_range(0..19)),
            70..=94 => (Gender::Female, rng.gen_range(16..45)),
            _ => (if rng.gen_bool(0.5) { Gender::Female } else { Gender::Male }, rng.gen_range(19..80)),
        };
        let given = if gender == Gender::Female { GIVEN_F } else { GIVEN_M };
        let birth = years_ago(today, age, rng.gen_range(0..365));
        let area = POSTCODE_AREAS[rng.gen_range(0..POSTCODE_AREAS.len())];
        let postcode = format!(
            "{area}{} {}{}{}",
            rng.gen_range(1..20),
            rng.gen_range(1..10),
            (b'A' + rng.gen_range(0..26u8)) as char,
            (b'A' + rng.gen_range(0..26u8)) as char
        );
        let address = format!("{} {}", rng.gen_range(1..200), STREETS[rng.gen_range(0..STREETS.len())]);
        let mut p = with_address(
            NewPatient::new(
                &number,
                given[rng.gen_range(0..given.len())],
                FAMILY[rng.gen_range(0..FAMILY.len())],
                gender,
                birth,
            ),
            &postcode,
            &address,
        );
        match rng.gen_range(0..200) {
            0 => p.restricted = true,
            1 => p.invalidated = true,
            _ => {}
        }
        out.push(p);
    }
    // A few superseded numbers, each pointing at the generated patient after it.
    let len = out.len();
    for i in (200..len - 1).step_by(997) {
        if !out[i].invalidated && !out[i + 1].invalidated {
            let target = out[i + 1].nhs_number.clone();
            out[i].superseded_by = Some(target);
            out[i].restricted = false;
        }
    }
    out
}

fn personas(conn: &mut PgConnection, hashed: &str) -> QueryResult<Vec<i64>> {
    let mut ids = Vec::new();
    for p in PERSONAS {
        let id: i64 = diesel::insert_into(users::table)
            .values((
                users::username.eq(p.username),
                users::display_name.eq(p.name),
                users::email.eq(p.email),
                users::telephone.eq(p.telephone),
                users::password_hash.eq(hashed),
            ))
            .returning(users::id)
            .get_result(conn)?;
        for (org, role, activities) in p.profiles {
            let la = org.starts_with('E') && org.len() == 9;
            let rp: i64 = diesel::insert_into(role_profiles::table)
                .values((
                    role_profiles::user_id.eq(id),
                    role_profiles::nhs_org_code.eq((!la).then_some(*org)),
                    role_profiles::la_code.eq(la.then_some(*org)),
                    role_profiles::job_role_code.eq(role),
                ))
                .returning(role_profiles::id)
                .get_result(conn)?;
            for a in *activities {
                diesel::insert_into(role_profile_activities::table)
                    .values((
                        role_profile_activities::role_profile_id.eq(rp),
                        role_profile_activities::activity_code.eq(a),
                    ))
                    .execute(conn)?;
            }
        }
        ids.push(id);
    }
    Ok(ids)
}

struct Item<'a> {
    nhs: &'a str,
    la: &'a str,
    kind: &'a str,
    child_id: String,
    start: NaiveDate,
    end: Option<NaiveDate>,
    delete: Option<NaiveDate>,
    replaced: bool,
}

fn item<'a>(nhs: &'a str, la: &'a str, kind: &'a str, start: NaiveDate, end: Option<NaiveDate>) -> Item<'a> {
    Item { nhs, la, kind, child_id: format!("{}-{}", &la[5..], &nhs[6..]), start, end, delete: None, replaced: false }
}

/// The audit's form of an item, as uploads record it (src/cpis/upload.rs).
fn audit_item(i: &Item) -> serde_json::Value {
    serde_json::json!({
        "type": i.kind, "la_child_id": i.child_id, "start": i.start, "end": i.end, "delete": i.delete
    })
}

/// One `cp.record_replaced` entry per child and LA, in the order first seeded: nothing before, the
/// child's items after (as an upload with no upload id, by the operator who loaded the data). An
/// item seeded as replaced by a later upload is held by a first entry and left out by a second.
fn seeded_changes(list: &[Item]) -> Vec<Event> {
    let mut groups: Vec<((&str, &str), Vec<&Item>)> = Vec::new();
    for i in list {
        match groups.iter_mut().find(|(k, _)| *k == (i.nhs, i.la)) {
            Some((_, items)) => items.push(i),
            None => groups.push(((i.nhs, i.la), vec![i])),
        }
    }
    let entry = |nhs: &str, la: &str, before: Vec<serde_json::Value>, after: Vec<serde_json::Value>| {
        Event::new(Actor::Operator, "cp.record_replaced").about(nhs).details(serde_json::json!({
            "la_code": la, "upload_id": null, "source": "demo seed", "before": before, "after": after,
        }))
    };
    let mut events = Vec::new();
    for ((nhs, la), items) in groups {
        let all: Vec<serde_json::Value> = items.iter().map(|i| audit_item(i)).collect();
        let kept: Vec<serde_json::Value> = items.iter().filter(|i| !i.replaced).map(|i| audit_item(i)).collect();
        if kept.len() == all.len() {
            events.push(entry(nhs, la, vec![], all));
        } else {
            events.push(entry(nhs, la, vec![], all.clone()));
            events.push(entry(nhs, la, all, kept));
        }
    }
    events
}

fn items(conn: &mut PgConnection, today: NaiveDate) -> QueryResult<(usize, Vec<Event>)> {
    use fixtures::*;
    let d = |days: i64| today + TimeDelta::days(days);
    let mut list = vec![
        item(AMELIA_HART, KENT, "CPP", d(-200), None),
        item(AMELIA_HART, KENT, "UCPP", d(-60), Some(d(90))),
        item(OLIVER_OLD_NUMBER, KENT, "CPP", d(-150), None),
        item(MIA_THOMPSON, KENT, "CPP", d(-400), None),
        item(MIA_THOMPSON, MANCHESTER, "LAC", d(-90), None),
        item(NOAH_WILLIAMS, LEEDS, "CPP", d(-500), None),
        item(NOAH_WILLIAMS, LEEDS, "LAC", d(-120), None),
        item(SARAH_COLLINS, BIRMINGHAM, "UCPP", d(-100), Some(d(60))),
        item(JACK_ROBINSON, KENT, "CPP", d(-700), Some(d(-300))),
        item(ELLA_WRIGHT, KENT, "CPP", d(-900), Some(d(-400))),
        Item { delete: Some(d(-10)), ..item(HARRY_GREEN, LEEDS, "CPP", d(-300), None) },
        Item { replaced: true, ..item(HARRY_GREEN, LEEDS, "LAC", d(-250), None) },
        item(CHLOE_EVANS, MANCHESTER, "CPP", d(-1000), None),
        item(JANE_SMITH, LEEDS, "CPP", d(-30), None),
    ];
    // The generated population: about one child in eight has information, across many LAs.
    let las: Vec<String> =
        local_authorities::table.select(local_authorities::code).order(local_authorities::code).load(conn)?;
    let generated = population(today);
    let mut rng = ChaCha8Rng::seed_from_u64(0x17E45);
    for p in generated.iter().skip(15) {
        if p.restricted || p.invalidated || p.superseded_by.is_some() || !rng.gen_ratio(1, 8) {
            continue;
        }
        let age = crate::domain::dates::age_in_years(p.birth_date, today);
        let la = las[rng.gen_range(0..las.len())].as_str();
        let start = d(-rng.gen_range(10..900)).max(p.birth_date);
        if age < 18 {
            let kind = if rng.gen_bool(0.45) { "CPP" } else { "LAC" };
            let end = rng.gen_ratio(1, 5).then(|| (start + TimeDelta::days(rng.gen_range(30..400))).min(today));
            list.push(item(&p.nhs_number, la, kind, start, end));
        } else if p.gender == "female" && (18..40).contains(&age) && rng.gen_ratio(1, 6) {
            list.push(item(&p.nhs_number, la, "UCPP", d(-rng.gen_range(10..200)), Some(d(rng.gen_range(1..200)))));
        }
    }
    let mut n = 0;
    for i in &list {
        n += diesel::insert_into(cp_items::table)
            .values((
                cp_items::nhs_number.eq(i.nhs),
                cp_items::la_code.eq(i.la),
                cp_items::item_type.eq(i.kind),
                cp_items::la_child_id.eq(&i.child_id),
                cp_items::start_date.eq(i.start),
                cp_items::end_date.eq(i.end),
                cp_items::delete_date.eq(i.delete),
                cp_items::deleted_at.eq(i.replaced.then(Utc::now)),
                cp_items::deleted_reason.eq(i.replaced.then_some("replaced")),
            ))
            .execute(conn)?;
    }
    Ok((n, seeded_changes(&list)))
}

/// (NHS number, viewer id, viewer name, job role, organisation, when)
type SeedAccess = (String, String, String, &'static str, &'static str, DateTime<Utc>);

/// Thirty earlier accesses to Mia Thompson by thirty people (the history shows 25), and a few to
/// Noah Williams, one person twice within 24 hours (shown once).
fn accesses(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    use fixtures::*;
    let orgs = ["RJZ", "RRU", "RR8", "RRK", "R0A"];
    let roles = ["R8000", "R1070", "R8001", "R8003", "R0260"];
    let mut events: Vec<SeedAccess> = (0..30)
        .map(|i| {
            (
                MIA_THOMPSON.to_owned(),
                format!("00000000-0000-4000-8000-{:012}", i + 1),
                format!("{} {}", GIVEN_F[i % GIVEN_F.len()], FAMILY[(i * 7) % FAMILY.len()]),
                roles[i % roles.len()],
                orgs[i % orgs.len()],
                now - TimeDelta::hours(12 * (30 - i as i64)),
            )
        })
        .collect();
    for (h, who) in [(50, 1), (30, 2), (29, 2)] {
        events.push((
            NOAH_WILLIAMS.to_owned(),
            format!("00000000-0000-4000-9000-{who:012}"),
            format!("{} {}", GIVEN_M[who], FAMILY[who + 3]),
            "R8000",
            "RR8",
            now - TimeDelta::hours(h),
        ));
    }
    events.sort_by_key(|e| e.5);
    let keyed: Vec<((String, String), DateTime<Utc>)> =
        events.iter().map(|e| ((e.0.clone(), e.1.clone()), e.5)).collect();
    let shown = first_access_flags(&keyed);
    for (e, shown) in events.iter().zip(shown) {
        diesel::insert_into(access_events::table)
            .values((
                access_events::nhs_number.eq(&e.0),
                access_events::accessed_at.eq(e.5),
                access_events::viewer_id.eq(&e.1),
                access_events::viewer_name.eq(&e.2),
                access_events::job_role_code.eq(e.3),
                access_events::organisation_code.eq(e.4),
                access_events::channel.eq("SCRa"),
                access_events::shown.eq(shown),
            ))
            .execute(conn)?;
    }
    Ok(events.len())
}

/// Contact numbers for the LAs that hold demo information, as their first accepted file would
/// have set them (Ofcom's drama range), and a notification address under example.org for every LA.
fn la_contacts(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<()> {
    let holding: Vec<String> = cp_items::table.select(cp_items::la_code).distinct().load(conn)?;
    for (i, code) in holding.iter().enumerate() {
        let n = 100 + 2 * (i % 450);
        diesel::update(local_authorities::table.find(code))
            .set((
                local_authorities::emergency_phone.eq(format!("01632 960{n:03}")),
                local_authorities::office_hours_phone.eq(format!("01632 960{:03}", n + 1)),
                local_authorities::contacts_updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    diesel::sql_query(
        "UPDATE local_authorities SET notification_email = 'cpis-alerts-' || lower(code) || '@example.org' \
         WHERE notification_email IS NULL",
    )
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_numbers_are_valid_and_distinct_from_the_population() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let all = population(today);
        assert_eq!(all.len(), POPULATION);
        let mut numbers: Vec<&str> = all.iter().map(|p| p.nhs_number.as_str()).collect();
        assert!(numbers.iter().all(|n| nhs_number::is_valid(n)), "every number passes modulus 11");
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), POPULATION, "no number twice");
        assert_eq!(test_number(0), fixtures::AMELIA_HART);
    }

    #[test]
    fn seeded_items_are_recorded_as_each_child_and_la_s_first_record() {
        use crate::reports::held_on::{fold, Change};
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        let list = vec![
            item(fixtures::MIA_THOMPSON, KENT, "CPP", day(1), None),
            item(fixtures::MIA_THOMPSON, MANCHESTER, "LAC", day(2), None),
            Item { delete: Some(day(20)), ..item(fixtures::HARRY_GREEN, LEEDS, "CPP", day(3), None) },
            Item { replaced: true, ..item(fixtures::HARRY_GREEN, LEEDS, "LAC", day(4), None) },
        ];
        let events = seeded_changes(&list);
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().with_timezone(&Utc);
        let changes: Vec<Change> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Change {
                id: i as i64 + 1,
                at,
                actor: e.actor.to_string(),
                action: e.action.into(),
                details: e.details_value(),
            })
            .collect();
        let who: Vec<(&str, &str)> = events
            .iter()
            .zip(&changes)
            .map(|(e, c)| (e.nhs_number.as_deref().unwrap(), c.details["la_code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            who,
            vec![
                (fixtures::MIA_THOMPSON, KENT),
                (fixtures::MIA_THOMPSON, MANCHESTER),
                (fixtures::HARRY_GREEN, LEEDS),
                (fixtures::HARRY_GREEN, LEEDS),
            ]
        );
        assert!(events
            .iter()
            .zip(&changes)
            .all(|(e, c)| e.actor == Actor::Operator && c.details["upload_id"].is_null()));
        assert_eq!(changes[2].details["after"].as_array().unwrap().len(), 2);
        assert_eq!(changes[3].details["after"][0]["delete"], "2026-01-20");
        // The trail replays to what is stored: the replaced item is no longer held.
        let timeline = fold(&changes);
        assert!(timeline.unexplained.is_empty());
        let held: Vec<(&str, &str)> =
            timeline.current().map(|s| (s.la_code.as_str(), s.item.item_type.as_str())).collect();
        assert_eq!(held, vec![(MANCHESTER, "LAC"), (LEEDS, "CPP"), (KENT, "CPP")], "same moment: by LA code");
    }

    #[test]
    fn the_population_is_the_same_every_time() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(population(today), population(today));
    }
}
