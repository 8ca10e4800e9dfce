//! The secure file transfer between the service and local authorities (messages.md, "Mailbox
//! API"): endpoint tokens, each LA's inbox, and the transmission log.

pub mod inbox;
pub mod tokens;
pub mod transmissions;
