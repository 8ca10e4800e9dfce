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
