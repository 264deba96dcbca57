//! Z5: model registry and governance.
//!
//! Consumes `ModelTrained`. Re-reads the registered artifact and checks its digest,
//! applies the spec's gates (minimum holdout AUC), writes a manifest that binds the
//! artifact digest to the training data digest and the metrics, signs the manifest's
//! SHA-256 with the KMS ECC key (ECDSA P-256; the private key never leaves KMS), moves
//! the model to `production` and emits `ModelPromoted`. A model that fails a gate is
//! moved to `rejected` with the reason and nothing is emitted. Human approval comes later.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mlsec_events::{
    Envelope, ModelPromoted, ModelTrained,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id, sha256_hex,
};
use mlsec_lake::layout::models as keys;
pub use mlsec_lake::manifest::Manifest;
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::Contracts,
    now_ms,
    ports::{BucketRef, Ports, Stage},
};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

pub const WORKER: &str = "govern";

pub struct GovernWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    models: BucketRef,
    signing_key_id: String,
}

impl GovernWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, models: BucketRef, signing_key_id: String) -> Self {
        Self { ports, contracts, models, signing_key_id }
    }
}

#[async_trait]
impl Handler for GovernWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        let ev: ModelTrained = message.event()?;
        let spec = self
            .contracts
            .model(&ev.model_name)
            .ok_or_else(|| WorkError::permanent("unknown_model", format!("no spec for {}", ev.model_name)))?;
        let mut record = self.ports.registry.get(&ev.model_name, &ev.model_version).await?.ok_or_else(|| {
            WorkError::permanent("unregistered_model", format!("{}@{}", ev.model_name, ev.model_version))
        })?;
        let a = &record.artifact;
        let artifact = self.ports.store.get(&a.bucket, &a.key, a.version_id.as_deref()).await?;
        if sha256_hex(&artifact) != a.sha256 || a.sha256 != ev.artifact.sha256 {
            return Err(WorkError::permanent(
                "artifact_digest_mismatch",
                format!("{}@{}", ev.model_name, ev.model_version),
            ));
        }
        if record.stage == Stage::Rejected {
            return Ok(format!("{}@{} was already rejected", ev.model_name, ev.model_version));
        }
        let passed = record.auc >= spec.gates.min_auc;
        let subject = Subject::new("model", format!("{}@{}", ev.model_name, ev.model_version));
        let gate = AuditEntry::new(AuditAction::GateEvaluated, subject.clone(), format!("gate:{}", ev.event_id))
            .reason(if passed { "passed" } else { "failed" })
            .input(record.artifact.clone())
            .attribute("auc", format!("{:.4}", record.auc))
            .attribute("min_auc", format!("{:.4}", spec.gates.min_auc));
        self.ports.audit.append(gate).await?;
        if !passed {
            record.stage = Stage::Rejected;
            record.stage_reason = Some(format!("holdout AUC {:.4} < gate {:.4}", record.auc, spec.gates.min_auc));
            self.ports.registry.set_stage(&record).await?;
            warn!(worker = WORKER, model = %ev.model_name, version = %ev.model_version, auc = record.auc, "gate failed; rejected");
            return Ok(format!("rejected {}@{}", ev.model_name, ev.model_version));
        }
        let manifest = Manifest {
            model_name: record.model_name.clone(),
            model_version: record.model_version.clone(),
            algorithm: record.algorithm.clone(),
            artifact: record.artifact.clone(),
            dataset: record.dataset.clone(),
            dataset_digest: record.dataset_digest.clone(),
            auc: record.auc,
            accuracy: record.accuracy,
            gate_min_auc: spec.gates.min_auc,
            signing_key_id: self.signing_key_id.clone(),
            signed_at_ms: now_ms(),
        };
        let manifest_bytes = manifest.to_bytes();
        let digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();
        let signature = self.ports.keys.sign(&self.signing_key_id, &digest).await?;
        let (name, version) = (&record.model_name, &record.model_version);
        let manifest_ref = self
            .ports
            .store
            .put(&self.models, &keys::manifest(name, version), Bytes::from(manifest_bytes), "application/json")
            .await?;
        let signature_ref = self
            .ports
            .store
            .put(&self.models, &keys::signature(name, version), Bytes::from(signature), "application/octet-stream")
            .await?;
        record.stage = Stage::Production;
        record.stage_reason = Some(format!("holdout AUC {:.4} >= gate {:.4}", record.auc, spec.gates.min_auc));
        record.manifest = Some(manifest_ref.clone());
        record.signature = Some(signature_ref.clone());
        record.signing_key_id = Some(self.signing_key_id.clone());
        self.ports.registry.set_stage(&record).await?;
        let promoted = AuditEntry::new(AuditAction::ModelPromoted, subject, derive_event_id(&ev.event_id, WORKER))
            .reason(record.stage_reason.clone().unwrap_or_default())
            .input(record.artifact.clone())
            .output(manifest_ref.clone())
            .output(signature_ref.clone())
            .attribute("stage", Stage::Production.as_str());
        self.ports.audit.append(promoted).await?;
        let event = ModelPromoted {
            event_id: derive_event_id(&ev.event_id, WORKER),
            correlation_id: ev.correlation_id.clone(),
            model_name: record.model_name.clone(),
            model_version: record.model_version.clone(),
            stage: Stage::Production.as_str().into(),
            artifact_sha256: record.artifact.sha256.clone(),
            manifest: manifest_ref,
            signature: signature_ref,
            signing_key_id: self.signing_key_id.clone(),
            auc: record.auc,
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, model = %event.model_name, version = %event.model_version, "promoted to production");
        Ok(format!("promoted {}@{}", event.model_name, event.model_version))
    }
}
