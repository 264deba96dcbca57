//! Z3: curation.
//!
//! Consumes `RawAccepted`. Reads the raw Parquet (its SHA-256 must match the event's
//! claim check), applies the contract's not-null rules row by row, replaces personal
//! data as the contract says (keyed HMAC-SHA-256 pseudonyms, or removal), writes the
//! curated Parquet and emits `DatasetCurated` with the dataset's role.
//!
//! Pseudonymisation key: the root HMAC key never leaves KMS. Once per domain the worker
//! asks KMS for `HMAC(root, "mlsec/pseudonym/v1/<domain>")` and uses that subkey locally
//! (in memory only). The same CPF gets the same pseudonym in every dataset of a domain;
//! different domains cannot be linked.

pub mod transform;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use mlsec_events::{DatasetCurated, Envelope, RawAccepted, derive_event_id};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::Contracts,
    now_ms,
    ports::{BucketRef, Ports, get_verified},
};
use tokio::sync::Mutex;
use tracing::info;

pub const WORKER: &str = "curate";
/// Label of the subkey derivation; bump the version to rotate every pseudonym.
pub const SUBKEY_LABEL: &str = "mlsec/pseudonym/v1";

#[derive(Debug, Clone)]
pub struct CurateConfig {
    pub curated: BucketRef,
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

    pub async fn from_deployment(dep: &mlsec_aws::Deployment, contracts: Arc<Contracts>) -> Result<Self, WorkError> {
        let config = CurateConfig {
            curated: dep.bucket_ref("curated").await?,
            pseudonym_key_id: dep.key_arn("pseudonym").await?,
        };
        Ok(Self::new(dep.ports(WORKER), contracts, config))
    }

    async fn subkey(&self, domain: &str) -> Result<Arc<[u8]>, WorkError> {
        let mut cache = self.subkeys.lock().await;
        if let Some(k) = cache.get(domain) {
            return Ok(k.clone());
        }
        let label = format!("{SUBKEY_LABEL}/{domain}");
        let key: Arc<[u8]> = self.ports.keys.mac(&self.config.pseudonym_key_id, label.as_bytes()).await?.into();
        cache.insert(domain.to_string(), key.clone());
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
        let bytes = get_verified(self.ports.store.as_ref(), p, &p.sha256).await?;
        let subkey = self.subkey(&contract.domain).await?;
        let lineage = vec![
            ("mlsec.contract".to_string(), format!("{}@{}", contract.id, contract.version)),
            ("mlsec.raw_sha256".to_string(), p.sha256.clone()),
            ("mlsec.pseudonym_key".to_string(), self.config.pseudonym_key_id.clone()),
            ("mlsec.pseudonym_label".to_string(), format!("{SUBKEY_LABEL}/{}", contract.domain)),
        ];
        let curated = transform::curate(bytes, contract, &subkey, lineage)
            .map_err(|e| WorkError::permanent("unreadable_raw_parquet", e))?;
        let key = format!("{}/contract={}/{}.parquet", contract.dataset, contract.version, raw.source.sha256);
        let stored = self
            .ports
            .store
            .put(&self.config.curated, &key, Bytes::from(curated.parquet), "application/vnd.apache.parquet")
            .await?;
        let event = DatasetCurated {
            event_id: derive_event_id(&raw.event_id, WORKER),
            correlation_id: raw.correlation_id.clone(),
            dataset: contract.dataset.clone(),
            contract_version: contract.version.clone(),
            role: contract.role,
            dataset_digest: stored.sha256.clone(),
            curated: stored,
            rows_in: curated.rows_in as i64,
            rows_out: curated.rows_out as i64,
            rows_rejected: (curated.rows_in - curated.rows_out) as i64,
            pseudonym_key_id: self.config.pseudonym_key_id.clone(),
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, dataset = %event.dataset, rows_in = curated.rows_in, rows_out = curated.rows_out, "curated");
        Ok(format!("curated {} rows {}/{}", event.dataset, curated.rows_out, curated.rows_in))
    }
}

#[cfg(test)]
mod tests;
