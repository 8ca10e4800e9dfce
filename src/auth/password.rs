//! argon2id password hashing at OWASP's parameters (19 MiB, 2 passes, 1 lane).

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn hasher() -> Argon2<'static> {
    // Params::new only fails for out-of-range values; these are fixed and in range.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher().hash_password(password.as_bytes(), &salt).expect("argon2 hashing with valid parameters").to_string()
}

pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// Verifies against a hash nobody's password matches, so an unknown username costs the same time
/// as a wrong password and the answer says nothing about which it was.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("dummy password that is never anyone's"));
    let _ = verify(phc, password);
}

/// Password rules (NCSC, OWASP ASVS 2.1): at least 12 characters, at most 128, not a common
/// password; no composition rules.
pub fn check_new_password(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < 12 {
        return Err("Your password must be at least 12 characters long");
    }
    if n > 128 {
        return Err("Your password must be at most 128 characters long");
    }
    let lower = password.to_lowercase();
    if COMMON.iter().any(|c| *c == lower) || lower.chars().all(|c| c == lower.chars().next().unwrap_or(' ')) {
        return Err("That password is too common: choose one that is harder to guess");
    }
    Ok(())
}

/// Common passwords of 12 characters or more (from public breach-frequency lists).
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "password1234",
    "password12345",
    "passwordpassword",
    "qwertyuiopas",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "iloveyou1234",
    "administrator",
    "letmein12345",
    "welcome12345",
    "changeme1234",
    "abcdefghijkl",
    "abc123456789",
    "football1234",
    "monkey123456",
    "princess1234",
    "sunshine1234",
    "qwertyuiop12",
    "trustno11234",
    "000000000000",
    "111111111111",
    "aaaaaaaaaaaa",
    "password123!",
    "passw0rd1234",
    "p@ssw0rd1234",
    "correcthorsebatterystaple",
    "summer2026!!",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("a long enough passphrase");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&h, "a long enough passphrase"));
        assert!(!verify(&h, "a long enough passphrasE"));
        assert!(!verify("not a hash", "x"));
    }

    #[test]
    fn new_passwords_need_length_not_composition() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("password1234").is_err());
        assert!(check_new_password("PASSWORD1234").is_err());
        assert!(check_new_password("zzzzzzzzzzzzzz").is_err());
        assert!(check_new_password("purple tractor umbrella").is_ok());
    }
}
