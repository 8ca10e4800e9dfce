//! The PDS cross-check of CP-IS002 (messages.md, "Record checks", CPR03): does the name and date
//! of birth a local authority sent identify the patient PDS holds for the NHS number?
//!
//! The rule:
//! 1. Verified when the birth date sent equals PDS's exactly (year, month and day). Names play no
//!    part then; they may even be absent.
//! 2. Otherwise verified only when all three hold, **for one and the same** current PDS name:
//!    - two of the three parts (year, month, day) of the birth date match PDS's;
//!    - the first 3 characters of the family name match that PDS name's;
//!    - the initial (first character) of the given name matches that PDS name's.
//!
//!    A family name under 3 characters (sent, or in that PDS name) or a missing given name (sent,
//!    or in that PDS name) means not verified: it is not an error, the test simply fails.
//!
//! Names are compared against every current name PDS holds for the patient; the family name of one
//! PDS name and the given name of another never combine into a match (a PDS patient "Amy Hart"
//! also known as "Zoe Smith" does not verify a record for "Zoe Hart").
//!
//! How names are compared:
//! - Surrounding whitespace is ignored and runs of inner whitespace count as one space
//!   ("Le  Roy" is "Le Roy"); a name empty after trimming counts as missing.
//! - "Characters" are Unicode scalar values (`char`), not bytes: "Ñúñez" has the 3 characters
//!   "Ñúñ" although they take 6 bytes. Hyphens, apostrophes and spaces are characters too
//!   ("O'N" is the first 3 characters of "O'Neill").
//! - The first characters are taken from the name as written, then compared case-insensitively by
//!   Unicode lower case, character by character ("HART", "hart" and "Hart" all give "har";
//!   "ÉLO" and "élo" match). Lower-casing one character at a time means a capital that lowers to
//!   two characters (Turkish "İ") still counts as one character of the name.
//! - Accents are significant: "Élo" does not match "Elo", as PDS holds the spelling the LA should
//!   hold. No Unicode normalisation is applied, so a precomposed "é" and "e" followed by a
//!   combining accent differ (XML from LA systems is normally in the precomposed form).

use chrono::{Datelike, NaiveDate};

/// One of the patient's current names in PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdsName {
    pub given: String,
    pub family: String,
}

/// How many leading characters of the family name must match.
const FAMILY_PREFIX_CHARS: usize = 3;

/// The CP-IS002 cross-check (see the module notes): `given`, `family` and `birth` are what the
/// local authority sent; `pds_birth` and `pds_names` are what PDS holds for the NHS number.
pub fn cross_check(
    pds_birth: NaiveDate,
    pds_names: &[PdsName],
    given: Option<&str>,
    family: Option<&str>,
    birth: NaiveDate,
) -> bool {
    if birth == pds_birth {
        return true;
    }
    if matching_date_parts(pds_birth, birth) < 2 {
        return false;
    }
    // A missing given name, or a family name under 3 characters, fails the second test at once.
    let Some(sent_initial) = given.and_then(initial) else {
        return false;
    };
    let Some(sent_family) = family.and_then(family_prefix) else {
        return false;
    };
    // All conditions for one and the same PDS name.
    pds_names.iter().any(|name| {
        family_prefix(&name.family).is_some_and(|f| f == sent_family)
            && initial(&name.given).is_some_and(|i| i == sent_initial)
    })
}

/// How many of year, month and day are the same in `a` and `b`.
fn matching_date_parts(a: NaiveDate, b: NaiveDate) -> usize {
    [a.year() == b.year(), a.month() == b.month(), a.day() == b.day()].into_iter().filter(|same| *same).count()
}

/// The first `n` characters of `name` (trimmed, inner whitespace collapsed), each in Unicode lower
/// case; `None` when the name has fewer than `n` characters.
fn leading_chars(name: &str, n: usize) -> Option<String> {
    let mut words = name.split_whitespace();
    let mut chars = Vec::with_capacity(n);
    if let Some(first) = words.next() {
        chars.extend(first.chars().take(n));
        for word in words {
            if chars.len() >= n {
                break;
            }
            chars.push(' ');
            chars.extend(word.chars().take(n));
        }
    }
    if chars.len() < n {
        return None;
    }
    Some(chars.into_iter().take(n).flat_map(char::to_lowercase).collect())
}

/// The first 3 characters of a family name, for comparison; `None` when it is shorter.
fn family_prefix(family: &str) -> Option<String> {
    leading_chars(family, FAMILY_PREFIX_CHARS)
}

/// The initial of a given name, for comparison; `None` when the name is empty after trimming.
fn initial(given: &str) -> Option<String> {
    leading_chars(given, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn name(given: &str, family: &str) -> PdsName {
        PdsName { given: given.to_string(), family: family.to_string() }
    }

    /// PDS: Amelia Hart, born 2009-01-31.
    fn pds_birth() -> NaiveDate {
        date(2009, 1, 31)
    }

    fn pds_names() -> Vec<PdsName> {
        vec![name("Amelia", "Hart")]
    }

    fn check(given: Option<&str>, family: Option<&str>, birth: NaiveDate) -> bool {
        cross_check(pds_birth(), &pds_names(), given, family, birth)
    }

    #[test]
    fn exact_birth_date_verifies_whatever_the_names() {
        assert!(check(Some("Amelia"), Some("Hart"), pds_birth()));
        assert!(check(Some("Zoe"), Some("Smith"), pds_birth()));
        assert!(check(None, None, pds_birth()));
        assert!(check(Some(""), Some("X"), pds_birth()));
        // Even with no PDS name at all.
        assert!(cross_check(pds_birth(), &[], None, None, pds_birth()));
    }

    #[test]
    fn year_and_month_match_with_names() {
        assert!(check(Some("Amelia"), Some("Hart"), date(2009, 1, 13)));
    }

    #[test]
    fn year_and_day_match_with_names() {
        assert!(check(Some("Amelia"), Some("Hart"), date(2009, 3, 31)));
    }

    #[test]
    fn month_and_day_match_with_names() {
        assert!(check(Some("Amelia"), Some("Hart"), date(2010, 1, 31)));
    }

    #[test]
    fn only_one_date_part_matching_is_not_verified() {
        // Year only, month only, day only, none: names matching does not help.
        assert!(!check(Some("Amelia"), Some("Hart"), date(2009, 2, 28)));
        assert!(!check(Some("Amelia"), Some("Hart"), date(2010, 1, 30)));
        assert!(!check(Some("Amelia"), Some("Hart"), date(2010, 3, 31)));
        assert!(!check(Some("Amelia"), Some("Hart"), date(2011, 5, 6)));
    }

    #[test]
    fn family_first_three_characters_must_match() {
        let near = date(2009, 1, 13);
        // Only the first 3 characters count.
        assert!(check(Some("Amelia"), Some("Hartley"), near));
        assert!(check(Some("A"), Some("Har"), near));
        assert!(!check(Some("Amelia"), Some("Hurt"), near));
        assert!(!check(Some("Amelia"), Some("Ahart"), near));
    }

    #[test]
    fn given_initial_must_match() {
        let near = date(2009, 1, 13);
        // Only the initial counts.
        assert!(check(Some("Annie"), Some("Hart"), near));
        assert!(check(Some("A"), Some("Hart"), near));
        assert!(!check(Some("Emilia"), Some("Hart"), near));
    }

    #[test]
    fn short_family_name_sent_is_not_verified() {
        let pds = [name("Li", "Ng")];
        let near = date(2009, 1, 13);
        // PDS's own name is short too, and they are equal: still not verified.
        assert!(!cross_check(pds_birth(), &pds, Some("Li"), Some("Ng"), near));
        assert!(!check(Some("Amelia"), Some("Ha"), near));
        assert!(!check(Some("Amelia"), Some("  Ha  "), near));
        assert!(!check(Some("Amelia"), Some(""), near));
        assert!(!check(Some("Amelia"), None, near));
        // With the exact date the short name does not matter.
        assert!(cross_check(pds_birth(), &pds, Some("Li"), Some("Ng"), pds_birth()));
    }

    #[test]
    fn short_family_name_in_pds_is_not_verified() {
        let near = date(2009, 1, 13);
        // The LA sends a longer name whose first 2 characters are PDS's whole name.
        assert!(!cross_check(pds_birth(), &[name("Amelia", "Ha")], Some("Amelia"), Some("Hart"), near));
        assert!(!cross_check(pds_birth(), &[name("Amelia", "")], Some("Amelia"), Some("Hart"), near));
    }

    #[test]
    fn missing_given_name_is_not_verified() {
        let near = date(2009, 1, 13);
        assert!(!check(None, Some("Hart"), near));
        assert!(!check(Some(""), Some("Hart"), near));
        assert!(!check(Some("   "), Some("Hart"), near));
        // PDS's name has no given name: that name cannot match.
        assert!(!cross_check(pds_birth(), &[name("", "Hart")], Some("Amelia"), Some("Hart"), near));
    }

    #[test]
    fn names_compare_case_insensitively_and_trimmed() {
        let near = date(2009, 1, 13);
        assert!(check(Some("amelia"), Some("HART"), near));
        assert!(check(Some("  AMELIA "), Some("  hArT  "), near));
        assert!(cross_check(pds_birth(), &[name("AMELIA", "HARTLEY")], Some("a"), Some("hart"), near));
    }

    #[test]
    fn inner_whitespace_counts_as_one_character() {
        let pds = [name("Jean", "Le Roy")];
        let near = date(2009, 1, 13);
        assert!(cross_check(pds_birth(), &pds, Some("Jean"), Some("le   roy"), near));
        assert!(cross_check(pds_birth(), &pds, Some("Jean"), Some("Le Bon"), near));
        assert!(!cross_check(pds_birth(), &pds, Some("Jean"), Some("Leroy"), near));
    }

    #[test]
    fn any_current_pds_name_may_match() {
        let pds = [name("Zoe", "Smith"), name("Amelia", "Hart")];
        let near = date(2009, 1, 13);
        assert!(cross_check(pds_birth(), &pds, Some("Amelia"), Some("Hart"), near));
        assert!(cross_check(pds_birth(), &pds, Some("Zoe"), Some("Smith"), near));
        // No PDS names at all: only the exact date verifies.
        assert!(!cross_check(pds_birth(), &[], Some("Amelia"), Some("Hart"), near));
    }

    #[test]
    fn family_and_initial_must_come_from_the_same_pds_name() {
        let pds = [name("Zoe", "Smith"), name("Amelia", "Hart")];
        let near = date(2009, 1, 13);
        // Family from the second name, initial from the first: not verified.
        assert!(!cross_check(pds_birth(), &pds, Some("Zoe"), Some("Hart"), near));
        assert!(!cross_check(pds_birth(), &pds, Some("Amelia"), Some("Smith"), near));
        // A short family name on one PDS name does not stop another from matching.
        let pds = [name("Amelia", "Ha"), name("Amelia", "Hart")];
        assert!(cross_check(pds_birth(), &pds, Some("Amelia"), Some("Hart"), near));
    }

    #[test]
    fn accented_and_unicode_names() {
        let near = date(2009, 1, 13);
        let pds = [name("Éloïse", "Núñez")];
        assert!(cross_check(pds_birth(), &pds, Some("éloïse"), Some("NÚÑEZ"), near));
        assert!(cross_check(pds_birth(), &pds, Some("É"), Some("núñ"), near));
        // Accents are significant.
        assert!(!cross_check(pds_birth(), &pds, Some("Eloise"), Some("Núñez"), near));
        assert!(!cross_check(pds_birth(), &pds, Some("Éloïse"), Some("Nunez"), near));
        // Characters, not bytes: "Ñú" is 2 characters (4 bytes), too short.
        assert!(!cross_check(pds_birth(), &[name("Éloïse", "Ñú")], Some("Éloïse"), Some("Ñú"), near));
        // Non-Latin scripts.
        let pds = [name("Дмитрий", "Иванов")];
        assert!(cross_check(pds_birth(), &pds, Some("дима"), Some("ИВАНОВА"), near));
        assert!(!cross_check(pds_birth(), &pds, Some("Дмитрий"), Some("Ива"), date(2011, 2, 2)));
        let pds = [name("美咲", "山田太郎")];
        assert!(cross_check(pds_birth(), &pds, Some("美"), Some("山田太"), near));
        // Turkish capital İ lowers to two characters but is one character of the name: "İŞC" is
        // the first 3 characters of "İŞCAN", and matches "İşc".
        let pds = [name("İpek", "İşcan")];
        assert!(cross_check(pds_birth(), &pds, Some("İPEK"), Some("İŞCAN"), near));
        assert!(!cross_check(pds_birth(), &pds, Some("İpek"), Some("İş"), near));
    }

    #[test]
    fn helpers() {
        assert_eq!(family_prefix("  Hartley "), Some("har".to_string()));
        assert_eq!(family_prefix("O'Neill"), Some("o'n".to_string()));
        assert_eq!(family_prefix("Ng"), None);
        assert_eq!(family_prefix("   "), None);
        assert_eq!(family_prefix("A B"), Some("a b".to_string()));
        assert_eq!(initial("  amelia"), Some("a".to_string()));
        assert_eq!(initial(""), None);
        assert_eq!(matching_date_parts(date(2009, 1, 31), date(2009, 1, 31)), 3);
        assert_eq!(matching_date_parts(date(2009, 1, 31), date(2010, 2, 1)), 0);
    }
    /// Property tests of the cross-check over random names and dates.
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Letters whose upper and lower case are single characters that map back to each other,
        /// so changing a letter's case changes nothing but its case.
        const LETTERS: &[char] = &[
            'a', 'b', 'e', 'h', 'i', 'l', 'm', 'n', 'o', 'r', 's', 't', 'z', 'A', 'E', 'H', 'M', 'R', 'T', 'Z', '\'',
            '-', 'é', 'É', 'ñ', 'Ñ', 'ö', 'Ö', 'д', 'Д', '山',
        ];
        const SPACES: &[char] = &[' ', '\t', '\n', '\u{a0}', '\u{3000}'];

        /// A name as words (joined by one space); no words is the empty name.
        fn name() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::collection::vec(prop::sample::select(LETTERS), 1..6), 0..3)
                .prop_map(|words| words.into_iter().map(String::from_iter).collect::<Vec<_>>().join(" "))
        }

        fn pds_name() -> impl Strategy<Value = PdsName> {
            (name(), name()).prop_map(|(given, family)| PdsName { given, family })
        }

        fn any_date() -> impl Strategy<Value = NaiveDate> {
            (1950i32..2030, 1u32..=12, 1u32..=31)
                .prop_filter_map("a real date", |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
        }

        /// A date near `pds`: each of year, month and day kept or changed at random.
        fn near(pds: NaiveDate) -> impl Strategy<Value = NaiveDate> {
            (prop::option::of(1950i32..2030), prop::option::of(1u32..=12), prop::option::of(1u32..=31)).prop_filter_map(
                "a real date",
                move |(y, m, d)| {
                    NaiveDate::from_ymd_opt(y.unwrap_or(pds.year()), m.unwrap_or(pds.month()), d.unwrap_or(pds.day()))
                },
            )
        }

        /// What PDS holds and what the LA sent; the names sent are often PDS's first name with
        /// something appended, so that matches are common.
        #[derive(Debug, Clone)]
        struct Case {
            pds_birth: NaiveDate,
            pds_names: Vec<PdsName>,
            given: Option<String>,
            family: Option<String>,
            birth: NaiveDate,
        }

        fn case() -> impl Strategy<Value = Case> {
            (any_date(), prop::collection::vec(pds_name(), 0..3)).prop_flat_map(|(pds_birth, pds_names)| {
                let first =
                    pds_names.first().cloned().unwrap_or(PdsName { given: String::new(), family: String::new() });
                let sent = prop_oneof![
                    (Just(first.given), name(), Just(first.family), name())
                        .prop_map(|(g, gs, f, fs)| (Some(g + &gs), Some(f + &fs))),
                    (prop::option::of(name()), prop::option::of(name())),
                ];
                (Just(pds_birth), Just(pds_names), sent, near(pds_birth)).prop_map(
                    |(pds_birth, pds_names, (given, family), birth)| Case {
                        pds_birth,
                        pds_names,
                        given,
                        family,
                        birth,
                    },
                )
            })
        }

        fn verdict(c: &Case) -> bool {
            cross_check(c.pds_birth, &c.pds_names, c.given.as_deref(), c.family.as_deref(), c.birth)
        }

        /// `name` with each letter's case flipped where `flips` says, and its words separated,
        /// preceded and followed by other runs of whitespace.
        fn disguise(name: &str, flips: &[bool], spaces: &[usize]) -> String {
            let mut pick = spaces.iter().cycle();
            let mut run = |at_least: usize| {
                let n = pick.next().copied().unwrap_or(0);
                (0..(n % 3).max(at_least)).map(|i| SPACES[(n + i) % SPACES.len()]).collect::<String>()
            };
            let words: Vec<&str> = name.split_whitespace().collect();
            let mut out = run(0);
            let mut flip = flips.iter().cycle();
            for (i, word) in words.iter().enumerate() {
                if i > 0 {
                    out.push_str(&run(1));
                }
                for c in word.chars() {
                    let flipped = if flip.next().copied().unwrap_or(false) {
                        if c.is_lowercase() {
                            c.to_uppercase().next()
                        } else {
                            c.to_lowercase().next()
                        }
                    } else {
                        None
                    };
                    out.push(flipped.unwrap_or(c));
                }
            }
            out.push_str(&run(0));
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// CP-IS002: changing the case of letters and the whitespace around and between words,
            /// in what the LA sent and in PDS's names, never changes the verdict.
            #[test]
            fn case_and_whitespace_do_not_change_the_verdict(
                c in case(),
                flips in prop::collection::vec(any::<bool>(), 1..16),
                spaces in prop::collection::vec(0usize..10, 1..8),
            ) {
                let d = |n: &str| disguise(n, &flips, &spaces);
                let disguised = Case {
                    given: c.given.as_deref().map(d),
                    family: c.family.as_deref().map(d),
                    pds_names: c
                        .pds_names
                        .iter()
                        .map(|n| PdsName { given: d(&n.given), family: d(&n.family) })
                        .collect(),
                    ..c.clone()
                };
                prop_assert_eq!(verdict(&disguised), verdict(&c), "{:?} against {:?}", disguised, c);
            }

            /// The exact birth date verifies, whatever the names.
            #[test]
            fn the_exact_birth_date_always_verifies(c in case()) {
                let exact = Case { birth: c.pds_birth, ..c };
                prop_assert!(verdict(&exact), "{:?}", exact);
            }

            /// A birth date with fewer than 2 of its 3 parts matching never verifies, whatever the
            /// names.
            #[test]
            fn a_birth_date_altered_in_two_parts_never_verifies(c in case()) {
                if matching_date_parts(c.pds_birth, c.birth) < 2 {
                    prop_assert!(!verdict(&c));
                }
            }

            /// An altered birth date verifies only through the names: a given name and a family
            /// name of at least 3 characters were sent, and one PDS name has both the same initial
            /// and the same first 3 characters.
            #[test]
            fn an_altered_birth_date_verifies_only_with_matching_names(c in case()) {
                if c.birth != c.pds_birth && verdict(&c) {
                    prop_assert_eq!(matching_date_parts(c.pds_birth, c.birth), 2);
                    let initial_sent = c.given.as_deref().and_then(initial);
                    let family_sent = c.family.as_deref().and_then(family_prefix);
                    prop_assert!(initial_sent.is_some() && family_sent.is_some());
                    let one_matches = c
                        .pds_names
                        .iter()
                        .any(|n| initial(&n.given) == initial_sent && family_prefix(&n.family) == family_sent);
                    prop_assert!(one_matches, "{:?}", c);
                }
            }

            /// With an altered birth date and names that match no PDS name, the check always fails.
            #[test]
            fn an_altered_birth_date_with_other_names_fails(c in case(), other in name()) {
                let family = Some(format!("Qx{other}"));
                if c.birth != c.pds_birth
                    && c.pds_names.iter().all(|n| !n.family.trim_start().to_lowercase().starts_with("qx"))
                {
                    let other = Case { family, ..c };
                    prop_assert!(!verdict(&other), "{:?}", other);
                }
            }

            /// The PDS names are tried one at a time: the verdict against several is true exactly
            /// when it is true against one of them (parts of two names never combine).
            #[test]
            fn one_pds_name_at_a_time(c in case()) {
                let any_one = c.pds_names.iter().any(|n| verdict(&Case { pds_names: vec![n.clone()], ..c.clone() }));
                let exact = c.birth == c.pds_birth;
                prop_assert_eq!(verdict(&c), any_one || exact);
            }

            /// Only the initial of the given name and the first 3 characters of the family name
            /// count: appending to names that already have them changes nothing.
            #[test]
            fn only_the_initial_and_the_first_three_characters_count(c in case(), tail in name(), tail2 in name()) {
                if let (Some(g), Some(f)) = (&c.given, &c.family) {
                    if initial(g).is_some() && family_prefix(f).is_some() {
                        let longer = Case { given: Some(format!("{g}{tail}")), family: Some(format!("{f}{tail2}")), ..c.clone() };
                        prop_assert_eq!(verdict(&longer), verdict(&c));
                    }
                }
            }
        }
    }
}
