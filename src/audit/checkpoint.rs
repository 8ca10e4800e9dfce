//! Signed checkpoints of the audit trail (CP-IS074).
//!
//! The hash chain shows that no entry was altered, removed or inserted, unless whoever changed the
//! database recomputed every hash after the change. A checkpoint closes that gap: it signs, with a
//! key held in configuration and never in the database ([`AuditKey`]), the chain's head at the time
//! (its entry id and hash), when, which key (a fingerprint, never the key) and the previous
//! checkpoint's signature. A rewritten chain no longer matches the heads that were signed, and the
//! rewriter cannot sign new ones; a removed checkpoint breaks the next one's `prev_signature`; the
//! last one is named by the `audit.checkpointed` entry written with it, and is logged (id, entry
//! id, signature) so an outside log holds a copy.
//!
//! The signature is HMAC-SHA256 over [`canonical`]. Signing and checking are the plain functions
//! [`sign`] and [`signature_valid`]; [`write`] stores one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{chain, Actor, Event};
use crate::config::AuditKey;
use crate::error::AppError;
use crate::schema::{audit_checkpoints, audit_log};

/// The `prev_signature` of the first checkpoint.
pub const GENESIS_SIGNATURE: [u8; 32] = [0u8; 32];

/// The action of the audit entry written with each checkpoint.
pub const CHECKPOINT_ACTION: &str = "audit.checkpointed";

/// Separates this use of the key from any other (and versions the encoding).
const DOMAIN: &[u8] = b"CP-IS audit checkpoint v1\n";
const KEY_ID_DOMAIN: &[u8] = b"CP-IS audit key id v1\n";

type HmacSha256 = Hmac<Sha256>;

/// What a checkpoint's signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    pub entry_id: i64,
    pub entry_hash: &'a [u8],
    pub created_at: DateTime<Utc>,
    pub key_id: &'a str,
    pub prev_signature: &'a [u8],
}

/// The key's fingerprint, stored beside each checkpoint so a checkpoint signed under another key
/// (before a rotation) is told apart from a forged one: 16 hex digits of a SHA-256 over the key.
/// It reveals nothing usable about the key.
pub fn key_id(key: &AuditKey) -> String {
    let mut h = Sha256::new();
    h.update(KEY_ID_DOMAIN);
    h.update(key.bytes());
    hex::encode(&h.finalize()[..8])
}

/// The bytes signed: a domain label, then each field in a fixed order, the integers as 8 bytes
/// big-endian (the time in microseconds, what PostgreSQL keeps) and the byte strings and the key id
/// each preceded by their length, so no two different checkpoints encode alike.
pub fn canonical(f: &Fields<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(DOMAIN.len() + 8 * 5 + f.entry_hash.len() + f.key_id.len() + f.prev_signature.len());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&f.entry_id.to_be_bytes());
    put(&mut out, f.entry_hash);
    out.extend_from_slice(&f.created_at.timestamp_micros().to_be_bytes());
    put(&mut out, f.key_id.as_bytes());
    put(&mut out, f.prev_signature);
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn mac(key: &AuditKey, f: &Fields<'_>) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key.bytes()).expect("HMAC accepts keys of any length");
    mac.update(&canonical(f));
    mac
}

/// The checkpoint's signature: HMAC-SHA256 under `key` over [`canonical`].
pub fn sign(key: &AuditKey, f: &Fields<'_>) -> [u8; 32] {
    mac(key, f).finalize().into_bytes().into()
}

/// Whether `signature` is this checkpoint's under `key` (compared in constant time).
pub fn signature_valid(key: &AuditKey, f: &Fields<'_>, signature: &[u8]) -> bool {
    mac(key, f).verify_slice(signature).is_ok()
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_checkpoints, check_for_backend(diesel::pg::Pg))]
pub struct Checkpoint {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub entry_id: i64,
    pub entry_hash: Vec<u8>,
    pub key_id: String,
    pub prev_signature: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            entry_id: self.entry_id,
            entry_hash: &self.entry_hash,
            created_at: self.created_at,
            key_id: &self.key_id,
            prev_signature: &self.prev_signature,
        }
    }
}

/// Why a stored checkpoint does not hold, by itself and against its predecessor (not yet against
/// the chain, which the verifier walks): `None` when it holds.
pub fn problem(key: &AuditKey, key_id: &str, prev: Option<&Checkpoint>, c: &Checkpoint) -> Option<String> {
    let expected_prev: &[u8] = prev.map_or(&GENESIS_SIGNATURE[..], |p| &p.signature[..]);
    if c.prev_signature != expected_prev {
        return Some(match prev {
            Some(p) => format!(
                "checkpoint {} does not follow checkpoint {} (its previous signature differs): a checkpoint was \
                 removed or inserted",
                c.id, p.id
            ),
            None => format!(
                "checkpoint {} is the first one kept but names a previous signature: an earlier checkpoint was removed",
                c.id
            ),
        });
    }
    if c.key_id != key_id {
        return Some(format!(
            "checkpoint {} was signed under another key (key id {}), not the configured one (key id {key_id}): it \
             cannot be verified with this key",
            c.id, c.key_id
        ));
    }
    if !signature_valid(key, &c.fields(), &c.signature) {
        return Some(format!(
            "checkpoint {} does not match its signature (the checkpoint was altered or forged)",
            c.id
        ));
    }
    None
}

/// Every checkpoint, in id order.
pub fn all(conn: &mut PgConnection) -> QueryResult<Vec<Checkpoint>> {
    audit_checkpoints::table.order(audit_checkpoints::id).select(Checkpoint::as_select()).load(conn)
}

/// The latest checkpoint.
pub fn last(conn: &mut PgConnection) -> QueryResult<Option<Checkpoint>> {
    audit_checkpoints::table.order(audit_checkpoints::id.desc()).select(Checkpoint::as_select()).first(conn).optional()
}

/// Signs the chain's head now and stores the checkpoint, with its `audit.checkpointed` entry, in
/// the caller's transaction (call it inside one). `None` when the trail is empty (nothing to sign).
///
/// The chain's append lock is taken first, so the head cannot move while it is signed, and the
/// checkpoints have the chain's one order. The checkpoint is logged (id, entry id, signature:
/// no personal data) so that a log kept outside the database holds a copy.
pub fn write(conn: &mut PgConnection, key: &AuditKey, now: DateTime<Utc>) -> Result<Option<Checkpoint>, AppError> {
    super::lock_chain(conn)?;
    // Entries a crash left pending (committed with their action, never chained) are chained
    // first, so that the head signed covers them.
    super::chain_pending_locked(conn, i64::MAX)?;
    // The head is always in audit_log: a purge appends its own entry after the links it leaves.
    let Some((entry_id, entry_hash)) = audit_log::table
        .order(audit_log::id.desc())
        .select((audit_log::id, audit_log::hash))
        .first::<(i64, Vec<u8>)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let prev_signature = last(conn)?.map_or_else(|| GENESIS_SIGNATURE.to_vec(), |c| c.signature);
    let key_id = key_id(key);
    let created_at = chain::to_micros(now);
    let fields =
        Fields { entry_id, entry_hash: &entry_hash, created_at, key_id: &key_id, prev_signature: &prev_signature };
    let signature = sign(key, &fields).to_vec();
    let checkpoint: Checkpoint = diesel::insert_into(audit_checkpoints::table)
        .values((
            audit_checkpoints::created_at.eq(created_at),
            audit_checkpoints::entry_id.eq(entry_id),
            audit_checkpoints::entry_hash.eq(&entry_hash),
            audit_checkpoints::key_id.eq(&key_id),
            audit_checkpoints::prev_signature.eq(&prev_signature),
            audit_checkpoints::signature.eq(&signature),
        ))
        .returning(Checkpoint::as_returning())
        .get_result(conn)?;
    let signature_hex = hex::encode(&checkpoint.signature);
    // Appended at once, while the lock taken above is held: the entry follows the head it signed.
    super::append_now(
        conn,
        vec![Event::new(Actor::Service, CHECKPOINT_ACTION).details(json!({
            "checkpoint_id": checkpoint.id,
            "entry_id": checkpoint.entry_id,
            "key_id": checkpoint.key_id,
            "signature": signature_hex,
        }))],
    )?;
    tracing::info!(
        checkpoint_id = checkpoint.id,
        entry_id = checkpoint.entry_id,
        key_id = %checkpoint.key_id,
        signature = %signature_hex,
        "audit checkpoint signed"
    );
    Ok(Some(checkpoint))
}

/// The checkpoint id and signature an `audit.checkpointed` entry's details name.
pub fn named_in(details: &serde_json::Value) -> Option<(i64, String)> {
    Some((details.get("checkpoint_id")?.as_i64()?, details.get("signature")?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    fn fields<'a>(hash: &'a [u8], key_id: &'a str, prev: &'a [u8]) -> Fields<'a> {
        Fields {
            entry_id: 42,
            entry_hash: hash,
            created_at: DateTime::from_timestamp(1_790_000_000, 123_456_000).unwrap(),
            key_id,
            prev_signature: prev,
        }
    }

    #[test]
    fn a_signature_checks_under_its_key_only() {
        let (k, other) = (key(7), key(8));
        let id = key_id(&k);
        let f = fields(&[1u8; 32], &id, &GENESIS_SIGNATURE);
        let sig = sign(&k, &f);
        assert!(signature_valid(&k, &f, &sig));
        assert!(!signature_valid(&other, &f, &sig));
        assert!(!signature_valid(&k, &f, &sig[..31]), "a shortened signature");
        let mut flipped = sig;
        flipped[0] ^= 1;
        assert!(!signature_valid(&k, &f, &flipped));
        // Deterministic: the same checkpoint signs alike.
        assert_eq!(sig, sign(&k, &f));
    }

    #[test]
    fn every_field_is_covered() {
        let k = key(7);
        let id = key_id(&k);
        let base = fields(&[1u8; 32], &id, &GENESIS_SIGNATURE);
        let sig = sign(&k, &base);
        let hash2 = [2u8; 32];
        let prev2 = [3u8; 32];
        let variants = [
            Fields { entry_id: 43, ..base.clone() },
            Fields { entry_hash: &hash2, ..base.clone() },
            Fields { created_at: base.created_at + chrono::Duration::microseconds(1), ..base.clone() },
            Fields { key_id: "0000000000000000", ..base.clone() },
            Fields { prev_signature: &prev2, ..base.clone() },
        ];
        for v in &variants {
            assert!(!signature_valid(&k, v, &sig), "{v:?}");
        }
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        // Moving a byte from one length-prefixed field to the next changes the encoding.
        let a = Fields { entry_hash: &[1, 2], key_id: "ab", ..fields(&[], "", &[]) };
        let b = Fields { entry_hash: &[1], key_id: "\u{2}ab", ..fields(&[], "", &[]) };
        assert_ne!(canonical(&a), canonical(&b));
        assert!(canonical(&a).starts_with(DOMAIN));
    }

    #[test]
    fn key_ids_are_short_stable_and_differ_by_key() {
        let id = key_id(&key(7));
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, key_id(&key(7)));
        assert_ne!(id, key_id(&key(8)));
        assert!(!id.contains(&hex::encode([7u8; 8])), "not the key itself");
    }

    fn stored(k: &AuditKey, id: i64, prev: &[u8], entry_id: i64) -> Checkpoint {
        let key_id = key_id(k);
        let mut c = Checkpoint {
            id,
            created_at: DateTime::from_timestamp(1_790_000_000 + id, 0).unwrap(),
            entry_id,
            entry_hash: vec![entry_id as u8; 32],
            key_id,
            prev_signature: prev.to_vec(),
            signature: Vec::new(),
        };
        c.signature = sign(k, &c.fields()).to_vec();
        c
    }

    #[test]
    fn problems_name_the_checkpoint_and_why() {
        let k = key(7);
        let id = key_id(&k);
        let first = stored(&k, 1, &GENESIS_SIGNATURE, 10);
        let second = stored(&k, 2, &first.signature, 20);
        assert_eq!(problem(&k, &id, None, &first), None);
        assert_eq!(problem(&k, &id, Some(&first), &second), None);
        // The first one removed: the second names a predecessor that is not there.
        assert!(problem(&k, &id, None, &second).unwrap().contains("earlier checkpoint was removed"));
        let third = stored(&k, 3, &second.signature, 30);
        assert!(problem(&k, &id, Some(&first), &third).unwrap().contains("removed or inserted"));
        // Altered after signing.
        let mut altered = second.clone();
        altered.entry_hash[0] ^= 1;
        assert!(problem(&k, &id, Some(&first), &altered).unwrap().contains("altered or forged"));
        // Signed under another key.
        let other = key(8);
        let foreign = stored(&other, 2, &first.signature, 20);
        let why = problem(&k, &id, Some(&first), &foreign).unwrap();
        assert!(why.contains("another key") && why.contains(&key_id(&other)), "{why}");
    }

    #[test]
    fn checkpointed_entries_name_their_checkpoint() {
        let d = json!({"checkpoint_id": 5, "entry_id": 9, "signature": "ab"});
        assert_eq!(named_in(&d), Some((5, "ab".to_owned())));
        assert_eq!(named_in(&json!({"checkpoint_id": 5})), None);
    }
}
