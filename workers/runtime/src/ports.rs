//! Ports: the narrow traits zone logic talks to. Adapters for AWS live in `mlsec-aws`;
//! [`crate::fakes`] holds in-memory ones that record calls and fail on demand.

use std::{pin::Pin, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use mlsec_events::{Envelope, ObjectRef, audit::AuditEntry};

use crate::WorkError;

pub type Result<T, E = WorkError> = std::result::Result<T, E>;

/// A bucket a worker writes to, with the KMS key its objects are encrypted under.
/// There is no way to name a write destination without a key: every object the
/// pipeline writes is SSE-KMS with its zone's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRef {
    pub name: String,
    /// Full ARN of the zone's KMS key (resolved from the alias at start-up).
    pub kms_key_arn: String,
}

/// What `HeadObject` says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: i64,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// `aws:kms` when SSE-KMS.
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
}

/// Object tag under which `mlsec drop` records the uploader's `aws:userid`. The landing
/// bucket policy denies any put whose tag is not the caller's own user id, and any later
/// change of tags, so the tag is AWS's word, not the uploader's.
pub const DROPPED_BY_TAG: &str = "mlsec-dropped-by";

/// A stream of body chunks; memory stays bounded by the chunk size.
pub type ByteChunks = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Object storage (S3).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn head(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectHead>;
    /// Reads a whole (small) object, `None` when it (or that version) does not exist:
    /// records whose absence means something (a ledger entry, a release).
    async fn get_optional(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Option<Bytes>>;
    /// Reads a whole (small) object: model artifacts, manifests, curated datasets. A missing
    /// object is a permanent [`crate::error::OBJECT_MISSING`] failure.
    async fn get(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Bytes> {
        self.get_optional(bucket, key, version).await?.ok_or_else(|| {
            WorkError::permanent(crate::error::OBJECT_MISSING, format!("s3://{bucket}/{key} (version {version:?})"))
        })
    }
    /// The object's tags (of that version).
    async fn tags(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>>;
    /// Keys under `prefix`, in key order (the latest version of each).
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>>;
    /// Streams an object in chunks (landing objects of any size).
    async fn get_stream(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ByteChunks>;
    /// Writes `body` under `key`, SSE-KMS with `dest`'s key. Returns the claim check.
    async fn put(&self, dest: &BucketRef, key: &str, body: Bytes, content_type: &str) -> Result<ObjectRef>;
    /// Writes the file at `path` under `key` (streamed from disk: large outputs are spilled
    /// to a local file rather than held in memory), SSE-KMS with `dest`'s key.
    async fn put_file(
        &self,
        dest: &BucketRef,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<ObjectRef>;
    /// Server-side copy (no bytes through the worker), re-encrypted under `dest`'s key.
    /// `source` carries the caller's verified digest and size of the source version.
    async fn copy(&self, source: &ObjectRef, dest: &BucketRef, key: &str) -> Result<ObjectRef>;
}

/// Reads the object a claim check points to (its pinned version) and verifies its SHA-256
/// against `expected_sha256`; a mismatch (the object changed after the claim was made)
/// is a permanent `digest_mismatch`.
pub async fn get_verified(store: &dyn ObjectStore, object: &ObjectRef, expected_sha256: &str) -> Result<Bytes> {
    let bytes = store.get(&object.bucket, &object.key, object.version_id.as_deref()).await?;
    if mlsec_events::sha256_hex(&bytes) != expected_sha256 {
        return Err(WorkError::permanent(
            "digest_mismatch",
            format!("s3://{}/{} does not match its claim check", object.bucket, object.key),
        ));
    }
    Ok(bytes)
}

/// Publishes pipeline events (EventBridge).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes all `events` or fails; a partial failure is a transient error (the
    /// input is redelivered and the same deterministic ids are published again).
    async fn publish(&self, events: &[Envelope]) -> Result<()>;
}

pub use crate::registry::{
    Approval, Decision, Decisions, Evaluation, ModelRecord, ModelRegistry, Pointer, Principal, Principals,
    ReviewAction, Stage, StageChange, Transition,
};

/// What [`Idempotency::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This delivery holds the input until `until_ms` (renewed while it works).
    Acquired(Lease),
    /// The input was fully handled before: skip it.
    Done,
    /// Another delivery holds a live lease on it until `until_ms`.
    Held { until_ms: i64 },
}

/// Whether the work running now is a retry of an input (its message was received before):
/// an earlier attempt may have written some outputs already. Set by the batch core around
/// a handler; the S3 adapter reads it to skip a put whose key already holds the same
/// digest (a crash between a write and `done` would otherwise write an identical second
/// version). Outside a scope it is `false`: first attempts pay no extra call.
pub mod attempt {
    tokio::task_local! {
        static RETRY: bool;
    }

    /// Runs `f` with [`is_retry`] answering `retry`.
    pub async fn scope<F: std::future::Future>(retry: bool, f: F) -> F::Output {
        RETRY.scope(retry, f).await
    }

    pub fn is_retry() -> bool {
        RETRY.try_with(|r| *r).unwrap_or(false)
    }
}

/// A held claim: the token proves it is this delivery's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub token: String,
    pub until_ms: i64,
}

/// Claims on inputs, per worker: a delivery first claims its input (a conditional write of
/// `in_progress` with a lease), works while renewing the lease, and records `done` only
/// after its effects and next event are durable. Two concurrent deliveries of one input
/// cannot both work on it; a crashed holder's lease runs out and the input is retried.
/// Keys are `<worker>#<input_id>`; IAM (`dynamodb:LeadingKeys`) keeps each worker to its own.
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Claims `input_id` for `lease_ms`, unless it is done or another live lease holds it.
    /// The claim records the message's digest: with the failure records, what proves that a
    /// body in the DLQ came through this worker's queue (`mlsec dlq replay`).
    async fn claim(&self, worker: &str, input_id: &str, message_sha256: &str, lease_ms: i64) -> Result<Claim>;
    /// Extends a held lease by `lease_ms` from now; `Ok(false)` when it is no longer this
    /// token's (it ran out and another delivery took the input).
    async fn renew(&self, worker: &str, input_id: &str, token: &str, lease_ms: i64) -> Result<bool>;
    /// Records the input as done (its effects are durable).
    async fn complete(&self, worker: &str, input_id: &str, token: &str) -> Result<()>;
    /// Gives up a claim after a failed attempt, so that the retry need not wait for the
    /// lease; a no-op when the claim is no longer this token's.
    async fn release(&self, worker: &str, input_id: &str, token: &str) -> Result<()>;
    /// Records one failed attempt (under `<worker>#failure#<input key>`) and returns the
    /// record with its counts: attempts, first and last failure.
    async fn record_failure(&self, worker: &str, failure: &Failure) -> Result<FailureRecord>;
}

/// One failed attempt, as a worker reports it: ids and codes, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The input's identity ([`crate::Inbound::input_id`]), or `body-<sha256>` when the
    /// message did not parse.
    pub input_key: String,
    pub message_sha256: String,
    pub event_type: Option<String>,
    pub dataset: Option<String>,
    pub correlation_id: Option<String>,
    pub error_class: String,
    pub reason_code: String,
    pub operation: Option<String>,
    pub at_ms: i64,
}

/// What a worker has recorded about an input's failures (`mlsec dlq show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    pub worker: String,
    pub input_key: String,
    pub event_type: Option<String>,
    pub dataset: Option<String>,
    pub correlation_id: Option<String>,
    /// Of the last failure.
    pub error_class: String,
    pub reason_code: String,
    pub operation: Option<String>,
    pub attempts: u32,
    pub first_failure_ms: i64,
    pub last_failure_ms: i64,
    /// Digests of every message body that failed for this input.
    pub message_sha256s: Vec<String>,
}

/// The Lambda driver's hold on a message (`ChangeMessageVisibility`): SQS returns a failed
/// message only when its visibility runs out, so the driver shortens it for a retry (and
/// the move to the DLQ) in seconds; the same call renews the in-flight window while a batch
/// is worked on ([`crate::batch::heartbeat`]).
#[async_trait]
pub trait RetryScheduler: Send + Sync {
    /// Makes the message visible again after `delay_seconds`. `queue_arn` is the SQS
    /// record's `eventSourceARN`.
    async fn retry_after(&self, queue_arn: &str, receipt_handle: &str, delay_seconds: i32) -> Result<()>;
}

/// Keys that never leave KMS: MACs for pseudonymisation subkeys, ECDSA signatures.
#[async_trait]
pub trait KeyService: Send + Sync {
    /// HMAC-SHA-256 of `message` under the KMS HMAC key `key_id`.
    async fn mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>>;
    /// ECDSA-SHA-256 signature of a 32-byte digest.
    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>>;
    /// Verifies a signature made by [`KeyService::sign`]; `Ok(false)` when it does not match.
    async fn verify(&self, key_id: &str, digest: &[u8; 32], signature: &[u8]) -> Result<bool>;
    /// ECDSA-SHA-256 signature of `message` (at most 4096 bytes; KMS hashes it): what any
    /// ECDSA verifier checks with the public key alone.
    async fn sign_message(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>>;
    /// The public half of an asymmetric key, DER SubjectPublicKeyInfo (what an auditor
    /// verifies checkpoints with, offline).
    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>>;
}

/// The deployment's audit chain (Z9): every decision of consequence, appended.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one record and returns its position. The writer's identity is the log's
    /// own (a worker's role, an operator's STS identity): `entry.actor` is overwritten, so
    /// no caller can record a decision in another's name. A decision (by `decision_id`)
    /// already recorded by this writer is not recorded again: its position is returned.
    async fn append(&self, entry: AuditEntry) -> Result<u64>;
}

/// Everything a zone handler may touch.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn ObjectStore>,
    pub bus: Arc<dyn EventPublisher>,
    pub registry: Arc<dyn ModelRegistry>,
    /// People's decisions on model versions (read by govern; written by operators).
    pub decisions: Arc<dyn Decisions>,
    /// Vouched user ids → IAM principals (separation of duties).
    pub principals: Arc<dyn Principals>,
    pub idempotency: Arc<dyn Idempotency>,
    pub keys: Arc<dyn KeyService>,
    pub audit: Arc<dyn AuditLog>,
}
