//! argon2id password hashing at OWASP's parameters (19 MiB, 2 passes, 1 lane).

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The parameters new hashes are made with (a stored hash is checked with its own).
fn params() -> Params {
    // Params::new only fails for out-of-range values; these are fixed and in range.
    Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters")
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let params = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).expect("a generated salt decodes");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    compute(&argon, password, salt_bytes, &mut out).expect("argon2 hashing with valid parameters");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("parameters as a PHC string"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("an output of the default length")),
    }
    .to_string()
}

/// Whether `password` is the one `phc` (a PHC string: algorithm, version, parameters, salt and
/// hash) was made from; false for a string that is not an argon2 hash. The comparison takes the
/// same time wherever the hashes differ (`Output`'s equality).
pub fn verify(phc: &str, password: &str) -> bool {
    let Ok(stored) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(version), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(stored.algorithm),
        stored.version.map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&stored),
        stored.salt,
        stored.hash,
    ) else {
        return false;
    };
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    compute(&argon, password, salt, &mut out).is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

/// Runs argon2 in a hash slot, on that slot's memory. The 19 MiB each computation needs is kept
/// between computations (at most [`concurrent_hashes`] of them) rather than allocated, zeroed and
/// returned to the system each time: that was 19 MiB of fresh pages faulted in, and unmapped
/// again, per sign-in (issue 8, sign-in bursts): on the benchmark machine a hash at these
/// parameters took 22.7 ms of a core with fresh memory and 17.3 ms on kept memory. argon2 writes
/// every block before it reads it, so a slot's memory need not be cleared in between; what it
/// holds after a computation is no more than the stored hash already gives away.
fn compute(argon: &Argon2, password: &str, salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let blocks = argon.params().block_count();
    with_slot(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
    })
}

/// How many argon2 computations may run at once in this process: one core is always left for
/// pages, so a burst of sign-ins queues instead of stalling everyone else (issue 8), and at most
/// that many threads hold argon2's 19 MiB at a time.
pub fn concurrent_hashes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)))
}

/// A counting semaphore over [`concurrent_hashes`] slots, each with its memory (kept in `spare`
/// while the slot is free). Hashing runs on blocking threads (`db::run`), so waiting here blocks
/// only the thread that asked.
struct Slots {
    busy: Mutex<usize>,
    freed: std::sync::Condvar,
    spare: Mutex<Vec<Vec<Block>>>,
}

static SLOTS: Slots = Slots { busy: Mutex::new(0), freed: std::sync::Condvar::new(), spare: Mutex::new(Vec::new()) };

fn with_slot<T>(f: impl FnOnce(&mut Vec<Block>) -> T) -> T {
    let limit = concurrent_hashes();
    {
        let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= limit {
            busy = SLOTS.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
    }
    // Released however `f` ends (a panic included); the memory goes back only when `f` returned.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            let mut busy = SLOTS.busy.lock().unwrap_or_else(|e| e.into_inner());
            *busy -= 1;
            SLOTS.freed.notify_one();
        }
    }
    let _release = Release;
    let mut memory = SLOTS.spare.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
    let answer = f(&mut memory);
    SLOTS.spare.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
    answer
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
                    with_slot(|_| {
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
        let _ = std::thread::spawn(|| with_slot(|_| -> () { panic!("inside a slot") })).join();
        assert!(verify(&hash("a passphrase of some length"), "a passphrase of some length"));
        // Each slot's memory is kept for the next computation: never more than one per slot.
        let kept = SLOTS.spare.lock().unwrap().len();
        assert!(kept <= concurrent_hashes(), "{kept} kept");
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("a long enough passphrase");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&h, "a long enough passphrase"));
        assert!(!verify(&h, "a long enough passphrasE"));
        assert!(!verify("not a hash", "x"));
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Hashes stored before the slots kept their memory were made by the crate's hasher.
        let crate_argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = crate_argon.hash_password(b"a long enough passphrase", &salt).unwrap().to_string();
        assert!(verify(&theirs, "a long enough passphrase"));
        assert!(!verify(&theirs, "a long enough passphrasE"));
        let ours = hash("a long enough passphrase");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(crate_argon.verify_password(b"a long enough passphrase", &parsed).is_ok());
        assert!(crate_argon.verify_password(b"another passphrase!", &parsed).is_err());
        // A stored hash is checked with its own parameters, whatever new hashes use.
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 3, 1, None).unwrap())
            .hash_password(b"a long enough passphrase", &salt)
            .unwrap()
            .to_string();
        assert!(verify(&older, "a long enough passphrase"));
        assert!(!verify(&older, "a long enough passphrasE"));
        // Altered or partial strings are refused, not a panic.
        for broken in [
            older.replace("t=3", "t=0"),
            older.replace("argon2id", "argon2q"),
            older.rsplit_once('$').unwrap().0.to_string(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$".to_string(),
        ] {
            assert!(!verify(&broken, "a long enough passphrase"), "{broken}");
        }
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
