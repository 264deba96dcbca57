//! Z1 → Z2: the ingestion gateway.
//!
//! Consumes S3 "Object Created" notifications for the landing bucket. The object's
//! landing prefix selects its data contract, whose `allowedWriters` the S3 requester must
//! be among; the bytes are streamed once through a SHA-256 and the [`validate::Gate`].
//! Accepted objects land in the raw bucket as a byte-identical copy (server-side copy of
//! the exact version that was hashed), a typed Parquet and, if rows were rejected, a
//! rejects Parquet beside it, under content-addressed keys, and `RawAccepted` is emitted.
//! Anything else goes to the quarantine bucket with a reason document and
//! `ObjectQuarantined`. Event ids derive from the content, so the same bytes dropped
//! twice give the same event, and a content ledger in the raw bucket makes the second
//! drop a no-op.

pub mod csv;
pub mod decide;
pub mod jsonl;
pub mod quarantine;
pub mod reason;
pub mod records;
pub mod rows;
pub mod sniff;
pub mod validate;
pub mod values;

use std::{fs::File, io::BufWriter, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mlsec_events::{
    Envelope, ObjectQuarantined, ObjectRef, PipelineEvent, RawAccepted, ReingestRequested,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id,
};
use mlsec_lake::{
    columnar::{DROPPED_BY_KEY, PARQUET_CONTENT_TYPE as PARQUET},
    layout::{quarantine as quarantine_keys, raw as raw_keys},
};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::{Contracts, DatasetContract},
    now_ms,
    ports::{BucketRef, DROPPED_BY_TAG, Ports},
    spill::SpillFile,
    utc_date,
};
use reason::{ReasonCode, Rejection};
use records::{LedgerEntry, ObjectLocation, ReasonDocument, ReleaseRecord};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use validate::{Accepted, Gate};

/// Worker name (queue, rule, event source, idempotency namespace).
pub const WORKER: &str = "ingest";

/// Where the gateway reads and writes.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub landing_bucket: String,
    pub raw: BucketRef,
    pub quarantine: BucketRef,
    /// This deployment's AWS account (`allowedWriters: [self]`), from `MLSEC_ACCOUNT_ID`.
    pub account_id: Option<String>,
}

pub struct IngestWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    config: IngestConfig,
}

impl IngestWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, config: IngestConfig) -> Self {
        Self { ports, contracts, config }
    }
}

/// What the gateway decided about one landing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Copied to raw, typed Parquet written, `RawAccepted` emitted.
    Accepted { dataset: String, rows: u64, rows_rejected: u64 },
    /// Moved to quarantine with a reason document, `ObjectQuarantined` emitted.
    Quarantined { reason: ReasonCode },
    /// The same content was accepted before under this contract version: nothing written,
    /// its recorded event announced again (`reannounced`) when the ledger holds it.
    Duplicate { first_event_id: String, reannounced: bool },
}

impl std::fmt::Display for Ingested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ingested::Accepted { dataset, rows, rows_rejected } => {
                write!(f, "accepted {dataset} rows={rows} rejected={rows_rejected}")
            }
            Ingested::Quarantined { reason } => write!(f, "quarantined {}", reason.as_str()),
            Ingested::Duplicate { first_event_id, reannounced: true } => {
                write!(f, "duplicate content of {first_event_id}, announced again")
            }
            Ingested::Duplicate { first_event_id, reannounced: false } => {
                write!(f, "duplicate content of {first_event_id}")
            }
        }
    }
}

/// The landing object after one streaming pass.
struct Inspected {
    source: ObjectRef,
    verdict: Result<Accepted<BufWriter<File>>, Rejection>,
    spill: Option<SpillFile>,
}

impl IngestWorker {
    async fn inspect(
        &self,
        input_id: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        contract: Option<&DatasetContract>,
    ) -> Result<Inspected, WorkError> {
        let store = &self.ports.store;
        let head = store.head(bucket, key, version).await?;
        // Pin the exact version that is hashed, validated and copied.
        let version = version.map(str::to_string).or(head.version_id);
        // The uploader's `aws:userid`, as the landing bucket policy forced the tag to be.
        let dropped_by = match contract {
            Some(_) => store
                .tags(bucket, key, version.as_deref())
                .await?
                .into_iter()
                .find(|(k, _)| k == DROPPED_BY_TAG)
                .map(|(_, v)| v),
            None => None,
        };
        let mut rejection = match contract {
            None => Some(Rejection::new(ReasonCode::UnknownSource, "the landing prefix matches no data contract")),
            Some(c) => decide::too_large(c, head.size),
        };
        let mut spill = None;
        let mut gate = match (contract, &rejection) {
            (Some(c), None) => {
                let lineage = vec![
                    ("mlsec.contract".to_string(), format!("{}@{}", c.id, c.version)),
                    ("mlsec.source".to_string(), format!("s3://{bucket}/{key}")),
                ];
                let lineage = match &dropped_by {
                    Some(d) => [lineage, vec![(DROPPED_BY_KEY.to_string(), d.clone())]].concat(),
                    None => lineage,
                };
                let (file, sink) = SpillFile::create(WORKER, input_id, ".parquet")?;
                spill = Some(file);
                match Gate::with_sink(c, now_ms(), lineage, sink) {
                    Ok(g) => Some(g),
                    Err(r) => {
                        rejection = Some(r);
                        None
                    }
                }
            }
            _ => None,
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunks = store.get_stream(bucket, key, version.as_deref()).await?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Some(c) = contract
                && rejection.is_none()
                && size > c.ingest.max_object_bytes
            {
                // Larger than HeadObject said (a pinned version cannot change; this guards
                // an unversioned read): stop validating.
                rejection = Some(
                    Rejection::new(ReasonCode::TooLarge, "the object is larger than announced")
                        .rule(format!("maxObjectBytes={}", c.ingest.max_object_bytes)),
                );
                gate = None;
            }
            if let Some(g) = gate.as_mut()
                && let Err(r) = g.push(&chunk)
            {
                // Keep hashing (the quarantine key is content-addressed), stop validating.
                rejection = Some(r);
                gate = None;
            }
        }
        let verdict = match (rejection, gate) {
            (Some(r), _) => Err(r),
            (None, Some(g)) => g.finish(),
            (None, None) => Err(Rejection::new(ReasonCode::UnknownSource, "no contract")),
        };
        let source = ObjectRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version,
            sha256: hex::encode(hasher.finalize()),
            size: size as i64,
        };
        Ok(Inspected { source, verdict, spill })
    }

    /// This content's ledger entry, if it was accepted before (the entry is written last,
    /// after the event, so its presence means fully accepted).
    async fn already_accepted(&self, dataset: &str, sha256: &str) -> Result<Option<LedgerEntry>, WorkError> {
        let key = raw_keys::ledger(dataset, sha256);
        let Some(body) = self.ports.store.get_optional(&self.config.raw.name, &key, None).await? else {
            return Ok(None);
        };
        Ok(Some(match serde_json::from_slice::<LedgerEntry>(&body) {
            Ok(entry) => entry,
            Err(e) => {
                // Present is what counts: the content was accepted before.
                warn!(worker = WORKER, dataset, sha256, error = %e, "unreadable ledger entry; treated as accepted");
                LedgerEntry {
                    event_id: "unknown".into(),
                    rows: 0,
                    rows_rejected: 0,
                    released_by: None,
                    accepted_at_ms: 0,
                    contract_version: None,
                    event: None,
                }
            }
        }))
    }

    /// The approver's release of this exact content, if one is recorded.
    async fn release_of(
        &self,
        dataset: &str,
        sha256: &str,
        reason: ReasonCode,
    ) -> Result<Option<ReleaseRecord>, WorkError> {
        let store = self.ports.store.as_ref();
        match quarantine::release_record(store, &self.config.quarantine.name, dataset, sha256).await {
            Ok(None) => Ok(None),
            // A release covers the reason the approver saw, for this exact content.
            Ok(Some(r)) if r.sha256 == sha256 && r.dataset == dataset && r.reason_code == reason => Ok(Some(r)),
            Ok(Some(_)) | Err(WorkError::Permanent { .. }) => {
                warn!(worker = WORKER, dataset, sha256, "release record does not match the content; ignored");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes the recorded event of content accepted before, unchanged (same id): a
    /// zone that handled it skips it, one whose copy never completed handles it now.
    async fn reannounce(&self, entry: LedgerEntry, dataset: &str, sha: &str) -> Result<Ingested, WorkError> {
        let first_event_id = entry.event_id.clone();
        let Some(event) = entry.event else {
            info!(worker = WORKER, dataset, sha256 = %sha, first_event_id = %first_event_id,
                "the same content was accepted before (no recorded event); nothing to do");
            return Ok(Ingested::Duplicate { first_event_id, reannounced: false });
        };
        let envelope = Envelope::from_value(event)?;
        // The entry is the gateway's own record; it must still be this content's event.
        let recorded: RawAccepted = envelope.open()?;
        if recorded.event_id != first_event_id || recorded.source.sha256 != sha || recorded.dataset != dataset {
            return Err(WorkError::permanent(
                "ledger_mismatch",
                format!("ledger entry of {dataset}/{sha} names another event"),
            ));
        }
        self.ports.bus.publish(&[envelope]).await?;
        info!(worker = WORKER, dataset, sha256 = %sha, first_event_id = %first_event_id,
            "the same content was accepted before; its event is announced again");
        Ok(Ingested::Duplicate { first_event_id, reannounced: true })
    }

    /// `mlsec reingest`: announces an accepted content's recorded `RawAccepted` again,
    /// unchanged (same event id), like a re-drop of the same bytes. The request proves
    /// nothing and needs to: whoever sends one can only make the gateway repeat its own
    /// ledger. Content never accepted, or a ledger entry without its event, is a permanent
    /// failure with a reason code (parked, listed by `mlsec dlq list ingest`).
    async fn reingest(&self, message: &Inbound) -> Result<Ingested, WorkError> {
        // Only from `<prefix>.operator` (topology `operator_sends`), else `forged_source`.
        let req: ReingestRequested = message.event()?;
        // The request's id is the gateway's claim key for it: it must be the one derived
        // from the request itself, never a chosen one (which could name, and mark done,
        // another input's claim).
        if req.event_id != reingest_request_id(&req.dataset, &req.sha256, &req.requested_by, req.occurred_at_ms) {
            return Err(WorkError::permanent("bad_reingest_request", "the request id is not derived from the request"));
        }
        let hex64 = req.sha256.len() == 64 && req.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64 || self.contracts.dataset(&req.dataset).is_none() {
            return Err(WorkError::permanent(
                "bad_reingest_request",
                format!("dataset {:?} is not in the catalogue or {:?} is not a SHA-256", req.dataset, req.sha256),
            ));
        }
        let Some(entry) = self.already_accepted(&req.dataset, &req.sha256).await? else {
            return Err(WorkError::permanent(
                "not_accepted",
                format!("{}/{} was never accepted (no ledger entry)", req.dataset, req.sha256),
            ));
        };
        if entry.event.is_none() {
            return Err(WorkError::permanent(
                "no_recorded_event",
                format!("the ledger entry of {}/{} has no recorded event to announce", req.dataset, req.sha256),
            ));
        }
        info!(worker = WORKER, dataset = %req.dataset, sha256 = %req.sha256, requested_by = %req.requested_by,
            request = %req.event_id, "reingest requested");
        self.reannounce(entry, &req.dataset, &req.sha256).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn accept(
        &self,
        correlation_id: String,
        contract: &DatasetContract,
        source: ObjectRef,
        accepted: Accepted<BufWriter<File>>,
        spill: &SpillFile,
        released: Option<&ReleaseRecord>,
        landed_ms: i64,
    ) -> Result<Ingested, WorkError> {
        let store = &self.ports.store;
        let sha = source.sha256.clone();
        let dataset = &contract.dataset;
        let event_id = derive_event_id(&accepted_content(dataset, &contract.version, &sha), WORKER);
        let original = store.copy(&source, &self.config.raw, &raw_keys::original(dataset, &sha)).await?;
        // The date the object landed (the S3 event's time), not the time of this attempt: a
        // redelivery after midnight writes to the same key instead of a second copy.
        let landed = utc_date(landed_ms);
        accepted.parquet.into_inner().map_err(|e| WorkError::transient("flush spill file", e.error()))?;
        let parquet =
            store.put_file(&self.config.raw, &raw_keys::parquet(dataset, &landed, &sha), &spill.path, PARQUET).await?;
        if !accepted.rejects.is_empty() {
            let names: Vec<String> = contract.columns.iter().map(|c| c.name.clone()).collect();
            let lineage = vec![
                ("mlsec.contract".to_string(), format!("{}@{}", contract.id, contract.version)),
                ("mlsec.source_sha256".to_string(), sha.clone()),
            ];
            let body = Bytes::from(rows::rejects_parquet(&accepted.rejects, &names, lineage));
            store.put(&self.config.raw, &raw_keys::rejects(dataset, &landed, &sha), body, PARQUET).await?;
        }
        let event = RawAccepted {
            event_id,
            correlation_id,
            dataset: dataset.clone(),
            contract_version: contract.version.clone(),
            source,
            original,
            parquet,
            rows: accepted.rows as i64,
            occurred_at_ms: now_ms(),
        };
        let envelope = Envelope::wrap(&event)?;
        self.ports.bus.publish(std::slice::from_ref(&envelope)).await?;
        let ledger = LedgerEntry {
            event_id: event.event_id.clone(),
            rows: accepted.rows,
            rows_rejected: accepted.rejects.len() as u64,
            released_by: released.map(|r| r.approver.clone()),
            accepted_at_ms: now_ms(),
            contract_version: Some(contract.version.clone()),
            event: Some(serde_json::to_value(&envelope).map_err(WorkError::fatal)?),
        };
        let body = Bytes::from(serde_json::to_vec(&ledger).map_err(WorkError::fatal)?);
        store.put(&self.config.raw, &raw_keys::ledger(dataset, &sha), body, "application/json").await?;
        info!(worker = WORKER, event_id = %event.event_id, dataset = %dataset, rows = accepted.rows,
            rows_rejected = accepted.rejects.len(), format = accepted.format, gzip = accepted.gzip,
            released_by = released.map(|r| r.approver.as_str()), sha256 = %sha, "accepted");
        Ok(Ingested::Accepted { dataset: dataset.clone(), rows: ledger.rows, rows_rejected: ledger.rows_rejected })
    }

    async fn quarantine(
        &self,
        correlation_id: String,
        contract: Option<&DatasetContract>,
        source: ObjectRef,
        rejection: Rejection,
    ) -> Result<Ingested, WorkError> {
        let store = &self.ports.store;
        let dataset = contract.map(|c| c.dataset.clone());
        let dataset_dir = dataset.as_deref().unwrap_or(quarantine::UNREGISTERED);
        let code = rejection.reason_code.as_str();
        let event_id = derive_event_id(&format!("quarantined:{dataset_dir}:{}:{code}", source.sha256), WORKER);
        let sha = &source.sha256;
        let quarantined =
            store.copy(&source, &self.config.quarantine, &quarantine_keys::object(dataset_dir, sha)).await?;
        let document = ReasonDocument {
            reason_code: rejection.reason_code,
            detail: rejection.detail,
            evidence: rejection.evidence,
            malware_class: rejection.reason_code.malware_class(),
            releasable: rejection.reason_code.releasable() && contract.is_some(),
            source: ObjectLocation {
                bucket: source.bucket.clone(),
                key: source.key.clone(),
                version_id: source.version_id.clone(),
            },
            quarantined_object: ObjectLocation {
                bucket: quarantined.bucket.clone(),
                key: quarantined.key.clone(),
                version_id: quarantined.version_id.clone(),
            },
            sha256: sha.clone(),
            size: source.size,
            dataset: dataset.clone(),
            contract: contract.map(|c| format!("{}@{}", c.id, c.version)),
            event_id: event_id.clone(),
            correlation_id: correlation_id.clone(),
            quarantined_at_ms: now_ms(),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&document).map_err(WorkError::fatal)?);
        let reason_key = quarantine_keys::reason(dataset_dir, sha);
        let reason_document = store.put(&self.config.quarantine, &reason_key, body, "application/json").await?;
        let audit = AuditEntry::new(
            AuditAction::ObjectQuarantined,
            Subject::new("object", format!("{dataset_dir}/{sha}")),
            &event_id,
        )
        .reason(code)
        .input(source.clone())
        .output(quarantined.clone())
        .output(reason_document.clone())
        .attribute("malware_class", document.malware_class)
        .attribute("releasable", document.releasable);
        self.ports.audit.append(audit).await?;
        let event = ObjectQuarantined {
            event_id,
            correlation_id,
            dataset,
            source_bucket: source.bucket.clone(),
            source_key: source.key.clone(),
            reason_code: code.to_string(),
            quarantined,
            reason_document,
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, reason = code, sha256 = %source.sha256, "quarantined");
        Ok(Ingested::Quarantined { reason: document.reason_code })
    }
}

#[async_trait]
impl Handler for IngestWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        self.ingest(message).await.map(|outcome| outcome.to_string())
    }
}

impl IngestWorker {
    /// Handles one S3 notification and says what was decided.
    pub async fn ingest(&self, message: &Inbound) -> Result<Ingested, WorkError> {
        if message.schema() == Some(ReingestRequested::NAME) {
            return self.reingest(message).await;
        }
        let created = message.object_created()?;
        if created.bucket != self.config.landing_bucket {
            return Err(WorkError::permanent(
                "unexpected_bucket",
                format!("notification for bucket {}", created.bucket),
            ));
        }
        let input_id = message.input_id();
        let contract = self.contracts.for_landing_key(&created.key);
        let inspected =
            self.inspect(&input_id, &created.bucket, &created.key, created.version_id.as_deref(), contract).await?;
        let untrusted = contract
            .and_then(|c| decide::untrusted(c, created.requester.as_deref(), self.config.account_id.as_deref()));
        let (c, accepted) = match decide::object_verdict(contract, inspected.verdict, untrusted.as_ref()) {
            Ok(v) => v,
            Err(rejection) => return self.quarantine(input_id, contract, inspected.source, rejection).await,
        };
        let sha = inspected.source.sha256.clone();
        // Known content short-cuts only a trusted drop: an untrusted writer is quarantined
        // (and seen) even when it sends bytes that were accepted before.
        if untrusted.is_none()
            && let Some(entry) = self.already_accepted(&c.dataset, &sha).await?
            // Under another contract version the content is accepted again, as new data.
            && entry.contract_version.as_ref().is_none_or(|v| *v == c.version)
        {
            return self.reannounce(entry, &c.dataset, &sha).await;
        }
        let policy_rejection = decide::policy_rejection(c, &accepted, untrusted);
        let released = match &policy_rejection {
            Some(r) => self.release_of(&c.dataset, &sha, r.reason_code).await?,
            None => None,
        };
        match (policy_rejection, released) {
            (Some(rejection), None) => self.quarantine(input_id, Some(c), inspected.source, rejection).await,
            (_, released) => {
                let Some(spill) = &inspected.spill else {
                    return Err(WorkError::fatal("accepted an object without a spill file"));
                };
                let landed_ms = created.event_time_ms.unwrap_or_else(now_ms);
                self.accept(input_id, c, inspected.source, accepted, spill, released.as_ref(), landed_ms).await
            }
        }
    }
}

/// The event id of a reingest request: derived from its fields, so no sender picks it.
pub fn reingest_request_id(dataset: &str, sha256: &str, requested_by: &str, at_ms: i64) -> String {
    derive_event_id(&format!("reingest|{dataset}|{sha256}|{requested_by}|{at_ms}"), "operator")
}

/// What an accepted content's event id derives from: the dataset, the contract version it
/// was validated under and its digest. Redeliveries and re-drops under one contract give
/// one id; the same bytes accepted under a new contract version are a new event.
pub fn accepted_content(dataset: &str, contract_version: &str, sha256: &str) -> String {
    format!("accepted:{dataset}:{contract_version}:{sha256}")
}

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;
