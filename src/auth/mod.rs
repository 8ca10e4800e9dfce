//! Passwords, server-side sessions, role profiles, the signed-in principal and CSRF protection.

pub mod admin;
pub mod csrf;
pub mod password;
pub mod permission;
pub mod principal;
pub mod session_store;
pub mod sign_in;
pub mod users;

pub use permission::Permission;
pub use principal::{Principal, SignedIn};
