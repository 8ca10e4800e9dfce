//! PDS-style search over HTTP (domain.md, "PDS emulation").

use cpis::seed::demo::fixtures::*;
use reqwest::StatusCode;

use crate::support::{Client, Template, TestApp};

async fn demographics(c: &Client, query: &str) -> (StatusCode, String) {
    let res = c.get(&format!("/search?by=demographics&{query}")).await;
    let status = res.status();
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn nhs_number_search_checks_modulus_11_before_any_look_up() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let res = c.get("/search?by=nhs&nhs_number=9990000019").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("This is not a valid NHS number"));
    let res = c.get("/search?by=nhs&nhs_number=99900").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("10 digits"));
    let res = c.get("/search?by=nhs&nhs_number=").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn nhs_number_search_accepts_spacing_and_opens_the_record() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let res = c.get("/search?by=nhs&nhs_number=999+000+0042").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], format!("/patients/{MIA_THOMPSON}"));
    // An invalidated number is not found; a superseded one leads to the current record.
    let page = c.text(&format!("/search?by=nhs&nhs_number={LEO_BAKER}")).await;
    assert!(page.contains("No patient matches"));
    let res = c.get(&format!("/search?by=nhs&nhs_number={OLIVER_OLD_NUMBER}")).await;
    assert_eq!(res.headers()["location"], format!("/patients/{OLIVER_BENNETT}?superseded={OLIVER_OLD_NUMBER}"));
}

#[tokio::test]
async fn demographic_search_finds_by_family_name_and_birth_date() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let (status, page) = demographics(&c, "family_name=smith&dob_day=22&dob_month=10&dob_year=2010").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Jane SMITH") && page.contains("900 000 0009"));
    assert!(page.contains("1.00"), "an exact match scores 1.0");
    // Smythe is not Smith, unless similar names are asked for.
    assert!(!page.contains("Janet SMYTHE"));
}

#[tokio::test]
async fn wildcards_need_three_letters_and_match_prefixes() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let (status, page) = demographics(&c, "family_name=Sm*&dob_day=22&dob_month=10&dob_year=2010").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("at least 3 letters"));
    let (status, page) = demographics(&c, "family_name=Smi*&dob_day=22&dob_month=10&dob_year=2010").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Jane SMITH") && page.contains("0.90"));
}

#[tokio::test]
async fn similar_names_find_sound_alikes_and_swapped_names() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    // Smyth sounds like Smith.
    let (_, page) = demographics(&c, "family_name=Smyth&dob_day=22&dob_month=10&dob_year=2010&similar=true").await;
    assert!(page.contains("Jane SMITH"), "Soundex match");
    // Given and family names typed the wrong way round.
    let (_, page) =
        demographics(&c, "family_name=Jane&given_name=Smith&dob_day=22&dob_month=10&dob_year=2010&similar=true").await;
    assert!(page.contains("Jane SMITH"), "swapped names");
}

#[tokio::test]
async fn a_postcode_search_never_returns_restricted_patients() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    // Janet Smythe (restricted) shares Jane Smith's postcode.
    let (_, page) = demographics(&c, "family_name=Smythe&dob_day=9&dob_month=11&dob_year=2005").await;
    assert!(page.contains("Janet SMYTHE"), "found without a postcode");
    assert!(!page.contains("LS1 6AE"), "but her postcode is not shown");
    let (_, page) = demographics(&c, "family_name=Smythe&dob_day=9&dob_month=11&dob_year=2005&postcode=LS1+6AE").await;
    assert!(!page.contains("Janet SMYTHE"));
    assert!(page.contains("No patient matches"));
}

#[tokio::test]
async fn too_many_matches_asks_for_more_detail() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    // Harris, Harrison and Harvey born in five years: over a hundred in the demo population.
    let (status, page) = demographics(
        &c,
        "family_name=Har*&dob_day=1&dob_month=1&dob_year=2010&dob_to_day=31&dob_to_month=12&dob_to_year=2014",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Too many matches"));
    assert!(!page.contains("<table"), "no list when there are too many");
}

#[tokio::test]
async fn bad_demographic_input_gets_field_errors_not_a_failure() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    for query in [
        "family_name=&dob_day=&dob_month=&dob_year=",
        "family_name=Smith&dob_day=31&dob_month=2&dob_year=2010",
        "family_name=Smith&dob_day=1&dob_month=1&dob_year=2999",
        "family_name=Smith&dob_day=x&dob_month=y&dob_year=z",
        "family_name=Smith&dob_day=1&dob_month=1&dob_year=2010&postcode=%3Cscript%3E",
        "family_name=Smith&dob_day=1&dob_month=1&dob_year=2010&gender=robot",
        "family_name=S*m*&dob_day=1&dob_month=1&dob_year=2010",
    ] {
        let (status, page) = demographics(&c, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.contains("There is a problem"), "{query}");
        assert!(!page.contains("<script>"), "input is escaped");
    }
    let long = "a".repeat(5000);
    let (status, _) = demographics(&c, &format!("family_name={long}&dob_day=1&dob_month=1&dob_year=2010")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_nul_character_in_any_search_is_a_clear_400() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    for path in [
        "/search?by=demographics&family_name=Smi%00th&dob_day=22&dob_month=10&dob_year=2010",
        "/local-authorities?q=Ke%00nt",
    ] {
        let res = c.get(path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(res.text().await.unwrap().contains("not allowed"), "{path}");
    }
}

/// The demographic search (hand-written, prepared statements) finds exactly what the former
/// diesel query with `LIKE` patterns found, for every kind of search: exact and wildcard names,
/// with and without similar names, a given name, a gender and a postcode, over names chosen to sit
/// at the edges of a key range (a prefix of another name, accents, apostrophes, `%` and `_`).
#[test]
fn the_demographic_search_finds_what_a_like_query_finds() {
    use chrono::NaiveDate;
    use cpis::domain::names::{normalise_postcode, soundex};
    use cpis::pds::patient::{self, Gender, NewPatient, Patient};
    use cpis::pds::search::{self, DemographicQuery, NamePattern, SearchOutcome};
    use cpis::schema::patients;
    use diesel::prelude::*;

    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let born = NaiveDate::from_ymd_opt(2016, 5, 4).unwrap();
    let names = [
        ("Ann", "Smith"),
        ("Anna", "Smithson"),
        ("Smith", "Ann"),
        ("Zoë", "Smit"),
        ("Joe", "Smi_th"),
        ("Joe", "Smi%th"),
        ("Ann", "O'Neill"),
        ("Ann", "Smyth"),
        ("Annie", "Smíth"),
        ("Ann", "Smith Jones"),
    ];
    let rows: Vec<NewPatient> = names
        .iter()
        .enumerate()
        .map(|(i, (given, family))| {
            let number = (0..100)
                .find_map(|k| {
                    let nine = format!("8123{i:02}{k:03}");
                    cpis::domain::nhs_number::check_digit(&nine).map(|d| format!("{nine}{d}"))
                })
                .unwrap();
            let mut p =
                NewPatient::new(&number, given, family, if i % 2 == 0 { Gender::Female } else { Gender::Male }, born);
            p.postcode = Some(if i % 3 == 0 { "LS16AE" } else { "M11AA" }.to_owned());
            p.restricted = i == 3;
            p
        })
        .collect();
    patient::upsert(&mut conn, &rows).unwrap();

    // The former query, as it was written with diesel's DSL.
    let like_query = |conn: &mut PgConnection, q: &DemographicQuery| -> Vec<Patient> {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let like = |p: &NamePattern| match p {
            NamePattern::Exact(s) => escape(s),
            NamePattern::Prefix(s) => format!("{}%", escape(s)),
        };
        let stem = |p: &NamePattern| match p {
            NamePattern::Exact(s) | NamePattern::Prefix(s) => s.clone(),
        };
        let mut query = patients::table
            .select(Patient::as_select())
            .filter(patients::superseded_by.is_null())
            .filter(patients::invalidated.eq(false))
            .filter(patients::birth_date.between(q.birth_from, q.birth_to))
            .into_boxed();
        let family = like(&q.family);
        query = if q.similar {
            query.filter(
                patients::family_key
                    .like(family.clone())
                    .or(patients::family_soundex.eq(soundex(&stem(&q.family))))
                    .or(patients::given_key.like(family)),
            )
        } else {
            query.filter(patients::family_key.like(family))
        };
        if let Some(g) = &q.given {
            let given = like(g);
            query = if q.similar {
                query.filter(
                    patients::given_key
                        .like(given.clone())
                        .or(patients::given_soundex.eq(soundex(&stem(g))))
                        .or(patients::family_key.like(given)),
                )
            } else {
                query.filter(patients::given_key.like(given))
            };
        }
        if let Some(g) = q.gender {
            query = query.filter(patients::gender.eq(g.code()));
        }
        if let Some(pc) = &q.postcode {
            query = query.filter(patients::postcode.eq(pc)).filter(patients::restricted.eq(false));
        }
        let mut found: Vec<Patient> = query.load(conn).unwrap();
        found.sort_by(|a, b| a.nhs_number.cmp(&b.nhs_number));
        found
    };

    let families = ["smith", "smi*", "smit", "smith*", "smi_th", "smi%th", "o'neill", "smí*", "ann", "nobody"];
    let givens = [None, Some("ann"), Some("ann*"), Some("smith")];
    let mut searches = 0;
    let mut found_any = 0;
    for family in families {
        for given in givens {
            for similar in [false, true] {
                for (gender, postcode) in [(None, None), (Some(Gender::Female), None), (None, Some("ls1 6ae"))] {
                    let q = DemographicQuery {
                        family: NamePattern::parse(family, "family_name").unwrap().unwrap(),
                        given: given.map(|g| NamePattern::parse(g, "given_name").unwrap().unwrap()),
                        birth_from: born,
                        birth_to: born,
                        gender,
                        postcode: postcode.map(normalise_postcode),
                        similar,
                    };
                    let SearchOutcome::Matches(matches) = search::search(&mut conn, &q).unwrap() else {
                        panic!("too many for {q:?}")
                    };
                    let mut got: Vec<String> = matches.into_iter().map(|(p, _)| p.nhs_number).collect();
                    got.sort();
                    let like_rows = like_query(&mut conn, &q);
                    // The rows the statement selects, before scoring: the same as the former query's.
                    let mut candidates = search::candidates(&mut conn, &q, 1_000).unwrap();
                    candidates.sort_by(|a, b| a.nhs_number.cmp(&b.nhs_number));
                    assert_eq!(candidates, like_rows, "{q:?}");
                    // The search drops what scores 0; the former query's rows, scored the same way.
                    let expected: Vec<String> =
                        like_rows.into_iter().filter(|p| search::score(&q, p) > 0.0).map(|p| p.nhs_number).collect();
                    assert_eq!(got, expected, "{q:?}");
                    searches += 1;
                    found_any += usize::from(!got.is_empty());
                }
            }
        }
    }
    assert_eq!(searches, 240);
    assert!(found_any > 60, "the searches find something often enough to mean something: {found_any}");
}
