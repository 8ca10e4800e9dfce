//! The XML of messages 01, 02, 05 and 06 (messages.md): decode the upload, encode the rest.
//! Only structure is checked here; the contract's record checks are in `domain::record_checks`.

pub mod access_notification;
pub mod ack;
pub mod inactive;
pub mod record;
pub mod upload;
mod xml;

/// The namespace of every CP-IS message.
pub const NAMESPACE: &str = "urn:cpis:messages:1";
