//! The audit chain at rest, and its verification.
//!
//! - Records: `records/<writer>/<seq:020>.avro` in the audit bucket, each the stored form of
//!   an [`AuditRecord`] (its last 32 bytes are its hash). A writer puts only under its own
//!   prefix; the position is the `seq` in the key.
//! - Checkpoints: `checkpoints/<seq:020>.json`, a [`Checkpoint`]: sequence, head hash and
//!   time, signed (ECDSA P-256, over [`Checkpoint::message`]) with the audit key, which signs
//!   nothing else. They make truncation of the tail and deletion of the whole chain
//!   detectable, not only edits in the middle.
//!
//! [`verify`] recomputes every hash and link, checks every checkpoint signature with the
//! audit key's public key, and names each fault. It needs no AWS: the same code verifies
//! the bucket online and a downloaded copy offline.

use std::collections::{BTreeMap, BTreeSet};

use mlsec_events::audit::{HASH_LEN, links};
use p256::{
    ecdsa::{Signature, VerifyingKey, signature::Verifier},
    pkcs8::DecodePublicKey,
};
use serde::{Deserialize, Serialize};

/// Key prefix of the records.
pub const RECORDS: &str = "records/";
/// Key prefix of the checkpoints.
pub const CHECKPOINTS: &str = "checkpoints/";

/// Key of record `seq` written by `writer`.
pub fn record_key(writer: &str, seq: u64) -> String {
    format!("{RECORDS}{writer}/{seq:020}.avro")
}

/// `(writer, seq)` of a record key; `None` for anything else (a writer name is lowercase
/// letters, digits, `-` and `_`).
pub fn parse_record_key(key: &str) -> Option<(&str, u64)> {
    let rest = key.strip_prefix(RECORDS)?;
    let (writer, file) = rest.split_once('/')?;
    let seq = file.strip_suffix(".avro")?;
    let writer_ok = !writer.is_empty()
        && writer.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let seq_ok = seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit());
    (writer_ok && seq_ok).then(|| seq.parse().ok().map(|s| (writer, s)))?
}

/// Key of the checkpoint at `seq`.
pub fn checkpoint_key(seq: u64) -> String {
    format!("{CHECKPOINTS}{seq:020}.json")
}

/// A signed statement: the chain had `seq` records and its head hash was `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// Hex SHA-256 of record `seq`.
    pub head_hash: String,
    pub time_ms: i64,
    /// The audit key that signed it.
    pub key_id: String,
    /// Hex DER ECDSA-SHA-256 signature over [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// What is signed (KMS `MessageType: RAW`, ECDSA_SHA_256): the version tag, seq, head
    /// hash and time, one per line.
    pub fn message_of(seq: u64, head_hash: &str, time_ms: i64) -> Vec<u8> {
        format!("mlsec-audit-checkpoint/v1\n{seq}\n{head_hash}\n{time_ms}\n").into_bytes()
    }

    pub fn message(&self) -> Vec<u8> {
        Self::message_of(self.seq, &self.head_hash, self.time_ms)
    }

    /// Whether the signature verifies under the audit key's public key (DER SPKI, as KMS
    /// `GetPublicKey` returns it).
    pub fn signature_verifies(&self, public_key_der: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (VerifyingKey::from_public_key_der(public_key_der), hex::decode(&self.signature))
        else {
            return false;
        };
        Signature::from_der(&sig).is_ok_and(|s| key.verify(&self.message(), &s).is_ok())
    }
}

/// One stored record as found: its key and bytes.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: String,
    pub bytes: Vec<u8>,
}

/// The chain head as the table holds it (online verification only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
}

/// What is wrong, at which position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The record's bytes do not hash to the hash it carries, or do not decode.
    Edited { seq: u64, key: String },
    /// No record at `count` positions from `seq` on.
    Missing { seq: u64, count: u64 },
    /// A record that is not the chain's at its position: a second record claiming it, or
    /// one the next record (or a checkpoint, or the head) was not chained to.
    Inserted { seq: u64, key: String },
    /// A record stored at one position that claims another.
    Reordered { seq: u64, key: String, claims: u64 },
    /// The chain ends before what a checkpoint or the head vouches for.
    Truncated { after_checkpoint: Option<u64>, chain_end: u64, expected: u64 },
    /// A checkpoint whose signature does not verify under the audit key.
    BadCheckpoint { seq: u64, why: String },
}

impl Fault {
    pub fn seq(&self) -> u64 {
        match self {
            Fault::Edited { seq, .. }
            | Fault::Missing { seq, .. }
            | Fault::Inserted { seq, .. }
            | Fault::Reordered { seq, .. }
            | Fault::BadCheckpoint { seq, .. } => *seq,
            Fault::Truncated { chain_end, .. } => chain_end + 1,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Edited { seq, key } => write!(f, "record {seq} edited: its bytes do not match its hash ({key})"),
            Fault::Missing { seq, count: 1 } => write!(f, "record {seq} missing"),
            Fault::Missing { seq, count } => write!(f, "records {seq} to {} missing", seq + count - 1),
            Fault::Inserted { seq, key } => {
                write!(f, "record {seq} inserted: {key} is not the record the chain links at {seq}")
            }
            Fault::Reordered { seq, key, claims } => {
                write!(f, "records reordered: position {seq} holds record {claims} ({key})")
            }
            Fault::Truncated { after_checkpoint, chain_end, expected } => match after_checkpoint {
                Some(k) => write!(
                    f,
                    "chain truncated after checkpoint {k}: it ends at record {chain_end}, {expected} were vouched for"
                ),
                None => write!(
                    f,
                    "chain truncated before any checkpoint: it ends at record {chain_end}, {expected} were vouched for"
                ),
            },
            Fault::BadCheckpoint { seq, why } => write!(f, "checkpoint {seq}: {why}"),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records on the verified chain.
    pub records: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Last position of the chain (0 when empty).
    pub chain_end: u64,
    /// Every fault, in chain order: the first names the first bad record.
    pub faults: Vec<Fault>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Verifies the records from position `from` (1 for the whole chain) against the
/// checkpoints and, online, the head. Every checkpoint must verify under
/// `public_key_der`, every record must hash to its hash and link to the one before, and
/// the chain must reach every checkpoint and the head. Records are not decoded: the
/// hashes and links are what tampering breaks (`mlsec audit show` decodes, and reports
/// what does not).
pub fn verify(
    records: &[StoredRecord],
    checkpoints: &[Checkpoint],
    head: Option<Head>,
    public_key_der: &[u8],
    from: u64,
) -> Report {
    let from = from.max(1);
    let mut faults = Vec::new();
    // Position → candidates (key, links); positions whose content is unusable.
    let mut at: BTreeMap<u64, Vec<(&str, mlsec_events::audit::Links)>> = BTreeMap::new();
    let mut unusable = BTreeSet::new();
    for r in records {
        let Some((_, position)) = parse_record_key(&r.key) else {
            // Under records/ but not a record key: not put there by a writer.
            faults.push(Fault::Inserted { seq: 0, key: r.key.clone() });
            continue;
        };
        if position < from.saturating_sub(1) {
            continue;
        }
        let edited = || Fault::Edited { seq: position, key: r.key.clone() };
        let Ok(l) = links(&r.bytes) else {
            faults.push(edited());
            unusable.insert(position);
            continue;
        };
        if l.computed != l.hash {
            faults.push(edited());
            unusable.insert(position);
        } else if l.seq != position {
            faults.push(Fault::Reordered { seq: position, key: r.key.clone(), claims: l.seq });
            unusable.insert(position);
        } else {
            at.entry(position).or_default().push((r.key.as_str(), l));
        }
    }
    // Nothing exists beyond the head: records past it were not appended by a writer.
    if let Some(h) = head {
        for (seq, candidates) in at.split_off(&(h.seq + 1)) {
            faults.extend(candidates.into_iter().map(|(key, _)| Fault::Inserted { seq, key: key.to_string() }));
        }
        unusable.retain(|s| *s <= h.seq);
    }
    // Checkpoints: only signed ones vouch for anything.
    let mut vouched: BTreeMap<u64, [u8; HASH_LEN]> = BTreeMap::new();
    let mut good_checkpoints = 0;
    for c in checkpoints {
        let mut hash = [0u8; HASH_LEN];
        if !c.signature_verifies(public_key_der) {
            faults
                .push(Fault::BadCheckpoint { seq: c.seq, why: "signature does not verify under the audit key".into() });
        } else if hex::decode_to_slice(&c.head_hash, &mut hash).is_err() {
            faults.push(Fault::BadCheckpoint { seq: c.seq, why: "head hash is not hex".into() });
        } else {
            good_checkpoints += 1;
            vouched.insert(c.seq, hash);
        }
    }
    // Which candidate is the chain's at each position: the one the next record links to
    // (or a checkpoint or the head vouches for); every other one was inserted.
    let anchor_of = |seq: u64| vouched.get(&seq).copied().or(head.filter(|h| h.seq == seq).map(|h| h.hash));
    let mut chain: BTreeMap<u64, [u8; HASH_LEN]> = BTreeMap::new();
    for (&seq, candidates) in at.iter().rev() {
        let anchor = anchor_of(seq)
            .or_else(|| at.get(&(seq + 1)).and_then(|next| (next.len() == 1).then(|| next[0].1.prev_hash)));
        let chosen = match anchor {
            Some(a) => candidates.iter().find(|(_, l)| l.hash == a),
            None if candidates.len() == 1 => candidates.first(),
            None => None,
        };
        for (key, l) in candidates {
            if chosen.is_some_and(|(k, _)| k == key) {
                chain.insert(seq, l.hash);
            } else {
                faults.push(Fault::Inserted { seq, key: key.to_string() });
            }
        }
    }
    // Forward: no gaps (reported as ranges), every link to the record before.
    let mut positions: Vec<u64> = at.keys().chain(unusable.iter()).copied().filter(|s| *s >= from).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut prev: Option<[u8; HASH_LEN]> =
        if from == 1 { Some([0; HASH_LEN]) } else { chain.get(&(from - 1)).copied() };
    let (mut expected, mut records_ok) = (from, 0);
    for seq in positions {
        if seq > expected {
            faults.push(Fault::Missing { seq: expected, count: seq - expected });
            prev = None;
        }
        expected = seq + 1;
        let Some(hash) = chain.get(&seq).copied() else {
            prev = None;
            continue;
        };
        let l = at[&seq].iter().find(|(_, l)| l.hash == hash).expect("chosen from the candidates").1;
        if let Some(p) = prev
            && l.prev_hash != p
        {
            // The record before is not the one this record was chained to: it was replaced
            // (for record 1: it does not start the chain).
            let key = at.get(&(seq - 1)).and_then(|c| c.first()).map_or(String::new(), |(k, _)| k.to_string());
            faults.push(Fault::Inserted { seq: seq.saturating_sub(1).max(1), key });
        }
        records_ok += 1;
        prev = Some(hash);
    }
    // Nothing vouched for may be missing from the end, and the head must be the chain's.
    let chain_end = expected.saturating_sub(1).max(from.saturating_sub(1));
    let vouched_end = vouched.keys().next_back().copied().into_iter().chain(head.map(|h| h.seq)).max();
    if let Some(expected_end) = vouched_end
        && expected_end > chain_end
    {
        let after_checkpoint = vouched.keys().copied().filter(|s| *s <= chain_end).max();
        faults.push(Fault::Truncated { after_checkpoint, chain_end, expected: expected_end });
    }
    for (seq, hash) in vouched.iter().map(|(s, h)| (*s, *h)).chain(head.map(|h| (h.seq, h.hash))) {
        if let Some(h) = chain.get(&seq)
            && *h != hash
        {
            faults.push(Fault::Inserted { seq, key: String::new() });
        }
    }
    faults.sort_by_key(Fault::seq);
    faults.dedup();
    Report { records: records_ok, checkpoints: good_checkpoints, chain_end, faults }
}

#[cfg(test)]
mod tests {
    use mlsec_events::audit::{AuditAction, AuditEntry, AuditRecord, Subject};
    use p256::{
        ecdsa::{SigningKey, signature::Signer},
        pkcs8::EncodePublicKey,
    };

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn public(k: &SigningKey) -> Vec<u8> {
        k.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec()
    }

    fn checkpoint(k: &SigningKey, seq: u64, hash: [u8; 32]) -> Checkpoint {
        let head_hash = hex::encode(hash);
        let sig: Signature = k.sign(&Checkpoint::message_of(seq, &head_hash, 7));
        Checkpoint { seq, head_hash, time_ms: 7, key_id: "k".into(), signature: hex::encode(sig.to_der().as_bytes()) }
    }

    /// A chain of `n` records by two writers, with checkpoints every `every`.
    fn chain(n: u64, every: u64, k: &SigningKey) -> (Vec<StoredRecord>, Vec<Checkpoint>, Head) {
        let (mut records, mut checkpoints, mut prev) = (Vec::new(), Vec::new(), [0u8; 32]);
        for seq in 1..=n {
            let entry = AuditEntry::new(AuditAction::ModelTrained, Subject::new("model", "m@1"), format!("d{seq}"));
            let (r, bytes) = AuditRecord::seal(seq, prev, seq as i64, entry).unwrap();
            let writer = if seq.is_multiple_of(2) { "train" } else { "govern" };
            records.push(StoredRecord { key: record_key(writer, seq), bytes });
            prev = r.hash;
            if seq.is_multiple_of(every) {
                checkpoints.push(checkpoint(k, seq, r.hash));
            }
        }
        (records, checkpoints, Head { seq: n, hash: prev })
    }

    fn faults(records: &[StoredRecord], checkpoints: &[Checkpoint], head: Option<Head>, k: &SigningKey) -> Vec<Fault> {
        verify(records, checkpoints, head, &public(k), 1).faults
    }

    #[test]
    fn an_untouched_chain_verifies_online_and_offline() {
        let k = key(1);
        let (records, checkpoints, head) = chain(20, 5, &k);
        let online = verify(&records, &checkpoints, Some(head), &public(&k), 1);
        assert!(online.ok(), "{:?}", online.faults);
        assert_eq!((online.records, online.checkpoints, online.chain_end), (20, 4, 20));
        assert!(verify(&records, &checkpoints, None, &public(&k), 1).ok());
        assert!(verify(&records, &checkpoints, Some(head), &public(&k), 11).ok(), "from the middle");
    }

    #[test]
    fn one_changed_byte_is_an_edited_record() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        let mid = records[6].bytes.len() / 2;
        records[6].bytes[mid] ^= 0x01;
        let f = faults(&records, &checkpoints, Some(head), &k);
        assert_eq!(f.first(), Some(&Fault::Edited { seq: 7, key: records[6].key.clone() }), "{f:?}");
    }

    #[test]
    fn a_deleted_record_is_missing() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        records.remove(11);
        assert_eq!(faults(&records, &checkpoints, Some(head), &k), vec![Fault::Missing { seq: 12, count: 1 }]);
    }

    #[test]
    fn a_forged_record_with_a_recomputed_hash_is_inserted() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        // A second record 8, correctly linked to record 7 and hashed, under another prefix.
        let prev = links(&records[6].bytes).unwrap().hash;
        let forged = AuditEntry::new(AuditAction::ModelPromoted, Subject::new("model", "evil@1"), "forged");
        let (_, bytes) = AuditRecord::seal(8, prev, 8, forged).unwrap();
        records.push(StoredRecord { key: record_key("ingest", 8), bytes: bytes.clone() });
        assert_eq!(
            faults(&records, &checkpoints, Some(head), &k),
            vec![Fault::Inserted { seq: 8, key: record_key("ingest", 8) }]
        );
        // The same forgery in place of the real record 8.
        records.pop();
        records[7].bytes = bytes;
        let f = faults(&records, &checkpoints, Some(head), &k);
        assert_eq!(f, vec![Fault::Inserted { seq: 8, key: records[7].key.clone() }]);
    }

    #[test]
    fn two_swapped_records_are_reordered() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        let (a, b) = (records[2].bytes.clone(), records[3].bytes.clone());
        records[2].bytes = b;
        records[3].bytes = a;
        let f = faults(&records, &checkpoints, Some(head), &k);
        assert!(matches!(f.first(), Some(Fault::Reordered { seq: 3, claims: 4, .. })), "{f:?}");
        assert!(matches!(f.get(1), Some(Fault::Reordered { seq: 4, claims: 3, .. })), "{f:?}");
    }

    #[test]
    fn a_truncated_tail_is_named_after_the_last_checkpoint_it_still_reaches() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        records.truncate(13);
        let expected = Fault::Truncated { after_checkpoint: Some(10), chain_end: 13, expected: 20 };
        assert_eq!(faults(&records, &checkpoints, Some(head), &k), vec![expected.clone()]);
        assert_eq!(faults(&records, &checkpoints, None, &k), vec![expected], "offline, by the checkpoint at 20");
    }

    #[test]
    fn deleting_everything_after_the_last_checkpoint_is_caught_by_the_head() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(23, 5, &k);
        records.truncate(20);
        assert_eq!(
            faults(&records, &checkpoints, Some(head), &k),
            vec![Fault::Truncated { after_checkpoint: Some(20), chain_end: 20, expected: 23 }]
        );
        // The whole chain deleted: the checkpoints (or the head) still say it existed.
        assert_eq!(
            faults(&[], &checkpoints, Some(head), &k),
            vec![Fault::Truncated { after_checkpoint: None, chain_end: 0, expected: 23 }]
        );
    }

    #[test]
    fn a_checkpoint_signed_with_another_key_does_not_verify() {
        let k = key(1);
        let (records, mut checkpoints, head) = chain(20, 5, &k);
        let last = links(&records[14].bytes).unwrap().hash;
        checkpoints[2] = checkpoint(&key(2), 15, last);
        let f = faults(&records, &checkpoints, Some(head), &k);
        assert!(matches!(f.as_slice(), [Fault::BadCheckpoint { seq: 15, .. }]), "{f:?}");
    }

    #[test]
    fn records_beyond_the_head_or_under_foreign_keys_are_inserted_and_a_huge_seq_does_not_hang() {
        let k = key(1);
        let (mut records, checkpoints, head) = chain(20, 5, &k);
        // A writer chains two forged records past the head; another claims seq u64::MAX / 2.
        let prev = links(&records[19].bytes).unwrap().hash;
        let forged = AuditEntry::new(AuditAction::ModelPromoted, Subject::new("model", "evil@1"), "f");
        let (r21, b21) = AuditRecord::seal(21, prev, 21, forged.clone()).unwrap();
        let (_, b22) = AuditRecord::seal(22, r21.hash, 22, forged.clone()).unwrap();
        let far = u64::MAX / 2;
        let (_, bfar) = AuditRecord::seal(far, [1; 32], 0, forged).unwrap();
        records.push(StoredRecord { key: record_key("train", 21), bytes: b21 });
        records.push(StoredRecord { key: record_key("train", 22), bytes: b22 });
        records.push(StoredRecord { key: record_key("train", far), bytes: bfar });
        records.push(StoredRecord { key: "records/../escape.avro".into(), bytes: vec![1, 2, 3] });
        let f = faults(&records, &checkpoints, Some(head), &k);
        assert_eq!(
            f,
            vec![
                Fault::Inserted { seq: 0, key: "records/../escape.avro".into() },
                Fault::Inserted { seq: 21, key: record_key("train", 21) },
                Fault::Inserted { seq: 22, key: record_key("train", 22) },
                Fault::Inserted { seq: far, key: record_key("train", far) },
            ]
        );
        // Offline (no head), a far record is one gap, not billions of faults.
        let offline = faults(&records, &checkpoints, None, &k);
        assert!(
            offline.iter().any(|x| matches!(x, Fault::Missing { seq: 23, count } if *count == far - 23)),
            "{offline:?}"
        );
    }
}
