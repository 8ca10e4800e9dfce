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
    canonical_from_text(fields.occurred_at, fields.actor, fields.action, fields.nhs_number, &fields.details.to_string())
}

/// [`canonical`] from the details' compact text (`details.to_string()`), for a writer that sends
/// that text too: the details are serialised once, not copied into a second JSON value first.
/// The same bytes as serde_json writes for the array `[micros, actor, action, nhs_number, details]`.
pub fn canonical_from_text(
    occurred_at: DateTime<Utc>,
    actor: &str,
    action: &str,
    nhs_number: Option<&str>,
    details: &str,
) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let number = nhs_number.map_or_else(|| "null".to_owned(), text);
    format!("[{},{},{},{number},{details}]", occurred_at.timestamp_micros(), text(actor), text(action))
}

/// Whether JSON text holds an escaped NUL character (`\u0000`, as serde_json writes one), which
/// PostgreSQL's `jsonb` refuses. Escape-aware: an escaped backslash followed by `u0000` is text.
pub fn has_escaped_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

pub fn entry_hash(prev_hash: &[u8], fields: &EntryFields<'_>) -> [u8; 32] {
    hash_canonical(prev_hash, &canonical(fields))
}

/// [`entry_hash`] from the entry's [`canonical`] text (the database's `audit_append` computes the
/// same: SHA-256 of the predecessor's hash followed by the text's UTF-8 bytes).
pub fn hash_canonical(prev_hash: &[u8], canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// The links of entries appended after `head`, in order: each entry's predecessor hash and its
/// own hash ([`hash_canonical`]), as two columns for one multi-row insert.
pub fn link<'a>(head: &[u8], canonicals: impl IntoIterator<Item = &'a str>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut prev = head.to_vec();
    let (mut prevs, mut hashes) = (Vec::new(), Vec::new());
    for canonical in canonicals {
        let hash = hash_canonical(&prev, canonical).to_vec();
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    (prevs, hashes)
}

/// The action of the checkpoint entry that each retention purge appends to the chain (CP-IS076).
pub const PURGE_ACTION: &str = "audit.purged";

/// What a purge's checkpoint entry records about the links it left in `audit_purged` (in its
/// details, next to informational counts): how many, the first and last purged id, and a SHA-256
/// over the links in id order. The verifier recomputes it from `audit_purged`, so a link added to
/// or removed from there after the purge no longer matches its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PurgedSegment {
    pub entries: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    pub links_sha256: String,
}

impl PurgedSegment {
    /// The segment a checkpoint's details describe, if they describe one.
    pub fn from_details(details: &serde_json::Value) -> Option<PurgedSegment> {
        serde_json::from_value(details.clone()).ok()
    }
}

/// Accumulates purged links (in increasing id order) into a [`PurgedSegment`].
#[derive(Debug, Clone)]
pub struct SegmentDigest {
    hasher: Sha256,
    entries: u64,
    first_id: Option<i64>,
    last_id: Option<i64>,
}

impl Default for SegmentDigest {
    fn default() -> Self {
        SegmentDigest { hasher: Sha256::new(), entries: 0, first_id: None, last_id: None }
    }
}

impl SegmentDigest {
    pub fn new() -> SegmentDigest {
        SegmentDigest::default()
    }

    /// Adds one purged link: the entry's id, its predecessor's hash and its own hash.
    pub fn add(&mut self, entry_id: i64, prev_hash: &[u8], hash: &[u8]) {
        self.hasher.update(entry_id.to_be_bytes());
        self.hasher.update((prev_hash.len() as u32).to_be_bytes());
        self.hasher.update(prev_hash);
        self.hasher.update((hash.len() as u32).to_be_bytes());
        self.hasher.update(hash);
        self.entries += 1;
        self.first_id.get_or_insert(entry_id);
        self.last_id = Some(entry_id);
    }

    pub fn finish(self) -> PurgedSegment {
        PurgedSegment {
            entries: self.entries,
            first_id: self.first_id,
            last_id: self.last_id,
            links_sha256: hex::encode(self.hasher.finalize()),
        }
    }
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
    fn the_canonical_text_is_serde_jsons_array_of_the_fields() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:11:12.345678Z").unwrap().with_timezone(&Utc);
        let details =
            serde_json::json!({"z": [1, 2.5, null], "a": "quote \" and \\ and \u{1} and é", "m": {"y": true, "b": {}}});
        for (actor, nhs) in [("la:E10000016", Some("9434765919")), ("user:\"odd\"\n", None)] {
            let fields = EntryFields {
                occurred_at: at,
                actor,
                action: "cp.record_replaced",
                nhs_number: nhs,
                details: &details,
            };
            let expected =
                serde_json::json!([at.timestamp_micros(), actor, "cp.record_replaced", nhs, details]).to_string();
            assert_eq!(canonical(&fields), expected);
            assert_eq!(canonical_from_text(at, actor, "cp.record_replaced", nhs, &details.to_string()), expected);
        }
    }

    #[test]
    fn an_escaped_nul_is_found_and_escaped_backslashes_are_not_mistaken_for_one() {
        let text = |v: serde_json::Value| v.to_string();
        assert!(has_escaped_nul(&text(json!({"a": "x\u{0}y"}))));
        assert!(has_escaped_nul(&text(json!(["\u{0}"]))));
        assert!(!has_escaped_nul(&text(json!({"a": "\\u0000"}))), "a backslash, then the text u0000");
        assert!(!has_escaped_nul(&text(json!({"a": "\u{1}\u{1f}é\\"}))));
        assert!(!has_escaped_nul(&text(json!({"u0000": "\\"}))));
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
    fn a_segment_digest_covers_every_link_and_its_order() {
        let links: Vec<(i64, [u8; 32], [u8; 32])> =
            (1..=3).map(|i| (i * 10, [i as u8; 32], [i as u8 + 1; 32])).collect();
        let digest = |links: &[(i64, [u8; 32], [u8; 32])]| {
            let mut d = SegmentDigest::new();
            for (id, p, h) in links {
                d.add(*id, p, h);
            }
            d.finish()
        };
        let all = digest(&links);
        assert_eq!((all.entries, all.first_id, all.last_id), (3, Some(10), Some(30)));
        // One link fewer, one changed, or an id changed: another digest.
        assert_ne!(digest(&links[..2]).links_sha256, all.links_sha256);
        let mut changed = links.clone();
        changed[1].2[0] ^= 1;
        assert_ne!(digest(&changed).links_sha256, all.links_sha256);
        let mut moved = links.clone();
        moved[1].0 = 21;
        assert_ne!(digest(&moved).links_sha256, all.links_sha256);
        // Nothing purged: zero entries, no range.
        let empty = SegmentDigest::new().finish();
        assert_eq!((empty.entries, empty.first_id, empty.last_id), (0, None, None));
        // The details a checkpoint carries round-trip, extra keys notwithstanding.
        let mut details = serde_json::to_value(&all).unwrap();
        details["access_events"] = json!(4);
        assert_eq!(PurgedSegment::from_details(&details), Some(all));
        assert_eq!(PurgedSegment::from_details(&json!({"entries": 1})), None);
    }

    #[test]
    fn links_chain_each_entry_to_the_one_before() {
        let (prevs, hashes) = link(&GENESIS, ["a", "b", "c"]);
        assert_eq!(prevs[0], GENESIS.to_vec());
        assert_eq!(hashes[0], hash_canonical(&GENESIS, "a").to_vec());
        assert_eq!(prevs[1..], hashes[..2]);
        assert_eq!(hashes[2], hash_canonical(&hashes[1], "c").to_vec());
        assert_eq!(link(&GENESIS, []), (vec![], vec![]));
    }

    #[test]
    fn micros_truncation_is_idempotent() {
        let t = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        assert_eq!(to_micros(t).timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(to_micros(to_micros(t)), to_micros(t));
    }
}
