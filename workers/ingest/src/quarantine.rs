//! The quarantine, as operators see it: list and show quarantined contents, and release
//! one. A release lets one exact content through one policy decision (too many rejected
//! rows, an untrusted writer): the approver's record is kept beside the quarantined
//! object, the object is copied back to its landing key and the gateway, finding the
//! record for that SHA-256 and that reason, accepts it (rows still checked one by one;
//! rejected rows still go to the rejects file). Content quarantined as malware class
//! (executable, archive, polyglot, decompression bomb) or that does not parse under the
//! contract can never be released. Everything goes through the [`ObjectStore`] port.

use bytes::Bytes;
use mlsec_events::ObjectRef;
use mlsec_lake::layout::quarantine as keys;
pub use mlsec_lake::layout::quarantine::UNREGISTERED;
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{BucketRef, ObjectStore},
};
use serde::{Deserialize, Serialize};

use crate::{
    reason::ReasonCode,
    records::{ReasonDocument, ReleaseRecord},
};

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
    #[error("unreadable document: {0}")]
    BadDocument(String),
    #[error(transparent)]
    Store(#[from] WorkError),
}

/// Reads and parses a small JSON document, `None` when it does not exist. A document that
/// exists but does not parse is an error: only the gateway writes these.
async fn document<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Option<T>, WorkError> {
    match store.get_optional(bucket, key, None).await? {
        None => Ok(None),
        Some(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| WorkError::permanent("unreadable_document", format!("s3://{bucket}/{key}: {e}"))),
    }
}

/// The reason document of `<dataset>/<sha256>`, if it is quarantined.
pub async fn reason_document(
    store: &dyn ObjectStore,
    quarantine: &str,
    dataset: &str,
    sha256: &str,
) -> Result<Option<ReasonDocument>, WorkError> {
    document(store, quarantine, &keys::reason(dataset, sha256)).await
}

/// The release record of `<dataset>/<sha256>`, if one was made.
pub async fn release_record(
    store: &dyn ObjectStore,
    quarantine: &str,
    dataset: &str,
    sha256: &str,
) -> Result<Option<ReleaseRecord>, WorkError> {
    document(store, quarantine, &keys::release(dataset, sha256)).await
}

/// One quarantined content, as `mlsec quarantine list` shows it (no data values: the
/// reason document holds positions only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub dataset: String,
    pub sha256: String,
    pub reason_code: ReasonCode,
    pub detail: String,
    pub source_key: String,
    pub quarantined_at_ms: i64,
    pub malware_class: bool,
    pub releasable: bool,
    /// The approver, once released.
    pub released_by: Option<String>,
}

/// Quarantined contents (optionally of one dataset), oldest first.
pub async fn list(
    store: &dyn ObjectStore,
    quarantine: &str,
    dataset: Option<&str>,
) -> Result<Vec<QuarantineEntry>, WorkError> {
    let prefix = dataset.map(|d| format!("{d}/")).unwrap_or_default();
    let all = store.list(quarantine, &prefix).await?;
    let mut out = Vec::new();
    for key in &all {
        let Some((dataset, sha256)) = keys::parse_reason(key) else { continue };
        let Some(doc) = reason_document(store, quarantine, dataset, sha256).await? else { continue };
        let released_by = if all.contains(&keys::release(dataset, sha256)) {
            release_record(store, quarantine, dataset, sha256).await?.map(|r| r.approver)
        } else {
            None
        };
        out.push(QuarantineEntry {
            dataset: dataset.to_string(),
            sha256: sha256.to_string(),
            reason_code: doc.reason_code,
            detail: doc.detail,
            source_key: doc.source.key,
            quarantined_at_ms: doc.quarantined_at_ms,
            malware_class: doc.malware_class,
            releasable: doc.releasable,
            released_by,
        });
    }
    out.sort_by_key(|e| e.quarantined_at_ms);
    Ok(out)
}

/// A quarantined content's reason document and its release record, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    pub reason: ReasonDocument,
    pub release: Option<ReleaseRecord>,
}

/// The reason document of one quarantined content, with its release record if any.
pub async fn show(
    store: &dyn ObjectStore,
    quarantine: &str,
    dataset: &str,
    sha256: &str,
) -> Result<QuarantineView, WorkError> {
    let reason = reason_document(store, quarantine, dataset, sha256)
        .await?
        .ok_or_else(|| WorkError::permanent("not_quarantined", format!("{dataset}/{sha256}")))?;
    let release = release_record(store, quarantine, dataset, sha256).await?;
    Ok(QuarantineView { reason, release })
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
    let doc = match reason_document(store, &quarantine.name, dataset, sha256).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return Err(ReleaseError::NotFound(dataset.into(), sha256.into())),
        Err(WorkError::Permanent { detail, .. }) => return Err(ReleaseError::BadDocument(detail)),
        Err(e) => return Err(e.into()),
    };
    let code = doc.reason_code;
    if code.malware_class() {
        return Err(ReleaseError::MalwareClass(code.as_str().into()));
    }
    if !code.releasable() || dataset == UNREGISTERED || doc.sha256 != sha256 {
        return Err(ReleaseError::NotReleasable(code.as_str().into()));
    }
    let record = ReleaseRecord {
        dataset: dataset.into(),
        sha256: sha256.into(),
        reason_code: code,
        approver: approver.into(),
        reason: reason.into(),
        released_at_ms: now_ms(),
        landing_key: doc.source.key.clone(),
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&record).map_err(|e| ReleaseError::BadDocument(e.to_string()))?);
    // The record first: the gateway must find it when the copy arrives.
    store.put(quarantine, &keys::release(dataset, sha256), body, "application/json").await?;
    let object = &doc.quarantined_object;
    let source = ObjectRef {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        version_id: object.version_id.clone(),
        sha256: sha256.into(),
        size: doc.size,
    };
    store.copy(&source, landing, &doc.source.key).await?;
    Ok(record)
}
