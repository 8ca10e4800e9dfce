//! Passwords, server-side sessions, role profiles, the signed-in principal and CSRF protection.

pub mod admin;
pub mod csrf;
pub mod password;
pub mod permission;
pub mod principal;
pub mod session_cache;
pub mod session_store;
pub mod sign_in;
pub mod users;

pub use permission::Permission;
pub use principal::{Principal, SignedIn};

/// 256 random bits from the operating system, as 43 URL-safe characters: session keys, CSRF
/// tokens and endpoint tokens are all made this way.
pub fn random_key() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random number generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
