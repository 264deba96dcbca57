//! Quarantine release: an approver, with a reason, lets one exact content through a
//! policy decision (too many rejected rows, an untrusted writer). The record is kept
//! beside the quarantined object; the object is copied back to its landing key and the
//! gateway, finding the record for that SHA-256, accepts it (rows still checked one by
//! one; rejected rows still go to the rejects file). Content quarantined as malware class
//! (executable, archive, polyglot, decompression bomb) or that does not parse under the
//! contract can never be released.

use bytes::Bytes;
use mlsec_events::ObjectRef;
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{BucketRef, ObjectStore},
};
use serde::{Deserialize, Serialize};

use crate::reason::ReasonCode;

/// Quarantine directory of objects whose landing prefix matches no contract.
pub const UNREGISTERED: &str = "_unregistered";

/// Key of the reason document of a quarantined content.
pub fn reason_key(dataset: &str, sha256: &str) -> String {
    format!("{dataset}/{sha256}/reason.json")
}

/// Key of the release record of a quarantined content.
pub fn release_key(dataset: &str, sha256: &str) -> String {
    format!("{dataset}/{sha256}/release.json")
}

/// What an approver decided, kept in the quarantine bucket (SSE-KMS, versioned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub dataset: String,
    pub sha256: String,
    pub reason_code: String,
    pub approver: String,
    pub reason: String,
    pub released_at_ms: i64,
    /// Where the object was copied back to.
    pub landing_key: String,
}

impl ReleaseRecord {
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

/// Why a release was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no quarantined object {0}/{1}")]
    NotFound(String, String),
    #[error("{0} is malware class: it can never be released")]
    MalwareClass(String),
    #[error("{0} cannot be released: the content does not parse under its contract; fix it and drop it again")]
    NotReleasable(String),
    #[error("approver and reason are required")]
    MissingApproval,
    #[error("unreadable reason document: {0}")]
    BadDocument(String),
    #[error(transparent)]
    Store(#[from] WorkError),
}

/// Releases the quarantined content `<dataset>/<sha256>`: checks that its reason allows
/// it, records the approval, then copies the object back to its landing key.
pub async fn release(
    store: &dyn ObjectStore,
    quarantine: &BucketRef,
    landing: &BucketRef,
    dataset: &str,
    sha256: &str,
    approver: &str,
    reason: &str,
) -> Result<ReleaseRecord, ReleaseError> {
    if approver.trim().is_empty() || reason.trim().is_empty() {
        return Err(ReleaseError::MissingApproval);
    }
    let doc = crate::get_optional(store, &quarantine.name, &reason_key(dataset, sha256))
        .await?
        .ok_or_else(|| ReleaseError::NotFound(dataset.into(), sha256.into()))?;
    let doc: serde_json::Value = serde_json::from_slice(&doc).map_err(|e| ReleaseError::BadDocument(e.to_string()))?;
    let code_text = doc["reason_code"].as_str().unwrap_or_default().to_string();
    let code = ReasonCode::parse(&code_text).ok_or_else(|| ReleaseError::BadDocument(code_text.clone()))?;
    if code.malware_class() {
        return Err(ReleaseError::MalwareClass(code_text));
    }
    if !code.releasable() || dataset == UNREGISTERED || doc["sha256"].as_str() != Some(sha256) {
        return Err(ReleaseError::NotReleasable(code_text));
    }
    let object = &doc["quarantined_object"];
    let landing_key = doc["source"]["key"].as_str().unwrap_or_default().to_string();
    let (Some(bucket), Some(key)) = (object["bucket"].as_str(), object["key"].as_str()) else {
        return Err(ReleaseError::BadDocument("no quarantined_object".into()));
    };
    let record = ReleaseRecord {
        dataset: dataset.into(),
        sha256: sha256.into(),
        reason_code: code_text,
        approver: approver.into(),
        reason: reason.into(),
        released_at_ms: now_ms(),
        landing_key: landing_key.clone(),
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&record).map_err(|e| ReleaseError::BadDocument(e.to_string()))?);
    // The record first: the gateway must find it when the copy arrives.
    store.put(quarantine, &release_key(dataset, sha256), body, "application/json").await?;
    let source = ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        version_id: object["version_id"].as_str().map(str::to_string),
        sha256: sha256.into(),
        size: doc["size"].as_i64().unwrap_or_default(),
    };
    store.copy(&source, landing, &landing_key).await?;
    Ok(record)
}
