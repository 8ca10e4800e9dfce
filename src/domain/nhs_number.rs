//! NHS numbers: 10 digits, the last a modulus 11 check digit (CP-IS005, PDS emulation: "validated
//! by modulus 11 before any look-up").

use std::fmt;
use std::str::FromStr;

/// A valid NHS number: exactly 10 ASCII digits with a correct modulus 11 check digit.
///
/// The only ways to build one are [`NhsNumber::parse`] and [`FromStr`], so holding an `NhsNumber`
/// proves it was validated. Serialises as the plain 10-digit string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct NhsNumber(String);

/// Why a string is not an NHS number; `Display` gives a message a clinician can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// Nothing (or only spaces) was entered.
    #[error("Enter the NHS number")]
    Empty,
    /// A character other than a digit, or a space or hyphen between digits, was entered.
    #[error("An NHS number contains only digits")]
    NotDigits,
    /// Not exactly 10 digits.
    #[error("An NHS number is 10 digits long")]
    WrongLength,
    /// 10 digits, but the check digit is wrong (or the number could never be issued).
    #[error("This is not a valid NHS number: check the digits")]
    BadCheckDigit,
}

impl NhsNumber {
    /// Parses an NHS number as a person might type it.
    ///
    /// Surrounding whitespace is ignored; spaces and hyphens are accepted between digits
    /// ("943 476 5919", "943-476-5919"); any other character, or a separator before the first
    /// digit or after the last, is [`NhsNumberError::NotDigits`]. Errors are reported in the order
    /// empty, not digits, wrong length, bad check digit.
    pub fn parse(input: &str) -> Result<NhsNumber, NhsNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NhsNumberError::Empty);
        }
        let mut digits = String::with_capacity(10);
        let mut last_was_digit = false;
        for c in trimmed.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                last_was_digit = true;
            } else if c == ' ' || c == '-' {
                // A separator must follow a digit (runs of separators are tolerated).
                if digits.is_empty() {
                    return Err(NhsNumberError::NotDigits);
                }
                last_was_digit = false;
            } else {
                return Err(NhsNumberError::NotDigits);
            }
        }
        if !last_was_digit {
            // Trailing hyphen (trailing spaces were trimmed).
            return Err(NhsNumberError::NotDigits);
        }
        if digits.len() != 10 {
            return Err(NhsNumberError::WrongLength);
        }
        if !is_valid(&digits) {
            return Err(NhsNumberError::BadCheckDigit);
        }
        Ok(NhsNumber(digits))
    }

    /// The plain 10 digits, e.g. "9434765919".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number spaced 3 3 4 for display, e.g. "943 476 5919" (CP-NHS013).
    pub fn formatted(&self) -> String {
        format!("{} {} {}", &self.0[0..3], &self.0[3..6], &self.0[6..10])
    }
}

impl fmt::Display for NhsNumber {
    /// The plain 10 digits (use [`NhsNumber::formatted`] for the spaced form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NhsNumber::parse(s)
    }
}

impl AsRef<str> for NhsNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// True when `digits` is exactly 10 ASCII digits (no separators) whose last digit is the modulus
/// 11 check digit of the first nine.
pub fn is_valid(digits: &str) -> bool {
    let bytes = digits.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match check_digit(&digits[..9]) {
        Some(check) => bytes[9] - b'0' == check,
        None => false,
    }
}

/// The modulus 11 check digit for the first nine digits of an NHS number.
///
/// Each digit is multiplied by a weight from 10 (first) down to 2 (ninth); the products are
/// summed; the check digit is 11 minus the remainder of the sum divided by 11, where 11 becomes 0.
/// Returns `None` when that gives 10 (no number with those nine digits is ever issued), or when
/// `first_nine` is not exactly nine ASCII digits.
pub fn check_digit(first_nine: &str) -> Option<u8> {
    let bytes = first_nine.as_bytes();
    if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = bytes.iter().zip((2..=10u32).rev()).map(|(b, weight)| u32::from(b - b'0') * weight).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        check => Some(check as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: [&str; 6] = ["9434765919", "9990000018", "9990000026", "9990000034", "9000000009", "9000000025"];

    #[test]
    fn known_numbers_are_valid() {
        for n in VALID {
            assert!(is_valid(n), "{n} should be valid");
            assert_eq!(NhsNumber::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn check_digit_of_known_numbers() {
        assert_eq!(check_digit("943476591"), Some(9));
        assert_eq!(check_digit("999000001"), Some(8));
        assert_eq!(check_digit("900000000"), Some(9));
        assert_eq!(check_digit("900000002"), Some(5));
    }

    #[test]
    fn remainder_eleven_gives_zero() {
        // Sum 0: remainder 0, 11 - 0 = 11, check digit 0.
        assert_eq!(check_digit("000000000"), Some(0));
        // 1*10 + 1*9 + 1*3 = 22 = 11 * 2: remainder 0, check digit 0.
        assert_eq!(check_digit("110000010"), Some(0));
        assert!(is_valid("1100000100"));
    }

    #[test]
    fn remainder_ten_is_never_issued() {
        // The fifth digit has weight 6: 2 * 6 = 12, remainder 1, 11 - 1 = 10: never issued.
        assert_eq!(check_digit("000020000"), None);
        for last in 0..=9 {
            let n = format!("000020000{last}");
            assert!(!is_valid(&n), "{n} must be invalid");
            assert_eq!(NhsNumber::parse(&n), Err(NhsNumberError::BadCheckDigit));
        }
        // Search the test range for every such prefix in a small block and check none validate.
        let mut found = 0;
        for i in 0..1000u32 {
            let nine = format!("999000{i:03}");
            if check_digit(&nine).is_none() {
                found += 1;
                for last in 0..=9 {
                    assert!(!is_valid(&format!("{nine}{last}")));
                }
            }
        }
        assert!(found > 50, "about 1 in 11 prefixes gives remainder 10");
    }

    #[test]
    fn exactly_one_check_digit_works_otherwise() {
        for i in 0..500u32 {
            let nine = format!("999{i:06}");
            let valid: Vec<u8> = (0..=9u8).filter(|d| is_valid(&format!("{nine}{d}"))).collect();
            match check_digit(&nine) {
                Some(c) => assert_eq!(valid, vec![c]),
                None => assert!(valid.is_empty()),
            }
        }
    }

    #[test]
    fn any_one_digit_change_is_invalid() {
        for n in VALID {
            for pos in 0..10 {
                for d in b'0'..=b'9' {
                    let mut bytes = n.as_bytes().to_vec();
                    if bytes[pos] == d {
                        continue;
                    }
                    bytes[pos] = d;
                    let changed = String::from_utf8(bytes).unwrap();
                    assert!(!is_valid(&changed), "{changed} (from {n}) must be invalid");
                }
            }
        }
    }

    #[test]
    fn transposed_digits_are_mostly_caught() {
        // 9434765919 with its first two digits swapped.
        assert!(!is_valid("4934765919"));
    }

    #[test]
    fn spacing_forms_parse() {
        let expected = NhsNumber::parse("9434765919").unwrap();
        for input in [
            "943 476 5919",
            "943-476-5919",
            "  9434765919  ",
            "\t943 476 5919\n",
            "943  476  5919",
            "943 - 476 - 5919",
            "9 4 3 4 7 6 5 9 1 9",
        ] {
            assert_eq!(NhsNumber::parse(input), Ok(expected.clone()), "{input:?}");
        }
        assert_eq!("943 476 5919".parse::<NhsNumber>(), Ok(expected));
    }

    #[test]
    fn formatting() {
        let n = NhsNumber::parse("943-476-5919").unwrap();
        assert_eq!(n.as_str(), "9434765919");
        assert_eq!(n.to_string(), "9434765919");
        assert_eq!(n.formatted(), "943 476 5919");
        assert_eq!(n.as_ref() as &str, "9434765919");
    }

    #[test]
    fn serialises_as_plain_digits() {
        // serde_json is a dependency of the crate.
        let n = NhsNumber::parse("943 476 5919").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"9434765919\"");
    }

    #[test]
    fn empty_input() {
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::Empty));
        assert_eq!(NhsNumber::parse("   "), Err(NhsNumberError::Empty));
        assert_eq!(NhsNumber::parse("\t\n"), Err(NhsNumberError::Empty));
    }

    #[test]
    fn letters_and_other_characters() {
        for input in [
            "943476591A",
            "ABCDEFGHIJ",
            "943.476.5919",
            "943/476/5919",
            "943_476_5919",
            "+449434765919",
            "943\u{00a0}476\u{00a0}5919",
            "９４３４７６５９１９", // full-width digits are not ASCII digits
            "-9434765919",
            "9434765919-",
            "943 476 5919 x",
        ] {
            assert_eq!(NhsNumber::parse(input), Err(NhsNumberError::NotDigits), "{input:?}");
        }
    }

    #[test]
    fn wrong_lengths() {
        for input in ["943476591", "94347659190", "1", "943 476 591", "999 000 00189"] {
            assert_eq!(NhsNumber::parse(input), Err(NhsNumberError::WrongLength), "{input:?}");
        }
        assert!(!is_valid("943476591"));
        assert!(!is_valid("94347659190"));
        assert!(!is_valid(""));
    }

    #[test]
    fn is_valid_takes_plain_digits_only() {
        assert!(!is_valid("943 476 5919"));
        assert!(!is_valid("943476591a"));
        assert!(!is_valid("+434765919"));
    }

    #[test]
    fn check_digit_rejects_bad_input() {
        assert_eq!(check_digit(""), None);
        assert_eq!(check_digit("94347659"), None);
        assert_eq!(check_digit("9434765919"), None);
        assert_eq!(check_digit("94347659a"), None);
    }

    #[test]
    fn bad_check_digit() {
        assert_eq!(NhsNumber::parse("9434765918"), Err(NhsNumberError::BadCheckDigit));
        assert_eq!(NhsNumber::parse("999 000 0019"), Err(NhsNumberError::BadCheckDigit));
    }

    #[test]
    fn messages_a_clinician_can_act_on() {
        assert_eq!(NhsNumberError::Empty.to_string(), "Enter the NHS number");
        assert_eq!(NhsNumberError::NotDigits.to_string(), "An NHS number contains only digits");
        assert_eq!(NhsNumberError::WrongLength.to_string(), "An NHS number is 10 digits long");
        assert_eq!(NhsNumberError::BadCheckDigit.to_string(), "This is not a valid NHS number: check the digits");
    }

    #[test]
    fn ordering_and_hashing_follow_the_digits() {
        use std::collections::HashSet;
        let a = NhsNumber::parse("9000000009").unwrap();
        let b = NhsNumber::parse("9990000018").unwrap();
        assert!(a < b);
        let set: HashSet<_> = [a.clone(), NhsNumber::parse("900 000 0009").unwrap()].into_iter().collect();
        assert_eq!(set.len(), 1);
    }
}
