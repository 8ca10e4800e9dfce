//! argon2id password hashing at one of OWASP's equivalent parameter sets (7 MiB, 5 passes, 1 lane).
//!
//! OWASP's Password Storage Cheat Sheet lists five argon2id settings that "provide an equal level
//! of defense", from 46 MiB and one pass to 7 MiB and five. The service used 19 MiB and two; it
//! uses 7 MiB and five since issue 8: a hash took 15 to 17 ms of a core against 19 to 22, and 8
//! of them a second beside the alert tab at 16 users raised its p99 by about 3 ms instead of 4.5
//! (README "Benchmarks", "Afternoon, 2026-11-24"), each holding 7 MiB of the machine's shared
//! cache instead of 19. A hash stored at other parameters still verifies (they are read from it)
//! and is replaced at its owner's next sign-in ([`needs_rehash`]).

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2's memory, in KiB.
const MEMORY_KIB: u32 = 7 * 1024;
/// argon2's passes over its memory.
const PASSES: u32 = 5;
/// argon2's lanes.
const LANES: u32 = 1;

fn hasher() -> Argon2<'static> {
    // Params::new only fails for out-of-range values; these are fixed and in range.
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    with_slot(|| {
        hasher().hash_password(password.as_bytes(), &salt).expect("argon2 hashing with valid parameters").to_string()
    })
}

pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| with_slot(|| hasher().verify_password(password.as_bytes(), &h).is_ok()))
}

/// Whether a stored hash is not at the service's algorithm, version and parameters, and is to be
/// replaced by a fresh [`hash`] once its password has been verified. An unreadable hash needs
/// nothing: it verifies no password.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    h.algorithm != Algorithm::Argon2id.ident()
        || h.version != Some(Version::V0x13.into())
        || Params::try_from(&h).map_or(true, |p| (p.m_cost(), p.t_cost(), p.p_cost()) != (MEMORY_KIB, PASSES, LANES))
}

/// How many argon2 computations may run at once in this process: one core is always left for
/// pages, so a burst of sign-ins queues instead of stalling everyone else (issue 8), and at most
/// that many threads hold argon2's memory at a time.
pub fn concurrent_hashes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)))
}

/// A counting semaphore over [`concurrent_hashes`] slots. Hashing runs on blocking threads
/// (`db::run`), so waiting here blocks only the thread that asked.
struct Slots {
    busy: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

static SLOTS: Slots = Slots { busy: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() };

fn with_slot<T>(f: impl FnOnce() -> T) -> T {
    let limit = concurrent_hashes();
    {
        let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= limit {
            busy = SLOTS.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
    }
    // Released however `f` ends (a panic included).
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
            *busy -= 1;
            SLOTS.freed.notify_one();
        }
    }
    let _release = Release;
    f()
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
    fn no_more_hashes_run_at_once_than_the_limit_allows() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    with_slot(|| {
                        let n = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                        MOST.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        NOW.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= concurrent_hashes(), "{most} at once, limit {}", concurrent_hashes());
        // A panic inside releases its slot: the next hash still runs.
        let _ = std::thread::spawn(|| with_slot(|| panic!("inside a slot"))).join();
        assert!(verify(&hash("a passphrase of some length"), "a passphrase of some length"));
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("a long enough passphrase");
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"));
        assert!(verify(&h, "a long enough passphrase"));
        assert!(!verify(&h, "a long enough passphrasE"));
        assert!(!verify("not a hash", "x"));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn hashes_at_other_parameters_verify_and_need_rehashing() {
        // Made at the service's former parameters (19 MiB, 2 passes), and at argon2i.
        let salt = SaltString::generate(&mut OsRng);
        let at = |algorithm, m, t| {
            Argon2::new(algorithm, Version::V0x13, Params::new(m, t, 1, None).unwrap())
                .hash_password(b"an older passphrase", &salt)
                .unwrap()
                .to_string()
        };
        let former = at(Algorithm::Argon2id, 19 * 1024, 2);
        assert!(former.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&former, "an older passphrase"));
        assert!(!verify(&former, "an older passphrasE"));
        assert!(needs_rehash(&former));
        assert!(needs_rehash(&at(Algorithm::Argon2i, MEMORY_KIB, PASSES)));
        assert!(needs_rehash(&at(Algorithm::Argon2id, MEMORY_KIB, PASSES + 1)));
        assert!(!needs_rehash(&at(Algorithm::Argon2id, MEMORY_KIB, PASSES)));
        assert!(!needs_rehash("not a hash"));
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
