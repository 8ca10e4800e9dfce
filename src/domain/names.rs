//! Names and postcodes: matching forms for the PDS stand-in's searches (domain.md, "PDS
//! emulation": Soundex for similar names) and readable organisation names (CP-NHS009, CP-IS008).

/// American Soundex: the first letter, then up to three digits, padded with zeros to 4
/// characters ("Robert" and "Rupert" are both "R163").
///
/// Only ASCII letters are considered (any other character is skipped); letters coding the same
/// digit next to each other, or separated only by H or W, code once, including the first letter;
/// vowels (and Y) separate them. Returns "" when the name has no letters.
pub fn soundex(name: &str) -> String {
    fn code(c: char) -> Option<u8> {
        match c {
            'B' | 'F' | 'P' | 'V' => Some(b'1'),
            'C' | 'G' | 'J' | 'K' | 'Q' | 'S' | 'X' | 'Z' => Some(b'2'),
            'D' | 'T' => Some(b'3'),
            'L' => Some(b'4'),
            'M' | 'N' => Some(b'5'),
            'R' => Some(b'6'),
            _ => None, // vowels, Y, H, W
        }
    }

    let mut letters = name.chars().filter(char::is_ascii_alphabetic).map(|c| c.to_ascii_uppercase());
    let Some(first) = letters.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(4);
    out.push(first);
    let mut previous = code(first);
    for c in letters {
        if out.len() == 4 {
            break;
        }
        match c {
            // H and W do not separate letters with the same code.
            'H' | 'W' => {}
            _ => {
                let current = code(c);
                if let Some(digit) = current {
                    if current != previous {
                        out.push(char::from(digit));
                    }
                }
                // A vowel resets, so the same code after it is coded again.
                previous = current;
            }
        }
    }
    while out.len() < 4 {
        out.push('0');
    }
    out
}

/// A name for comparison: trimmed, lower case, inner whitespace collapsed to single spaces.
pub fn normalise_name(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A postcode for comparison and storage: upper case with no whitespace ("ls1 6ae" -> "LS16AE").
pub fn normalise_postcode(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

/// A postcode for display: upper case with a single space before the inward code (the last three
/// characters) when it is 5 to 7 characters long without spaces ("ls16ae" -> "LS1 6AE"); any
/// other length is returned normalised, without a space.
pub fn format_postcode(s: &str) -> String {
    let n = normalise_postcode(s);
    let chars: Vec<char> = n.chars().collect();
    if (5..=7).contains(&chars.len()) {
        let (outward, inward) = chars.split_at(chars.len() - 3);
        format!("{} {}", outward.iter().collect::<String>(), inward.iter().collect::<String>())
    } else {
        n
    }
}

/// Words kept in capitals wherever they appear.
const KEEP_UPPER: &[&str] = &["NHS", "UK", "GP", "ICB", "CCG", "II", "III"];

/// Words written in lower case unless they begin the name.
const SMALL_WORDS: &[&str] = &["and", "of", "the", "for", "in", "on", "at", "upon", "under"];

/// Words also written in lower case inside a hyphenated place name ("Chester-le-Street").
const HYPHEN_SMALL_WORDS: &[&str] = &["le", "la", "de", "by", "en", "sub"];

/// Turns an upper-case ODS organisation name into readable form (CP-NHS009, CP-IS008):
/// "KING'S COLLEGE HOSPITAL NHS FOUNDATION TRUST" -> "King's College Hospital NHS Foundation
/// Trust".
///
/// Each word is capitalised; "NHS" (and a few other initialisms) stays in capitals; small words
/// ("and", "of", "the", "for", "in", "on", "at", "upon", "under") are lower case unless they
/// begin the name; letters after an apostrophe stay lower case ("King's", "Thomas'") except after
/// a one-letter prefix ("O'Neill"); each part of a hyphenated word is treated as a word
/// ("Stockton-on-Tees", "Newcastle-under-Lyme"); punctuation such as ",", "&", "(" and "." is
/// kept as it is; a word beginning with a digit is lower case ("2gether"). Whitespace is
/// collapsed to single spaces.
///
/// Remembered per process for the first 10,000 names (issue 8: the tab's access
/// history shows up to 25 names on every opening, and working them out was about 5% of the
/// service's time per opening; there are a few hundred organisations).
pub fn readable_org_name(upper: &str) -> String {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex, PoisonError};
    static REMEMBERED: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);
    if let Some(known) = REMEMBERED.lock().unwrap_or_else(PoisonError::into_inner).get(upper) {
        return known.clone();
    }
    let readable = make_readable(upper);
    let mut remembered = REMEMBERED.lock().unwrap_or_else(PoisonError::into_inner);
    if remembered.len() < READABLE_REMEMBERED {
        remembered.insert(upper.to_owned(), readable.clone());
    }
    readable
}

/// How many readable names [`readable_org_name`] remembers at most (beyond them, it works names
/// out each time: a few hundred organisations fit many times over).
const READABLE_REMEMBERED: usize = 10_000;

/// [`readable_org_name`], worked out.
fn make_readable(upper: &str) -> String {
    let mut words = Vec::new();
    for (wi, word) in upper.split_whitespace().enumerate() {
        let parts: Vec<String> =
            word.split('-').enumerate().map(|(pi, part)| readable_word(part, wi == 0 && pi == 0, pi > 0)).collect();
        words.push(parts.join("-"));
    }
    words.join(" ")
}

/// One word (or hyphenated part) of an organisation name.
fn readable_word(part: &str, first_in_name: bool, inside_hyphenation: bool) -> String {
    // The letters and digits, without surrounding punctuation such as "(" or ",".
    let core = part.trim_matches(|c: char| !c.is_alphanumeric());
    if core.is_empty() {
        return part.to_string();
    }
    let start = part.find(core).unwrap_or(0);
    let (before, rest) = part.split_at(start);
    let after = &rest[core.len()..];

    let core_upper = core.to_uppercase();
    let core_lower = core.to_lowercase();
    let styled = if KEEP_UPPER.contains(&core_upper.as_str()) {
        core_upper
    } else if !first_in_name
        && (SMALL_WORDS.contains(&core_lower.as_str())
            || (inside_hyphenation && HYPHEN_SMALL_WORDS.contains(&core_lower.as_str())))
    {
        core_lower
    } else {
        capitalise(core)
    };
    format!("{before}{styled}{after}")
}

/// "KING'S" -> "King's", "O'NEILL" -> "O'Neill", "2GETHER" -> "2gether".
fn capitalise(core: &str) -> String {
    let starts_with_letter = core.chars().next().is_some_and(char::is_alphabetic);
    let mut out = String::with_capacity(core.len());
    let mut capitalise_next = starts_with_letter;
    for (i, c) in core.chars().enumerate() {
        if c == '\'' || c == '\u{2019}' {
            out.push(c);
            // Only a one-letter prefix ("O'", "D'") capitalises what follows.
            capitalise_next = i == 1 && starts_with_letter;
        } else if capitalise_next && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            capitalise_next = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_reference_values() {
        assert_eq!(soundex("Robert"), "R163");
        assert_eq!(soundex("Rupert"), "R163");
        assert_eq!(soundex("Ashcraft"), "A261");
        assert_eq!(soundex("Ashcroft"), "A261");
        assert_eq!(soundex("Tymczak"), "T522");
        assert_eq!(soundex("Pfister"), "P236");
        assert_eq!(soundex("Smith"), "S530");
        assert_eq!(soundex("Smythe"), "S530");
        assert_eq!(soundex("Rubin"), "R150");
        assert_eq!(soundex("Honeyman"), "H555");
        assert_eq!(soundex("Jackson"), "J250");
        assert_eq!(soundex("Lee"), "L000");
        assert_eq!(soundex("Gutierrez"), "G362");
    }

    #[test]
    fn soundex_case_and_non_letters() {
        assert_eq!(soundex("smith"), "S530");
        assert_eq!(soundex("  SMITH  "), "S530");
        assert_eq!(soundex("O'Brien"), soundex("OBrien"));
        assert_eq!(soundex("Smith-Jones"), soundex("SmithJones"));
        assert_eq!(soundex("A"), "A000");
        assert_eq!(soundex(""), "");
        assert_eq!(soundex("123 -'"), "");
        // Non-ASCII letters are skipped.
        assert_eq!(soundex("Éric"), soundex("ric"));
    }

    #[test]
    fn soundex_vowel_separates_h_and_w_do_not() {
        // "Tymczak": C and Z code once; K after the vowel A is coded again.
        assert_eq!(soundex("Tymczak"), "T522");
        // S, H, C: the C is not coded again.
        assert_eq!(soundex("Ashcraft"), "A261");
        // First letter and its neighbour with the same code: P and F.
        assert_eq!(soundex("Pfister"), "P236");
        // Y separates like a vowel in this variant: B, Y, B.
        assert_eq!(soundex("Bybee"), "B100");
    }

    #[test]
    fn normalise_name_cases() {
        assert_eq!(normalise_name("  Jane   SMITH "), "jane smith");
        assert_eq!(normalise_name("Mary-Jane\tO'Neill"), "mary-jane o'neill");
        assert_eq!(normalise_name(""), "");
        assert_eq!(normalise_name("   "), "");
    }

    #[test]
    fn postcodes() {
        assert_eq!(normalise_postcode("ls1 6ae"), "LS16AE");
        assert_eq!(normalise_postcode(" LS1  6AE "), "LS16AE");
        assert_eq!(format_postcode("ls16ae"), "LS1 6AE");
        assert_eq!(format_postcode("LS1 6AE"), "LS1 6AE");
        assert_eq!(format_postcode("sw1a1aa"), "SW1A 1AA");
        assert_eq!(format_postcode("m11ae"), "M1 1AE");
        assert_eq!(format_postcode("wc1n 3jh"), "WC1N 3JH");
        // Outside 5..=7 characters: normalised, no space.
        assert_eq!(format_postcode("ls1"), "LS1");
        assert_eq!(format_postcode("abcd"), "ABCD");
        assert_eq!(format_postcode("abcdefgh"), "ABCDEFGH");
        assert_eq!(format_postcode(""), "");
    }

    #[test]
    fn readable_org_names_from_the_brief() {
        assert_eq!(
            readable_org_name("KING'S COLLEGE HOSPITAL NHS FOUNDATION TRUST"),
            "King's College Hospital NHS Foundation Trust"
        );
        assert_eq!(
            readable_org_name("UNIVERSITY HOSPITALS OF DERBY AND BURTON NHS FOUNDATION TRUST"),
            "University Hospitals of Derby and Burton NHS Foundation Trust"
        );
        assert_eq!(readable_org_name("STOCKTON-ON-TEES"), "Stockton-on-Tees");
    }

    #[test]
    fn readable_org_names_from_the_trust_list() {
        let cases = [
            (
                "THE QUEEN ELIZABETH HOSPITAL, KING'S LYNN, NHS FOUNDATION TRUST",
                "The Queen Elizabeth Hospital, King's Lynn, NHS Foundation Trust",
            ),
            ("GUY'S AND ST THOMAS' NHS FOUNDATION TRUST", "Guy's and St Thomas' NHS Foundation Trust"),
            ("ROYAL BROMPTON & HAREFIELD NHS FOUNDATION TRUST", "Royal Brompton & Harefield NHS Foundation Trust"),
            (
                "THE NEWCASTLE UPON TYNE HOSPITALS NHS FOUNDATION TRUST",
                "The Newcastle upon Tyne Hospitals NHS Foundation Trust",
            ),
            (
                "GREAT ORMOND STREET HOSPITAL FOR CHILDREN NHS FOUNDATION TRUST",
                "Great Ormond Street Hospital for Children NHS Foundation Trust",
            ),
            ("ISLE OF WIGHT NHS TRUST", "Isle of Wight NHS Trust"),
            (
                "STAFFORDSHIRE AND STOKE ON TRENT PARTNERSHIP NHS TRUST",
                "Staffordshire and Stoke on Trent Partnership NHS Trust",
            ),
            (
                "BARKING, HAVERING AND REDBRIDGE UNIVERSITY HOSPITALS NHS TRUST",
                "Barking, Havering and Redbridge University Hospitals NHS Trust",
            ),
            ("ALDER HEY CHILDREN'S NHS FOUNDATION TRUST", "Alder Hey Children's NHS Foundation Trust"),
            (
                "ASHFORD AND ST PETER'S HOSPITALS NHS FOUNDATION TRUST",
                "Ashford and St Peter's Hospitals NHS Foundation Trust",
            ),
            ("POWYS TEACHING LOCAL HEALTH BOARD", "Powys Teaching Local Health Board"),
        ];
        for (upper, readable) in cases {
            assert_eq!(readable_org_name(upper), readable, "{upper}");
        }
    }

    #[test]
    fn readable_place_names() {
        assert_eq!(readable_org_name("STOKE-ON-TRENT"), "Stoke-on-Trent");
        assert_eq!(readable_org_name("NEWCASTLE-UNDER-LYME"), "Newcastle-under-Lyme");
        assert_eq!(readable_org_name("ST. LEONARDS-ON-SEA"), "St. Leonards-on-Sea");
        assert_eq!(readable_org_name("CHESTER-LE-STREET"), "Chester-le-Street");
        assert_eq!(readable_org_name("KING'S LYNN"), "King's Lynn");
        assert_eq!(readable_org_name("KINGSTON UPON THAMES"), "Kingston upon Thames");
    }

    #[test]
    fn readable_edges() {
        // A small word first is capitalised.
        assert_eq!(readable_org_name("THE CHRISTIE NHS FOUNDATION TRUST"), "The Christie NHS Foundation Trust");
        assert_eq!(readable_org_name("OF COURSE"), "Of Course");
        // Brackets and punctuation survive.
        assert_eq!(readable_org_name("BARTS HEALTH NHS TRUST (HQ)"), "Barts Health NHS Trust (Hq)");
        assert_eq!(readable_org_name("(THE) TRUST"), "(The) Trust");
        assert_eq!(readable_org_name("NHS (ENGLAND)"), "NHS (England)");
        // Initialisms and numerals.
        assert_eq!(readable_org_name("NHS ENGLAND"), "NHS England");
        assert_eq!(readable_org_name("WARD II"), "Ward II");
        assert_eq!(readable_org_name("2GETHER NHS FOUNDATION TRUST"), "2gether NHS Foundation Trust");
        // One-letter prefix before an apostrophe.
        assert_eq!(readable_org_name("O'NEILL HOUSE"), "O'Neill House");
        // Already readable input and odd spacing.
        assert_eq!(readable_org_name("  King's   College Hospital  "), "King's College Hospital");
        assert_eq!(readable_org_name(""), "");
        assert_eq!(readable_org_name("&"), "&");
        assert_eq!(readable_org_name("A-"), "A-");
    }

    #[test]
    fn a_remembered_name_is_the_one_worked_out() {
        for name in ["LEEDS TEACHING HOSPITALS NHS TRUST", "KING'S COLLEGE HOSPITAL NHS FOUNDATION TRUST", ""] {
            let first = readable_org_name(name);
            assert_eq!(first, make_readable(name));
            assert_eq!(readable_org_name(name), first, "asked again, {name:?}");
        }
    }
}
