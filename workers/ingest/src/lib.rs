//! Z1 → Z2: the ingestion gateway.
//!
//! Consumes S3 "Object Created" notifications for the landing bucket. The object's
//! landing prefix selects its data contract; the bytes are streamed once through a
//! SHA-256 and the [`validate::CsvGate`]. Accepted objects land in the raw bucket as a
//! byte-identical copy (server-side copy of the exact version that was hashed) and a
//! typed Parquet, under content-addressed keys, and `RawAccepted` is emitted. Anything
//! else goes to the quarantine bucket with a reason document and `ObjectQuarantined`.

pub mod reason;
pub mod sniff;
pub mod validate;

use std::{fs::File, io::BufWriter, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mlsec_events::{Envelope, ObjectQuarantined, ObjectRef, RawAccepted, derive_event_id};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::{Contracts, DatasetContract},
    now_ms,
    ports::{BucketRef, Ports},
    utc_date,
};
use reason::{ReasonCode, Rejection};
use sha2::{Digest, Sha256};
use tracing::info;
use validate::{Accepted, CsvGate};

/// Worker name (queue, rule, event source, idempotency namespace).
pub const WORKER: &str = "ingest";

/// Where the gateway reads and writes.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub landing_bucket: String,
    pub raw: BucketRef,
    pub quarantine: BucketRef,
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

    /// Wires the worker to a deployment.
    pub async fn from_deployment(dep: &mlsec_aws::Deployment, contracts: Arc<Contracts>) -> Result<Self, WorkError> {
        let config = IngestConfig {
            landing_bucket: dep.names.bucket("landing"),
            raw: dep.bucket_ref("raw").await?,
            quarantine: dep.bucket_ref("quarantine").await?,
        };
        Ok(Self::new(dep.ports(WORKER), contracts, config))
    }
}

/// The raw Parquet is spilled to a local file while the object streams through, so
/// memory stays flat in the object's size; the file is removed when this is dropped.
struct SpillFile {
    path: PathBuf,
}

impl SpillFile {
    /// In `MLSEC_SPILL_DIR`, else the system temp dir (Lambda: `/tmp`, ephemeral storage).
    fn create(input_id: &str) -> Result<(Self, BufWriter<File>), WorkError> {
        let dir = std::env::var_os("MLSEC_SPILL_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        // Unique per process and call: the same input may be handled twice concurrently.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = &input_id[..input_id.len().min(16)];
        let path = dir.join(format!("mlsec-ingest-{}-{seq}-{id}.parquet", std::process::id()));
        let file = File::create(&path)
            .map_err(|e| WorkError::transient("create spill file", format!("{}: {e}", path.display())))?;
        Ok((Self { path }, BufWriter::with_capacity(1 << 20, file)))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
        let mut rejection = match contract {
            None => Some(Rejection::new(ReasonCode::UnknownSource, "the landing prefix matches no data contract")),
            Some(c) if head.size < 0 || head.size as u64 > c.max_object_bytes => Some(Rejection::new(
                ReasonCode::TooLarge,
                format!("{} bytes exceed the contract's limit of {}", head.size, c.max_object_bytes),
            )),
            Some(_) => None,
        };
        let mut spill = None;
        let mut gate = match (contract, &rejection) {
            (Some(c), None) => {
                let lineage = vec![
                    ("mlsec.contract".to_string(), format!("{}@{}", c.id, c.version)),
                    ("mlsec.source".to_string(), format!("s3://{bucket}/{key}")),
                ];
                let (file, sink) = SpillFile::create(input_id)?;
                spill = Some(file);
                match CsvGate::with_sink(c, lineage, sink) {
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

    async fn accept(
        &self,
        event_id: String,
        correlation_id: String,
        contract: &DatasetContract,
        source: ObjectRef,
        accepted: Accepted<BufWriter<File>>,
        spill: &SpillFile,
    ) -> Result<String, WorkError> {
        let store = &self.ports.store;
        let sha = source.sha256.clone();
        let dataset = &contract.dataset;
        let original = store.copy(&source, &self.config.raw, &format!("original/{dataset}/{sha}")).await?;
        let parquet_key = format!("{dataset}/ingest_date={}/{sha}.parquet", utc_date(now_ms()));
        accepted.parquet.into_inner().map_err(|e| WorkError::transient("flush spill file", e.error()))?;
        let parquet =
            store.put_file(&self.config.raw, &parquet_key, &spill.path, "application/vnd.apache.parquet").await?;
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
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, dataset = %dataset, rows = accepted.rows, sha256 = %sha, "accepted");
        Ok(format!("accepted {dataset} rows={}", accepted.rows))
    }

    async fn quarantine(
        &self,
        event_id: String,
        correlation_id: String,
        contract: Option<&DatasetContract>,
        source: ObjectRef,
        rejection: Rejection,
    ) -> Result<String, WorkError> {
        let store = &self.ports.store;
        let dataset = contract.map(|c| c.dataset.clone());
        let file = source.key.rsplit('/').next().unwrap_or("object");
        let base = format!("{}/{}", dataset.as_deref().unwrap_or("_unregistered"), source.sha256);
        let quarantined = store.copy(&source, &self.config.quarantine, &format!("{base}/{file}")).await?;
        let document = serde_json::json!({
            "reason_code": rejection.reason_code.as_str(),
            "detail": rejection.detail,
            "evidence": rejection.evidence,
            "source": { "bucket": source.bucket, "key": source.key, "version_id": source.version_id },
            "sha256": source.sha256,
            "size": source.size,
            "contract": contract.map(|c| format!("{}@{}", c.id, c.version)),
            "event_id": event_id,
            "correlation_id": correlation_id,
            "quarantined_at_ms": now_ms(),
        });
        let body = Bytes::from(serde_json::to_vec_pretty(&document).map_err(WorkError::fatal)?);
        let reason_document =
            store.put(&self.config.quarantine, &format!("{base}/reason.json"), body, "application/json").await?;
        let event = ObjectQuarantined {
            event_id,
            correlation_id,
            dataset,
            source_bucket: source.bucket.clone(),
            source_key: source.key.clone(),
            reason_code: rejection.reason_code.as_str().to_string(),
            quarantined,
            reason_document,
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, reason = rejection.reason_code.as_str(), sha256 = %source.sha256, "quarantined");
        Ok(format!("quarantined {}", rejection.reason_code.as_str()))
    }
}

#[async_trait]
impl Handler for IngestWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        let created = message.object_created()?;
        if created.bucket != self.config.landing_bucket {
            return Err(WorkError::permanent(
                "unexpected_bucket",
                format!("notification for bucket {}", created.bucket),
            ));
        }
        let input_id = message.input_id();
        let event_id = derive_event_id(&input_id, WORKER);
        let contract = self.contracts.for_landing_key(&created.key);
        let inspected =
            self.inspect(&input_id, &created.bucket, &created.key, created.version_id.as_deref(), contract).await?;
        match (inspected.verdict, contract, &inspected.spill) {
            (Ok(accepted), Some(c), Some(spill)) => {
                self.accept(event_id, input_id, c, inspected.source, accepted, spill).await
            }
            (Err(rejection), c, _) => self.quarantine(event_id, input_id, c, inspected.source, rejection).await,
            (Ok(_), _, _) => Err(WorkError::fatal("accepted an object without a contract")),
        }
    }
}

#[cfg(test)]
mod tests;
