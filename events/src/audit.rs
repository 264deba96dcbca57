//! The audit record (`schemas/audit/AuditRecord.avsc`): one decision of consequence, as a
//! link of the deployment's hash chain. The record is stored as its Avro single-object
//! encoding, whose last 32 bytes are its own hash: SHA-256 of every byte before them.
//! `prev_hash` (the second field, right after `seq`) links it to the record before, so
//! [`links`] can check a chain without decoding whole records.
//!
//! A record holds no data values and no personal data: identities (a person's ARN as STS
//! returned it, a worker's role name), action and reason codes, claim checks and counts.

use std::{collections::BTreeMap, sync::OnceLock};

use apache_avro::{Schema, reader::datum::GenericDatumReader, types::Value, writer::datum::GenericDatumWriter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EventError, ObjectRef, SINGLE_OBJECT_MARKER, fingerprint_of};

/// The `.avsc` text, embedded at build time.
pub const AUDIT_AVSC: &str = include_str!("../../schemas/audit/AuditRecord.avsc");
const RELEASED: &[&str] = &[
    include_str!("../../schemas/audit/released/AuditRecord/v1.avsc"),
    include_str!("../../schemas/audit/released/AuditRecord/v2.avsc"),
];
/// Bytes of a hash.
pub const HASH_LEN: usize = 32;
const HEADER_LEN: usize = 10;

/// The current audit schema.
pub fn audit_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse_str(AUDIT_AVSC).expect("AuditRecord.avsc is valid (checked by tests)"))
}

/// The current schema's fingerprint (computing one canonicalises the schema: far dearer
/// than checking a record).
fn fingerprint() -> &'static [u8; 8] {
    static F: OnceLock<[u8; 8]> = OnceLock::new();
    F.get_or_init(|| fingerprint_of(audit_schema()))
}

/// Released versions (`schemas/audit/released/AuditRecord/`), each readable by this build.
pub fn audit_released() -> &'static [Schema] {
    static S: OnceLock<Vec<Schema>> = OnceLock::new();
    S.get_or_init(|| RELEASED.iter().map(|t| Schema::parse_str(t).expect("released schema is valid")).collect())
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An operator or approver, identified by STS.
    Person,
    /// A pipeline worker, identified by its role.
    Worker,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// A person's ARN as STS `GetCallerIdentity` returned it, or the worker's role name.
    pub id: String,
    pub account: Option<String>,
}

impl Actor {
    pub fn worker(role: impl Into<String>) -> Self {
        Self { kind: ActorKind::Worker, id: role.into(), account: None }
    }
    pub fn person(arn: impl Into<String>, account: impl Into<String>) -> Self {
        Self { kind: ActorKind::Person, id: arn.into(), account: Some(account.into()) }
    }
}

macro_rules! actions {
    ($($variant:ident = $code:literal,)*) => {
        /// What was decided. The string forms are the schema's enum symbols.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditAction {
            $(#[serde(rename = $code)] $variant,)*
        }

        impl AuditAction {
            pub const ALL: &[AuditAction] = &[$(AuditAction::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $code,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($code => Some(AuditAction::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    ObjectQuarantined = "object_quarantined",
    QuarantineReleased = "quarantine_released",
    DatasetRejected = "dataset_rejected",
    ModelTrained = "model_trained",
    GateEvaluated = "gate_evaluated",
    ModelApproved = "model_approved",
    ModelRejected = "model_rejected",
    ModelPromoted = "model_promoted",
    ModelRolledBack = "model_rolled_back",
    ModelRevoked = "model_revoked",
    DlqReplayed = "dlq_replayed",
    DlqArchived = "dlq_archived",
    ModelArchived = "model_archived",
}

/// What a decision was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `dataset`, `model`, `object` or `queue`.
    pub kind: String,
    /// Dataset name, `model@version`, `dataset/sha256` or worker name.
    pub id: String,
}

impl Subject {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Self { kind: kind.into(), id: id.into() }
    }
}

/// What a writer says about one decision; the chain adds position, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: AuditAction,
    pub subject: Subject,
    /// The decision's id (its event id, or the operator command's): the chain holds one
    /// record per decision, so a redelivered message does not record it twice.
    pub decision_id: String,
    pub inputs: Vec<ObjectRef>,
    pub outputs: Vec<ObjectRef>,
    /// A reason code, or an operator's stated reason.
    pub reason: String,
    /// Counts, metrics, filters: never data values.
    pub attributes: BTreeMap<String, String>,
}

impl AuditEntry {
    /// An entry for the log to stamp with its writer's identity (see the `AuditLog` port).
    pub fn new(action: AuditAction, subject: Subject, decision_id: impl Into<String>) -> Self {
        Self {
            actor: Actor::worker("unstamped"),
            action,
            subject,
            decision_id: decision_id.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            reason: String::new(),
            attributes: BTreeMap::new(),
        }
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
    pub fn input(mut self, object: ObjectRef) -> Self {
        self.inputs.push(object);
        self
    }
    pub fn output(mut self, object: ObjectRef) -> Self {
        self.outputs.push(object);
        self
    }
    pub fn attribute(mut self, key: &str, value: impl ToString) -> Self {
        self.attributes.insert(key.into(), value.to_string());
        self
    }
}

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub prev_hash: [u8; HASH_LEN],
    pub time_ms: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    #[serde(with = "hex_hash")]
    pub hash: [u8; HASH_LEN],
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// The hash of a stored record: SHA-256 of every byte before its last 32.
pub fn record_hash(bytes: &[u8]) -> Option<[u8; HASH_LEN]> {
    let body = bytes.len().checked_sub(HASH_LEN)?;
    Some(Sha256::digest(&bytes[..body]).into())
}

/// The chain fields of a stored record, read without decoding it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    pub seq: u64,
    pub prev_hash: [u8; HASH_LEN],
    /// The hash the record carries.
    pub hash: [u8; HASH_LEN],
    /// The hash its bytes have.
    pub computed: [u8; HASH_LEN],
}

/// Fingerprints of every released version (the current one among them).
fn released_fingerprints() -> &'static [[u8; 8]] {
    static F: OnceLock<Vec<[u8; 8]>> = OnceLock::new();
    F.get_or_init(|| audit_released().iter().map(fingerprint_of).collect())
}

/// Reads `seq`, `prev_hash` and both hashes of a record written with the current schema
/// or any released one: every version starts with `seq` and `prev_hash` and ends with
/// `hash`, so a chain begun under v1 still verifies after an upgrade.
pub fn links(bytes: &[u8]) -> Result<Links, EventError> {
    let corrupt = |m: &str| EventError::Corrupt { schema: "mlsec.audit.AuditRecord".into(), message: m.into() };
    if bytes.len() < HEADER_LEN + 1 + 2 * HASH_LEN || bytes[..2] != SINGLE_OBJECT_MARKER {
        return Err(EventError::NotSingleObject);
    }
    let found = &bytes[2..HEADER_LEN];
    if found != &fingerprint()[..] && !released_fingerprints().iter().any(|f| found == &f[..]) {
        return Err(corrupt("written with an unknown schema version"));
    }
    // zig-zag varint
    let (mut raw, mut shift, mut i) = (0u64, 0u32, HEADER_LEN);
    loop {
        let b = *bytes.get(i).ok_or_else(|| corrupt("truncated seq"))?;
        raw |= u64::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(corrupt("seq is not a varint"));
        }
    }
    let seq = (raw >> 1) as i64 ^ -((raw & 1) as i64);
    if seq < 1 || bytes.len() < i + 2 * HASH_LEN {
        return Err(corrupt("bad seq"));
    }
    let n = bytes.len();
    let mut prev_hash = [0u8; HASH_LEN];
    prev_hash.copy_from_slice(&bytes[i..i + HASH_LEN]);
    let mut hash = [0u8; HASH_LEN];
    hash.copy_from_slice(&bytes[n - HASH_LEN..]);
    Ok(Links { seq: seq as u64, prev_hash, hash, computed: record_hash(bytes).expect("length checked") })
}

fn object_value(o: &ObjectRef) -> Value {
    Value::Record(vec![
        ("bucket".into(), Value::String(o.bucket.clone())),
        ("key".into(), Value::String(o.key.clone())),
        (
            "version_id".into(),
            match &o.version_id {
                Some(v) => Value::Union(1, Box::new(Value::String(v.clone()))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        ("sha256".into(), Value::String(o.sha256.clone())),
        ("size".into(), Value::Long(o.size)),
    ])
}

impl AuditRecord {
    /// Makes record `seq` of the chain after `prev_hash`: its bytes and the record with its hash.
    pub fn seal(
        seq: u64,
        prev_hash: [u8; HASH_LEN],
        time_ms: i64,
        entry: AuditEntry,
    ) -> Result<(Self, Vec<u8>), EventError> {
        let mut record = AuditRecord { seq, prev_hash, time_ms, entry, hash: [0; HASH_LEN] };
        let mut bytes = record.encode_with_hash()?;
        let hash = record_hash(&bytes).expect("a record is longer than its hash");
        let n = bytes.len();
        bytes[n - HASH_LEN..].copy_from_slice(&hash);
        record.hash = hash;
        Ok((record, bytes))
    }

    /// The stored form: the single-object encoding, ending with the hash the record carries.
    pub fn encode_with_hash(&self) -> Result<Vec<u8>, EventError> {
        let schema = audit_schema();
        let err = |e: apache_avro::Error| EventError::Encode { schema: "AuditRecord".into(), message: e.to_string() };
        let e = &self.entry;
        let value = Value::Record(vec![
            ("seq".into(), Value::Long(self.seq as i64)),
            ("prev_hash".into(), Value::Fixed(HASH_LEN, self.prev_hash.to_vec())),
            ("time_ms".into(), Value::TimestampMillis(self.time_ms)),
            (
                "actor".into(),
                Value::Record(vec![
                    (
                        "kind".into(),
                        match e.actor.kind {
                            ActorKind::Person => Value::Enum(0, "person".into()),
                            ActorKind::Worker => Value::Enum(1, "worker".into()),
                        },
                    ),
                    ("id".into(), Value::String(e.actor.id.clone())),
                    (
                        "account".into(),
                        match &e.actor.account {
                            Some(a) => Value::Union(1, Box::new(Value::String(a.clone()))),
                            None => Value::Union(0, Box::new(Value::Null)),
                        },
                    ),
                ]),
            ),
            (
                "action".into(),
                Value::Enum(
                    AuditAction::ALL.iter().position(|a| *a == e.action).expect("every action is listed") as u32,
                    e.action.as_str().into(),
                ),
            ),
            (
                "subject".into(),
                Value::Record(vec![
                    ("kind".into(), Value::String(e.subject.kind.clone())),
                    ("id".into(), Value::String(e.subject.id.clone())),
                ]),
            ),
            ("decision_id".into(), Value::String(e.decision_id.clone())),
            ("inputs".into(), Value::Array(e.inputs.iter().map(object_value).collect())),
            ("outputs".into(), Value::Array(e.outputs.iter().map(object_value).collect())),
            ("reason".into(), Value::String(e.reason.clone())),
            (
                "attributes".into(),
                Value::Map(e.attributes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()),
            ),
            ("hash".into(), Value::Fixed(HASH_LEN, self.hash.to_vec())),
        ]);
        let datum = GenericDatumWriter::builder(schema).build().map_err(err)?.write_value_to_vec(value).map_err(err)?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.extend_from_slice(&SINGLE_OBJECT_MARKER);
        out.extend_from_slice(fingerprint());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a stored record (current or released schema). The hash is read, not checked:
    /// compare it with [`record_hash`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let schema = audit_schema();
        let name = "mlsec.audit.AuditRecord";
        let corrupt = |m: String| EventError::Corrupt { schema: name.into(), message: m };
        if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MARKER {
            return Err(EventError::NotSingleObject);
        }
        let found = &bytes[2..HEADER_LEN];
        // Building a reader resolves the schema (far dearer than a record): the current
        // schema's is built once.
        static CURRENT: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
        let current;
        let reader = if found == &fingerprint()[..] {
            match CURRENT.get() {
                Some(r) => r,
                None => {
                    let r = GenericDatumReader::builder(audit_schema()).build().map_err(|e| corrupt(e.to_string()))?;
                    CURRENT.get_or_init(|| r)
                }
            }
        } else {
            let writer = audit_released().iter().find(|r| found == fingerprint_of(r)).ok_or_else(|| {
                EventError::UnknownFingerprint {
                    schema: name.into(),
                    found: hex::encode(found),
                    known: hex::encode(fingerprint_of(schema)),
                }
            })?;
            current = GenericDatumReader::builder(writer)
                .reader_schema(schema)
                .build()
                .map_err(|e| corrupt(e.to_string()))?;
            &current
        };
        let mut datum = &bytes[HEADER_LEN..];
        let value = reader.read_value(&mut datum).map_err(|e| corrupt(e.to_string()))?;
        if !datum.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", datum.len())));
        }
        from_value(value).ok_or_else(|| corrupt("unexpected shape".into()))
    }
}

fn fields(v: Value) -> Option<BTreeMap<String, Value>> {
    match v {
        Value::Record(f) => Some(f.into_iter().collect()),
        _ => None,
    }
}

fn string(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) | Value::Enum(_, s) => Some(s),
        _ => None,
    }
}

fn long(v: Option<Value>) -> Option<i64> {
    match v? {
        Value::Long(n) | Value::TimestampMillis(n) => Some(n),
        Value::Int(n) => Some(i64::from(n)),
        _ => None,
    }
}

fn optional_string(v: Option<Value>) -> Option<Option<String>> {
    match v? {
        Value::Union(_, inner) => match *inner {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s)),
            _ => None,
        },
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s)),
        _ => None,
    }
}

fn hash(v: Option<Value>) -> Option<[u8; HASH_LEN]> {
    match v? {
        Value::Fixed(HASH_LEN, b) => b.try_into().ok(),
        _ => None,
    }
}

fn objects(v: Option<Value>) -> Option<Vec<ObjectRef>> {
    match v? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| {
                let mut f = fields(item)?;
                Some(ObjectRef {
                    bucket: string(f.remove("bucket"))?,
                    key: string(f.remove("key"))?,
                    version_id: optional_string(f.remove("version_id"))?,
                    sha256: string(f.remove("sha256"))?,
                    size: long(f.remove("size"))?,
                })
            })
            .collect(),
        _ => None,
    }
}

fn from_value(v: Value) -> Option<AuditRecord> {
    let mut f = fields(v)?;
    let mut actor = fields(f.remove("actor")?)?;
    let mut subject = fields(f.remove("subject")?)?;
    let kind = match string(actor.remove("kind"))?.as_str() {
        "person" => ActorKind::Person,
        "worker" => ActorKind::Worker,
        _ => return None,
    };
    let attributes = match f.remove("attributes")? {
        Value::Map(m) => m.into_iter().map(|(k, v)| Some((k, string(Some(v))?))).collect::<Option<_>>()?,
        _ => return None,
    };
    Some(AuditRecord {
        seq: u64::try_from(long(f.remove("seq"))?).ok()?,
        prev_hash: hash(f.remove("prev_hash"))?,
        time_ms: long(f.remove("time_ms"))?,
        entry: AuditEntry {
            actor: Actor { kind, id: string(actor.remove("id"))?, account: optional_string(actor.remove("account"))? },
            action: AuditAction::parse(&string(f.remove("action"))?)?,
            subject: Subject { kind: string(subject.remove("kind"))?, id: string(subject.remove("id"))? },
            decision_id: string(f.remove("decision_id"))?,
            inputs: objects(f.remove("inputs"))?,
            outputs: objects(f.remove("outputs"))?,
            reason: string(f.remove("reason"))?,
            attributes,
        },
        hash: hash(f.remove("hash"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        let mut e =
            AuditEntry::new(AuditAction::QuarantineReleased, Subject::new("object", "transactions/ab12"), "cmd-1")
                .reason("known late labels")
                .input(ObjectRef {
                    bucket: "q".into(),
                    key: "k".into(),
                    version_id: None,
                    sha256: "ab".into(),
                    size: 3,
                })
                .attribute("rows", 97);
        e.actor = Actor::person("arn:aws:iam::123456789012:user/ana", "123456789012");
        e
    }

    #[test]
    fn a_sealed_record_decodes_to_itself_and_its_links_are_read_without_decoding() {
        let (record, bytes) = AuditRecord::seal(300, [7; 32], 1_764_000_000_000, entry()).unwrap();
        assert_eq!(AuditRecord::decode(&bytes).unwrap(), record);
        let l = links(&bytes).unwrap();
        assert_eq!((l.seq, l.prev_hash, l.hash), (300, [7; 32], record.hash));
        assert_eq!(l.computed, l.hash);
        assert_eq!(record_hash(&bytes), Some(record.hash));
    }

    #[test]
    fn one_changed_byte_changes_the_computed_hash_but_not_the_carried_one() {
        let (_, mut bytes) = AuditRecord::seal(1, [0; 32], 0, entry()).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        let l = links(&bytes).unwrap();
        assert_ne!(l.computed, l.hash);
    }

    #[test]
    fn every_action_is_a_schema_symbol_in_order() {
        let text: serde_json::Value = serde_json::from_str(AUDIT_AVSC).unwrap();
        let action = text["fields"].as_array().unwrap().iter().find(|f| f["name"] == "action").unwrap();
        let symbols: Vec<&str> =
            action["type"]["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let ours: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(symbols, ours);
    }

    #[test]
    fn a_record_written_under_v1_still_links_and_decodes_after_the_upgrade() {
        // A v1 record: the same datum (v2 only appended an action symbol), the v1
        // fingerprint in its header, its hash over those bytes.
        let (_, mut bytes) = AuditRecord::seal(7, [3; 32], 5, entry()).unwrap();
        let v1 = fingerprint_of(&audit_released()[0]);
        assert_ne!(&v1, fingerprint(), "the current schema is not v1");
        bytes[2..HEADER_LEN].copy_from_slice(&v1);
        let hash = record_hash(&bytes).unwrap();
        let n = bytes.len();
        bytes[n - HASH_LEN..].copy_from_slice(&hash);
        let l = links(&bytes).unwrap();
        assert_eq!((l.seq, l.prev_hash, l.hash), (7, [3; 32], l.computed));
        let r = AuditRecord::decode(&bytes).unwrap();
        assert_eq!((r.seq, r.entry.action), (7, AuditAction::QuarantineReleased));
        // A fingerprint no release has is refused.
        bytes[2] ^= 0xff;
        assert!(links(&bytes).is_err());
        // The new action round-trips under the current schema.
        let mut e = entry();
        e.action = AuditAction::ModelArchived;
        let (_, bytes) = AuditRecord::seal(1, [0; 32], 0, e).unwrap();
        assert_eq!(AuditRecord::decode(&bytes).unwrap().entry.action, AuditAction::ModelArchived);
    }

    #[test]
    fn the_current_audit_schema_reads_every_released_version() {
        let dir = format!("{}/../schemas/audit/released/AuditRecord", env!("CARGO_MANIFEST_DIR"));
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(audit_released().len(), files, "list every file of {dir} in RELEASED");
        for old in audit_released() {
            assert!(
                apache_avro::schema_compatibility::SchemaCompatibility::can_read(old, audit_schema()).is_ok(),
                "the current AuditRecord cannot read a released version"
            );
        }
    }
}
