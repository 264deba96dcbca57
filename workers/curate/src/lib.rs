//! Z3: curation.
//!
//! Consumes `RawAccepted`. Streams the raw Parquet to a spill file (its SHA-256 must match
//! the event's claim check), checks its schema against the contract, evaluates the
//! contract's data-quality rules ([`dq`]), replaces personal data as the contract says
//! (keyed HMAC-SHA-256 pseudonyms, drop, mask, generalise) and writes, under the
//! curated bucket, `<dataset>/contract=<version>/<source sha256>.parquet`, the DQ report
//! `_dq/...` and the dropped rows `_rejects/...` (row numbers and rule ids, no values).
//! Emits `DatasetCurated` (with the DQ summary) or, when a dataset-level error rule
//! fails, `DatasetRejected` and nothing curated.
//!
//! Pseudonymisation key: the root HMAC key never leaves KMS. Once per domain the worker
//! asks KMS for `HMAC(root, "mlsec/pseudonym/v1/<domain>")` and uses that subkey locally
//! (in memory only). The same CPF gets the same pseudonym in every dataset of a domain;
//! different domains cannot be linked.

pub mod dq;
pub mod error;
pub mod keyset;
pub mod transform;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use error::CurateError;
use mlsec_events::{
    DatasetCurated, DatasetRejected, DatasetRole, DqSummary, Envelope, RawAccepted,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id,
};
use mlsec_lake::{
    columnar::{CURATED_ROW_GROUP_ROWS, PARQUET_CONTENT_TYPE as PARQUET, writer_properties},
    layout::{curated as keys, holdout as holdout_keys},
};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::Contracts,
    now_ms,
    ports::{BucketRef, Ports},
    spill::{SpillFile, download_verified},
};
use tokio::sync::Mutex;
use tracing::{info, warn};

pub const WORKER: &str = "curate";
/// Label of the subkey derivation; bump the version to rotate every pseudonym.
pub const SUBKEY_LABEL: &str = "mlsec/pseudonym/v1";
/// Label of the holdout-routing subkey (per dataset), derived from the same root key.
pub const HOLDOUT_LABEL: &str = "mlsec/holdout/v1";

#[derive(Debug, Clone)]
pub struct CurateConfig {
    pub curated: BucketRef,
    /// Where training datasets' holdouts go: a bucket only govern reads.
    pub holdout: BucketRef,
    /// KMS HMAC key (alias or ARN) at the root of the pseudonymisation subkeys.
    pub pseudonym_key_id: String,
}

pub struct CurateWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    config: CurateConfig,
    subkeys: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl CurateWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, config: CurateConfig) -> Self {
        Self { ports, contracts, config, subkeys: Mutex::default() }
    }

    /// `HMAC(root, label)`, asked of KMS once per label and kept in memory only.
    async fn subkey(&self, label: String) -> Result<Arc<[u8]>, WorkError> {
        let mut cache = self.subkeys.lock().await;
        if let Some(k) = cache.get(&label) {
            return Ok(k.clone());
        }
        let key: Arc<[u8]> = self.ports.keys.mac(&self.config.pseudonym_key_id, label.as_bytes()).await?.into();
        cache.insert(label, key.clone());
        Ok(key)
    }
}

#[async_trait]
impl Handler for CurateWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        let raw: RawAccepted = message.event()?;
        let contract = self
            .contracts
            .dataset(&raw.dataset)
            .ok_or_else(|| WorkError::permanent("unknown_dataset", format!("no contract for {}", raw.dataset)))?;
        if contract.version != raw.contract_version {
            return Err(WorkError::permanent(
                "contract_version_mismatch",
                format!("raw data is contract {}, deployed contract is {}", raw.contract_version, contract.version),
            ));
        }
        let p = &raw.parquet;
        // Streamed to a spill file and verified: memory stays flat in the dataset's size.
        let input = download_verified(self.ports.store.as_ref(), p, &p.sha256, WORKER, &raw.event_id).await?;
        let key_label = format!("{SUBKEY_LABEL}/{}", contract.domain);
        let subkey = self.subkey(key_label.clone()).await?;
        let holdout_split = match contract.role {
            DatasetRole::Training => {
                let key = self.subkey(format!("{HOLDOUT_LABEL}/{}", contract.dataset)).await?;
                Some((key, contract.primary_key().map(|pk| pk.name.clone()), contract.holdout_fraction))
            }
            DatasetRole::Scoring => None,
        };
        let lineage = vec![
            ("mlsec.contract".to_string(), format!("{}@{}", contract.id, contract.version)),
            ("mlsec.raw_sha256".to_string(), p.sha256.clone()),
            ("mlsec.pseudonym_key".to_string(), self.config.pseudonym_key_id.clone()),
            ("mlsec.pseudonym_label".to_string(), key_label.clone()),
        ];
        let (out_spill, out) = SpillFile::create(WORKER, &raw.event_id, ".parquet")?;
        let (rej_spill, rej) = SpillFile::create(WORKER, &raw.event_id, ".rejects.parquet")?;
        let (hold_spill, hold) = SpillFile::create(WORKER, &raw.event_id, ".holdout.parquet")?;
        let split = holdout_split.map(|(key, column, fraction)| transform::HoldoutSplit {
            key: key.to_vec(),
            column,
            fraction,
            out: hold,
        });
        let file = input.open()?;
        let (contract_ref, subkey_ref, lineage_ref) = (contract.clone(), subkey.clone(), lineage.clone());
        // Freshness is judged at ingestion time, so a redelivery reaches the same verdict.
        let as_of = raw.occurred_at_ms;
        let curated = tokio::task::spawn_blocking(move || {
            transform::curate_split(file, &contract_ref, &subkey_ref, &lineage_ref, as_of, out, rej, split)
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                WorkError::permanent("curate_panicked", "the transform panicked on this input")
            } else {
                WorkError::transient("curate task", e.to_string())
            }
        })?
        .map_err(|e| match e {
            CurateError::Input(m) => WorkError::permanent("unreadable_raw_parquet", m),
            CurateError::Output(m) => WorkError::transient("write spill file", m),
        })?;
        drop(input);
        let (dataset, version, sha) = (&contract.dataset, &contract.version, &raw.source.sha256);
        let report = &curated.report;
        let report_ref = self
            .ports
            .store
            .put(&self.config.curated, &keys::dq_report(dataset, version, sha), dq_parquet(report, &lineage)?, PARQUET)
            .await?;
        let summary = DqSummary {
            rules: report.rules.len() as i32,
            passed: report.passed() as i32,
            warnings: report.warnings(),
            rejecting: report.rejecting(),
            rows_read: report.rows_read as i64,
            rows_dropped: report.rows_dropped as i64,
            report: report_ref,
        };
        let event_id = derive_event_id(&raw.event_id, WORKER);
        if !summary.rejecting.is_empty() {
            let event = DatasetRejected {
                event_id,
                correlation_id: raw.correlation_id.clone(),
                dataset: contract.dataset.clone(),
                contract_version: contract.version.clone(),
                raw: raw.parquet.clone(),
                dq: summary,
                occurred_at_ms: now_ms(),
            };
            let audit =
                AuditEntry::new(AuditAction::DatasetRejected, Subject::new("dataset", dataset), &event.event_id)
                    .reason(event.dq.rejecting.join(","))
                    .input(raw.parquet.clone())
                    .output(event.dq.report.clone())
                    .attribute("contract_version", version)
                    .attribute("rows_read", event.dq.rows_read)
                    .attribute("rules_passed", format!("{}/{}", event.dq.passed, event.dq.rules));
            self.ports.audit.append(audit).await?;
            self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
            warn!(worker = WORKER, event_id = %event.event_id, dataset = %event.dataset, rules = ?event.dq.rejecting, "dataset rejected by data-quality rules");
            return Ok(format!("rejected {} by {}", event.dataset, event.dq.rejecting.join(",")));
        }
        let holdout = match contract.role {
            DatasetRole::Training => Some(
                self.ports
                    .store
                    .put_file(
                        &self.config.holdout,
                        &holdout_keys::parquet(dataset, version, sha),
                        &hold_spill.path,
                        PARQUET,
                    )
                    .await?,
            ),
            DatasetRole::Scoring => None,
        };
        if curated.rows_in != curated.rows_out {
            self.ports
                .store
                .put_file(&self.config.curated, &keys::rejects(dataset, version, sha), &rej_spill.path, PARQUET)
                .await?;
        }
        let stored = self
            .ports
            .store
            .put_file(&self.config.curated, &keys::parquet(dataset, version, sha), &out_spill.path, PARQUET)
            .await?;
        if stored.sha256 != curated.sha256 {
            // The spilled file is not what was written (the holdout names the written bytes).
            return Err(WorkError::transient(
                "curated_spill_changed",
                format!("stored {} but wrote {}", stored.sha256, curated.sha256),
            ));
        }
        let event = DatasetCurated {
            event_id,
            correlation_id: raw.correlation_id.clone(),
            dataset: contract.dataset.clone(),
            contract_version: contract.version.clone(),
            role: contract.role,
            dataset_digest: stored.sha256.clone(),
            curated: stored,
            rows_in: curated.rows_in as i64,
            rows_out: (curated.rows_out - curated.rows_holdout) as i64,
            rows_rejected: (curated.rows_in - curated.rows_out) as i64,
            pseudonym_key_id: self.config.pseudonym_key_id.clone(),
            occurred_at_ms: now_ms(),
            pseudonym_key_version: Some(key_label),
            dq: Some(summary),
            holdout_rows: holdout.as_ref().map(|_| curated.rows_holdout as i64),
            holdout,
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, dataset = %event.dataset, rows_in = curated.rows_in, rows_out = curated.rows_out, warnings = ?event.dq.as_ref().map(|d| &d.warnings), "curated");
        Ok(format!("curated {} rows {}/{}", event.dataset, curated.rows_out, curated.rows_in))
    }
}

/// The DQ report as Parquet (one row per rule, counts only).
fn dq_parquet(report: &dq::DqReport, lineage: &[(String, String)]) -> Result<Bytes, WorkError> {
    let batch = report.to_batch();
    let mut out = Vec::new();
    let props = writer_properties(lineage, CURATED_ROW_GROUP_ROWS);
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
        .map_err(|e| WorkError::fatal(format!("dq report: {e}")))?;
    w.write(&batch).map_err(|e| WorkError::fatal(format!("dq report: {e}")))?;
    w.close().map_err(|e| WorkError::fatal(format!("dq report: {e}")))?;
    Ok(Bytes::from(out))
}
