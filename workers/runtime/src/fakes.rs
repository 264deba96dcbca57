//! In-memory ports for unit tests. They behave like the real services where it matters
//! (versions on every put, SSE-KMS recorded per object, conditional registry writes),
//! record every call, and fail on demand with a transient error.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use bytes::Bytes;
use hex::encode;
use mlsec_events::{Envelope, ObjectRef, sha256_hex};
use sha2::{Digest, Sha256};

use crate::{
    Handler, Inbound, WorkError,
    error::OBJECT_MISSING,
    ports::{
        BucketRef, ByteChunks, DROPPED_BY_TAG, Decision, Decisions, EventPublisher, Idempotency, KeyService,
        ModelRecord, ModelRegistry, ObjectHead, ObjectStore, Pointer, Ports, Principal, Principals, Result, Stage,
        StageChange,
    },
};

/// Fails the next `n` calls whose operation name starts with `op`.
#[derive(Default)]
struct Faults(Mutex<HashMap<String, usize>>);

impl Faults {
    fn arm(&self, op: &str, n: usize) {
        self.0.lock().unwrap().insert(op.to_string(), n);
    }
    fn check(&self, op: &str) -> Result<()> {
        let mut f = self.0.lock().unwrap();
        for (k, n) in f.iter_mut() {
            if op.starts_with(k.as_str()) && *n > 0 {
                *n -= 1;
                return Err(WorkError::transient(op, "injected fault"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Bytes,
    pub version_id: String,
    pub kms_key_arn: String,
    pub content_type: String,
    pub tags: Vec<(String, String)>,
}

/// In-memory versioned object store.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), Vec<StoredObject>>>,
    calls: Mutex<Vec<String>>,
    faults: Faults,
}

impl MemoryStore {
    /// Seeds an object as if a producer had uploaded it (landing bucket).
    pub fn seed(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> String {
        self.insert(bucket, key, body.into(), "seed-key", "application/octet-stream")
    }
    /// Seeds a landing object as `mlsec drop` uploads it, tagged with the uploader's
    /// `aws:userid` (the tag the landing bucket policy enforces).
    pub fn seed_dropped_by(&self, bucket: &str, key: &str, body: impl Into<Bytes>, dropper_id: &str) -> String {
        let v = self.seed(bucket, key, body);
        if let Some(o) = self.objects.lock().unwrap().get_mut(&(bucket.into(), key.into())).and_then(|v| v.last_mut()) {
            o.tags.push((DROPPED_BY_TAG.to_string(), dropper_id.to_string()));
        }
        v
    }
    fn insert(&self, bucket: &str, key: &str, body: Bytes, kms: &str, ct: &str) -> String {
        let mut objects = self.objects.lock().unwrap();
        let versions = objects.entry((bucket.into(), key.into())).or_default();
        let version_id = format!("v{}", versions.len() + 1);
        versions.push(StoredObject {
            body,
            version_id: version_id.clone(),
            kms_key_arn: kms.into(),
            content_type: ct.into(),
            tags: Vec::new(),
        });
        version_id
    }
    /// Latest version of an object.
    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.objects.lock().unwrap().get(&(bucket.into(), key.into())).and_then(|v| v.last().cloned())
    }
    /// Every `(bucket, key)` held.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The next `n` calls of `op` (`put`, `get`, `copy`, ...) fail transiently.
    pub fn fail_next(&self, op: &str, n: usize) {
        self.faults.arm(op, n);
    }
    fn enter(&self, op: &str, bucket: &str, key: &str) -> Result<()> {
        self.calls.lock().unwrap().push(format!("{op} {bucket}/{key}"));
        self.faults.check(op)
    }
    fn find_optional(&self, bucket: &str, key: &str, version: Option<&str>) -> Option<StoredObject> {
        let objects = self.objects.lock().unwrap();
        let versions = objects.get(&(bucket.to_string(), key.to_string()))?;
        match version {
            Some(v) => versions.iter().find(|o| o.version_id == v).cloned(),
            None => versions.last().cloned(),
        }
    }
    fn find(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<StoredObject> {
        self.find_optional(bucket, key, version)
            .ok_or_else(|| WorkError::permanent(OBJECT_MISSING, format!("s3://{bucket}/{key}?{version:?}")))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectHead> {
        self.enter("head", bucket, key)?;
        let o = self.find(bucket, key, version)?;
        Ok(ObjectHead {
            size: o.body.len() as i64,
            version_id: Some(o.version_id),
            etag: Some(encode(&Sha256::digest(&o.body)[..16])),
            sse: Some("aws:kms".into()),
            kms_key_id: Some(o.kms_key_arn),
        })
    }
    async fn tags(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        self.enter("tags", bucket, key)?;
        Ok(self.find(bucket, key, version)?.tags)
    }
    async fn get_optional(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Option<Bytes>> {
        self.enter("get", bucket, key)?;
        Ok(self.find_optional(bucket, key, version).map(|o| o.body))
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        self.enter("list", bucket, prefix)?;
        let objects = self.objects.lock().unwrap();
        Ok(objects.keys().filter(|(b, k)| b == bucket && k.starts_with(prefix)).map(|(_, k)| k.clone()).collect())
    }
    async fn get_stream(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ByteChunks> {
        self.enter("get_stream", bucket, key)?;
        let body = self.find(bucket, key, version)?.body;
        // Small chunks so that tests exercise chunk boundaries.
        let chunks: Vec<Result<Bytes>> =
            (0..body.len()).step_by(7).map(|i| Ok(body.slice(i..(i + 7).min(body.len())))).collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }
    async fn put(&self, dest: &BucketRef, key: &str, body: Bytes, content_type: &str) -> Result<ObjectRef> {
        self.enter("put", &dest.name, key)?;
        let sha256 = sha256_hex(&body);
        let size = body.len() as i64;
        let version = self.insert(&dest.name, key, body, &dest.kms_key_arn, content_type);
        Ok(ObjectRef { bucket: dest.name.clone(), key: key.into(), version_id: Some(version), sha256, size })
    }
    async fn put_file(
        &self,
        dest: &BucketRef,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<ObjectRef> {
        let body = std::fs::read(path).map_err(|e| WorkError::transient("read spill file", e))?;
        self.put(dest, key, Bytes::from(body), content_type).await
    }
    async fn copy(&self, source: &ObjectRef, dest: &BucketRef, key: &str) -> Result<ObjectRef> {
        self.enter("copy", &dest.name, key)?;
        let src = self.find(&source.bucket, &source.key, source.version_id.as_deref())?;
        let version = self.insert(&dest.name, key, src.body, &dest.kms_key_arn, &src.content_type);
        Ok(ObjectRef { bucket: dest.name.clone(), key: key.into(), version_id: Some(version), ..source.clone() })
    }
}

/// Records published envelopes.
#[derive(Default)]
pub struct MemoryBus {
    pub published: Mutex<Vec<Envelope>>,
    faults: Faults,
}

impl MemoryBus {
    pub fn events(&self) -> Vec<Envelope> {
        self.published.lock().unwrap().clone()
    }
    pub fn fail_next(&self, n: usize) {
        self.faults.arm("publish", n);
    }
}

#[async_trait]
impl EventPublisher for MemoryBus {
    async fn publish(&self, events: &[Envelope]) -> Result<()> {
        self.faults.check("publish")?;
        self.published.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

/// In-memory registry with the same conditional semantics as the DynamoDB adapter: a
/// transition applies only from the stage and revision it read, a promotion only if the
/// pointer still points where it was read, and all of a change or none of it.
#[derive(Default)]
pub struct MemoryRegistry {
    state: Mutex<RegistryState>,
    faults: Faults,
}

#[derive(Default)]
struct RegistryState {
    rows: BTreeMap<(String, String), ModelRecord>,
    production: HashMap<String, String>,
}

impl MemoryRegistry {
    /// Overwrites a row with no condition: what an attacker holding write access to the
    /// table could do (tests of what the scorer and govern must refuse).
    pub fn tamper(&self, record: &ModelRecord, point_production: bool) {
        let mut s = self.state.lock().unwrap();
        s.rows.insert((record.model_name.clone(), record.model_version.clone()), record.clone());
        if point_production {
            s.production.insert(record.model_name.clone(), record.model_version.clone());
        }
    }
    pub fn fail_next(&self, op: &str, n: usize) {
        self.faults.arm(op, n);
    }
}

#[async_trait]
impl ModelRegistry for MemoryRegistry {
    async fn create(&self, record: &ModelRecord) -> Result<bool> {
        self.faults.check("create")?;
        let mut s = self.state.lock().unwrap();
        let key = (record.model_name.clone(), record.model_version.clone());
        if s.rows.contains_key(&key) {
            return Ok(false);
        }
        s.rows.insert(key, record.clone());
        Ok(true)
    }
    async fn get(&self, model: &str, version: &str) -> Result<Option<ModelRecord>> {
        Ok(self.state.lock().unwrap().rows.get(&(model.into(), version.into())).cloned())
    }
    async fn transition(&self, change: &StageChange) -> Result<bool> {
        self.faults.check("transition")?;
        let mut s = self.state.lock().unwrap();
        let r = &change.record;
        let key = (r.model_name.clone(), r.model_version.clone());
        let holds = |row: Option<&ModelRecord>, stage: Stage, rev: u64| {
            row.is_some_and(|row| row.stage == stage && row.rev + 1 == rev)
        };
        if !holds(s.rows.get(&key), change.expected, r.rev) {
            return Ok(false);
        }
        let current = s.production.get(&r.model_name).cloned();
        match &change.pointer {
            Pointer::Keep => {}
            Pointer::Promote { previous } if current != *previous => return Ok(false),
            Pointer::Clear if current.as_deref() != Some(r.model_version.as_str()) => return Ok(false),
            _ => {}
        }
        if let Some(d) = &change.demote
            && !holds(s.rows.get(&(d.model_name.clone(), d.model_version.clone())), Stage::Production, d.rev)
        {
            return Ok(false);
        }
        s.rows.insert(key, r.clone());
        if let Some(d) = &change.demote {
            s.rows.insert((d.model_name.clone(), d.model_version.clone()), d.clone());
        }
        match change.pointer {
            Pointer::Keep => {}
            Pointer::Promote { .. } => {
                s.production.insert(r.model_name.clone(), r.model_version.clone());
            }
            Pointer::Clear => {
                s.production.remove(&r.model_name);
            }
        }
        Ok(true)
    }
    async fn production(&self, model: &str) -> Result<Option<ModelRecord>> {
        let s = self.state.lock().unwrap();
        Ok(s.production.get(model).and_then(|v| s.rows.get(&(model.to_string(), v.clone()))).cloned())
    }
    async fn versions(&self, model: &str) -> Result<Vec<ModelRecord>> {
        Ok(self.state.lock().unwrap().rows.values().filter(|r| r.model_name == model).cloned().collect())
    }
    async fn list(&self) -> Result<Vec<ModelRecord>> {
        Ok(self.state.lock().unwrap().rows.values().cloned().collect())
    }
}

/// In-memory decisions table (one decision per person, action and round).
#[derive(Default)]
pub struct MemoryDecisions {
    rows: Mutex<BTreeMap<(String, String), Decision>>,
}

#[async_trait]
impl Decisions for MemoryDecisions {
    async fn record(&self, d: &Decision) -> Result<bool> {
        let mut rows = self.rows.lock().unwrap();
        let key = (d.approver_id.clone(), d.key());
        if rows.contains_key(&key) {
            return Ok(false);
        }
        rows.insert(key, d.clone());
        Ok(true)
    }
    async fn for_version(&self, model: &str, version: &str) -> Result<Vec<Decision>> {
        let rows = self.rows.lock().unwrap();
        Ok(rows.values().filter(|d| d.model_name == model && d.model_version == version).cloned().collect())
    }
}

/// In-memory IAM: the principals a test registered, by user id, and the roles whose
/// trust policies pin session names.
#[derive(Default)]
pub struct MemoryPrincipals {
    known: Mutex<BTreeMap<String, String>>,
    pinned_roles: Mutex<HashSet<String>>,
    faults: Faults,
}

impl MemoryPrincipals {
    /// Registers a principal (as IAM would know it).
    pub fn add(&self, user_id: &str, arn: &str) {
        self.known.lock().unwrap().insert(user_id.to_string(), arn.to_string());
    }
    /// Marks a role as one whose trust policy pins session names to people.
    pub fn pin_role(&self, role: &str) {
        self.pinned_roles.lock().unwrap().insert(role.to_string());
    }
    /// The next `n` lookups fail transiently.
    pub fn fail_next(&self, n: usize) {
        self.faults.arm("resolve", n);
    }
}

#[async_trait]
impl Principals for MemoryPrincipals {
    async fn resolve(&self, user_id: &str) -> Result<Option<Principal>> {
        self.faults.check("resolve")?;
        let arn = self.known.lock().unwrap().get(user_id).cloned();
        Ok(arn.map(|arn| {
            let mut p = Principal { user_id: user_id.to_string(), arn, pinned: false };
            p.pinned = p.role().is_some_and(|r| self.pinned_roles.lock().unwrap().contains(r));
            p
        }))
    }
}

/// One claim item of [`MemoryIdempotency`], as the DynamoDB table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimItem {
    InProgress { token: String, until_ms: i64 },
    Done,
}

/// In-memory claims with the table's conditions: a claim succeeds only on a missing item or
/// an in-progress one whose lease ran out; renew and release only with the holder's token.
#[derive(Default)]
pub struct MemoryIdempotency {
    items: Mutex<HashMap<String, ClaimItem>>,
    failures: Mutex<HashMap<String, crate::ports::FailureRecord>>,
    tokens: std::sync::atomic::AtomicU64,
    pub calls: Mutex<Vec<String>>,
    faults: Faults,
}

impl MemoryIdempotency {
    /// Fails the next `n` completions (`complete`).
    pub fn fail_next(&self, n: usize) {
        self.faults.arm("complete", n);
    }
    /// Fails the next `n` calls of operation `op` (`claim`, `renew`, `complete`, `release`).
    pub fn fail_next_op(&self, op: &str, n: usize) {
        self.faults.arm(op, n);
    }
    /// The item for `worker`'s `input_id`, if any.
    pub fn item(&self, worker: &str, input_id: &str) -> Option<ClaimItem> {
        self.items.lock().unwrap().get(&format!("{worker}#{input_id}")).cloned()
    }
    /// `worker`'s failure record of `input_key`, if any.
    pub fn failure(&self, worker: &str, input_key: &str) -> Option<crate::ports::FailureRecord> {
        self.failures.lock().unwrap().get(&format!("{worker}#failure#{input_key}")).cloned()
    }
    fn call(&self, op: &str) -> Result<()> {
        self.calls.lock().unwrap().push(op.to_string());
        self.faults.check(op)
    }
}

#[async_trait]
impl Idempotency for MemoryIdempotency {
    async fn claim(
        &self,
        worker: &str,
        input_id: &str,
        _message_sha256: &str,
        lease_ms: i64,
    ) -> Result<crate::ports::Claim> {
        use crate::ports::{Claim, Lease};
        self.call("claim")?;
        let mut items = self.items.lock().unwrap();
        let key = format!("{worker}#{input_id}");
        let now = crate::now_ms();
        match items.get(&key) {
            Some(ClaimItem::Done) => return Ok(Claim::Done),
            Some(ClaimItem::InProgress { until_ms, .. }) if *until_ms >= now => {
                return Ok(Claim::Held { until_ms: *until_ms });
            }
            _ => {}
        }
        let n = self.tokens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lease = Lease { token: format!("token-{n}"), until_ms: now + lease_ms };
        items.insert(key, ClaimItem::InProgress { token: lease.token.clone(), until_ms: lease.until_ms });
        Ok(Claim::Acquired(lease))
    }
    async fn renew(&self, worker: &str, input_id: &str, token: &str, lease_ms: i64) -> Result<bool> {
        self.call("renew")?;
        let mut items = self.items.lock().unwrap();
        match items.get_mut(&format!("{worker}#{input_id}")) {
            Some(ClaimItem::InProgress { token: t, until_ms }) if t == token => {
                *until_ms = crate::now_ms() + lease_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn complete(&self, worker: &str, input_id: &str, _token: &str) -> Result<()> {
        self.call("complete")?;
        self.items.lock().unwrap().insert(format!("{worker}#{input_id}"), ClaimItem::Done);
        Ok(())
    }
    async fn record_failure(&self, worker: &str, f: &crate::ports::Failure) -> Result<crate::ports::FailureRecord> {
        self.call("record_failure")?;
        let mut failures = self.failures.lock().unwrap();
        let record = failures.entry(format!("{worker}#failure#{}", f.input_key)).or_insert_with(|| {
            crate::ports::FailureRecord {
                worker: worker.to_string(),
                input_key: f.input_key.clone(),
                event_type: None,
                dataset: None,
                correlation_id: None,
                error_class: String::new(),
                reason_code: String::new(),
                operation: None,
                attempts: 0,
                first_failure_ms: f.at_ms,
                last_failure_ms: f.at_ms,
                message_sha256s: Vec::new(),
            }
        });
        record.event_type = f.event_type.clone();
        record.dataset = f.dataset.clone();
        record.correlation_id = f.correlation_id.clone();
        record.error_class = f.error_class.clone();
        record.reason_code = f.reason_code.clone();
        record.operation = f.operation.clone();
        record.attempts += 1;
        record.last_failure_ms = f.at_ms;
        if !record.message_sha256s.contains(&f.message_sha256) {
            record.message_sha256s.push(f.message_sha256.clone());
        }
        Ok(record.clone())
    }
    async fn release(&self, worker: &str, input_id: &str, token: &str) -> Result<()> {
        self.call("release")?;
        let mut items = self.items.lock().unwrap();
        let key = format!("{worker}#{input_id}");
        if matches!(items.get(&key), Some(ClaimItem::InProgress { token: t, .. }) if t == token) {
            items.remove(&key);
        }
        Ok(())
    }
}

/// Local stand-in for KMS. MACs are HMAC-SHA-256 under a secret per key id; signatures
/// are real ECDSA P-256 under a private key derived from the key id, so they verify, fail
/// on any changed byte, and verify offline with [`KeyService::public_key`].
#[derive(Default)]
pub struct FakeKeys {
    pub calls: Mutex<Vec<String>>,
}

impl FakeKeys {
    fn hmac(key_id: &str, msg: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"fake-kms-secret:");
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(msg);
        h.finalize().to_vec()
    }

    /// The private key behind `key_id`.
    pub fn signing_key(key_id: &str) -> p256::ecdsa::SigningKey {
        let secret: [u8; 32] = Sha256::digest(format!("fake-kms-ecc:{key_id}").as_bytes()).into();
        p256::ecdsa::SigningKey::from_slice(&secret).expect("a SHA-256 digest is a valid P-256 scalar")
    }
}

#[async_trait]
impl KeyService for FakeKeys {
    async fn mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        self.calls.lock().unwrap().push(format!("mac {key_id}"));
        Ok(Self::hmac(key_id, message))
    }
    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>> {
        use p256::ecdsa::{Signature, signature::hazmat::PrehashSigner};
        self.calls.lock().unwrap().push(format!("sign {key_id}"));
        let sig: Signature = Self::signing_key(key_id).sign_prehash(digest).map_err(WorkError::fatal)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
    async fn verify(&self, key_id: &str, digest: &[u8; 32], signature: &[u8]) -> Result<bool> {
        use p256::ecdsa::{Signature, signature::hazmat::PrehashVerifier};
        self.calls.lock().unwrap().push(format!("verify {key_id}"));
        let key = *Self::signing_key(key_id).verifying_key();
        Ok(Signature::from_der(signature).is_ok_and(|s| key.verify_prehash(digest, &s).is_ok()))
    }
    async fn sign_message(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        use p256::ecdsa::{Signature, signature::Signer};
        self.calls.lock().unwrap().push(format!("sign_message {key_id}"));
        let sig: Signature = Self::signing_key(key_id).sign(message);
        Ok(sig.to_der().as_bytes().to_vec())
    }
    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>> {
        use p256::pkcs8::EncodePublicKey;
        self.calls.lock().unwrap().push(format!("public_key {key_id}"));
        let der = Self::signing_key(key_id).verifying_key().to_public_key_der().map_err(WorkError::fatal)?;
        Ok(der.as_bytes().to_vec())
    }
}

/// Records appended audit entries in order, one per (writer, decision); fails on demand.
pub struct MemoryAudit {
    actor: mlsec_events::audit::Actor,
    pub entries: Mutex<Vec<mlsec_events::audit::AuditEntry>>,
    faults: Faults,
}

impl Default for MemoryAudit {
    fn default() -> Self {
        Self {
            actor: mlsec_events::audit::Actor::worker("test-worker"),
            entries: Mutex::default(),
            faults: Faults::default(),
        }
    }
}

impl MemoryAudit {
    pub fn entries(&self) -> Vec<mlsec_events::audit::AuditEntry> {
        self.entries.lock().unwrap().clone()
    }
    pub fn fail_next(&self, n: usize) {
        self.faults.arm("append", n);
    }
}

#[async_trait]
impl crate::ports::AuditLog for MemoryAudit {
    async fn append(&self, mut entry: mlsec_events::audit::AuditEntry) -> Result<u64> {
        self.faults.check("append")?;
        entry.actor = self.actor.clone();
        let mut entries = self.entries.lock().unwrap();
        if let Some(i) = entries.iter().position(|e| e.decision_id == entry.decision_id && e.actor == entry.actor) {
            return Ok(i as u64 + 1);
        }
        entries.push(entry);
        Ok(entries.len() as u64)
    }
}

/// A full set of fakes, plus handles to inspect them.
pub struct FakePorts {
    pub store: Arc<MemoryStore>,
    pub bus: Arc<MemoryBus>,
    pub registry: Arc<MemoryRegistry>,
    pub decisions: Arc<MemoryDecisions>,
    pub principals: Arc<MemoryPrincipals>,
    pub idempotency: Arc<MemoryIdempotency>,
    pub keys: Arc<FakeKeys>,
    pub audit: Arc<MemoryAudit>,
}

impl FakePorts {
    pub fn new() -> Self {
        Self {
            store: Arc::default(),
            bus: Arc::default(),
            registry: Arc::default(),
            decisions: Arc::default(),
            principals: Arc::default(),
            idempotency: Arc::default(),
            keys: Arc::default(),
            audit: Arc::default(),
        }
    }
    pub fn ports(&self) -> Ports {
        Ports {
            store: self.store.clone(),
            bus: self.bus.clone(),
            registry: self.registry.clone(),
            decisions: self.decisions.clone(),
            principals: self.principals.clone(),
            idempotency: self.idempotency.clone(),
            keys: self.keys.clone(),
            audit: self.audit.clone(),
        }
    }
}

impl Default for FakePorts {
    fn default() -> Self {
        Self::new()
    }
}

/// A bucket reference for tests.
pub fn bucket(name: &str) -> BucketRef {
    BucketRef { name: name.into(), kms_key_arn: format!("arn:aws:kms:us-east-1:000000000000:key/{name}") }
}

/// Records the visibility changes the Lambda driver asks for; fails on demand.
#[derive(Default)]
pub struct MemoryRetry {
    /// (queue ARN, receipt handle, delay in seconds), in call order.
    pub calls: Mutex<Vec<(String, String, i32)>>,
    faults: Faults,
}

impl MemoryRetry {
    pub fn fail_next(&self, n: usize) {
        self.faults.arm("retry_after", n);
    }
}

#[async_trait]
impl crate::ports::RetryScheduler for MemoryRetry {
    async fn retry_after(&self, queue_arn: &str, receipt_handle: &str, delay_seconds: i32) -> Result<()> {
        self.faults.check("retry_after")?;
        self.calls.lock().unwrap().push((queue_arn.to_string(), receipt_handle.to_string(), delay_seconds));
        Ok(())
    }
}

/// A handler that succeeds, fails transiently or fatally depending on the landing key of
/// the S3 notification (`transient`, `fatal`, anything else succeeds); records the keys.
#[derive(Default)]
pub struct ScriptedHandler {
    pub calls: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for ScriptedHandler {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn handle(&self, message: &Inbound) -> Result<String> {
        let key = message.object_created()?.key.clone();
        self.calls.lock().unwrap().push(key.clone());
        match key.as_str() {
            "transient" => Err(WorkError::transient("test", "throttled")),
            "fatal" => Err(WorkError::fatal("misconfigured")),
            _ => Ok("done".into()),
        }
    }
}

/// A handler that takes `ms` per message and succeeds; counts starts and finishes (a
/// finish missing means the driver stopped the work).
pub struct SlowHandler {
    ms: u64,
    started: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicUsize,
}

impl SlowHandler {
    pub fn new(ms: u64) -> Self {
        Self { ms, started: Default::default(), finished: Default::default() }
    }
    /// (started, finished).
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.started.load(SeqCst), self.finished.load(SeqCst))
    }
}

#[async_trait]
impl Handler for SlowHandler {
    fn name(&self) -> &'static str {
        "slow"
    }
    async fn handle(&self, _: &Inbound) -> Result<String> {
        use std::sync::atomic::Ordering::SeqCst;
        self.started.fetch_add(1, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(self.ms)).await;
        self.finished.fetch_add(1, SeqCst);
        Ok("done".into())
    }
}

/// The body of an SQS message carrying an S3 "Object Created" notification for `key`.
pub fn object_created_body(key: &str) -> String {
    crate::inbound::eventbridge_body(
        "aws.s3",
        "Object Created",
        serde_json::json!({"bucket": {"name": "b"}, "object": {"key": key}}),
    )
}
