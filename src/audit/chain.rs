//! The hash chain of the audit trail (CP-IS074), as plain functions: each entry's hash is
//! SHA-256 over its predecessor's hash and a canonical encoding of its own fields.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The predecessor of the first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The fields of an entry that the hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryFields<'a> {
    pub occurred_at: DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub nhs_number: Option<&'a str>,
    pub details: &'a serde_json::Value,
}

/// A stable text form: microsecond time (what PostgreSQL stores), fields as a JSON array, and the
/// details with their keys sorted (serde_json's map is ordered), so that a value read back from
/// `jsonb` encodes exactly as it did when written.
pub fn canonical(fields: &EntryFields<'_>) -> String {
    serde_json::json!([
        fields.occurred_at.timestamp_micros(),
        fields.actor,
        fields.action,
        fields.nhs_number,
        fields.details,
    ])
    .to_string()
}

pub fn entry_hash(prev_hash: &[u8], fields: &EntryFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical(fields).as_bytes());
    h.finalize().into()
}

/// Truncates a time to what PostgreSQL's `timestamptz` keeps, so the hash survives a round trip.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(details: &serde_json::Value) -> EntryFields<'_> {
        EntryFields {
            occurred_at: DateTime::from_timestamp(1_790_000_000, 123_456_000).unwrap(),
            actor: "user:1",
            action: "access.tab_opened",
            nhs_number: Some("9990000018"),
            details,
        }
    }

    #[test]
    fn key_order_in_details_does_not_change_the_hash() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":"x"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":"x","b":1}"#).unwrap();
        assert_eq!(entry_hash(&GENESIS, &fields(&a)), entry_hash(&GENESIS, &fields(&b)));
    }

    #[test]
    fn any_field_or_predecessor_change_changes_the_hash() {
        let d = json!({"a": 1});
        let base = entry_hash(&GENESIS, &fields(&d));
        let mut f = fields(&d);
        f.actor = "user:2";
        assert_ne!(base, entry_hash(&GENESIS, &f));
        let mut f = fields(&d);
        f.nhs_number = None;
        assert_ne!(base, entry_hash(&GENESIS, &f));
        let d2 = json!({"a": 2});
        assert_ne!(base, entry_hash(&GENESIS, &fields(&d2)));
        assert_ne!(base, entry_hash(&[1u8; 32], &fields(&d)));
    }

    #[test]
    fn micros_truncation_is_idempotent() {
        let t = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(to_micros(to_micros(t)), to_micros(t));
    }
}
