//! Z6 (batch): scoring.
//!
//! Consumes `DatasetCurated` for scoring datasets. Looks up the production version of
//! the model the contract names and verifies, before scoring anything: that the row is
//! at stage `production` (a revoked version has no `@production` pointer); the manifest
//! envelope at exactly the version and digest the registry pins, its KMS signature under
//! the deployment's governance key, that it names this model, version and stage and binds
//! the approvals the spec requires (distinct people matching its `approvers`); and the
//! artifact at the version the manifest pins, by digest. Any mismatch refuses with
//! `model_integrity`. Then it scores every row, writes the scored Parquet (id and subject
//! columns once each, score, flag, model version) and emits `RecordsScored`. With no production model yet the failure is transient: the message is
//! retried, then parked in the DLQ for replay once a model is promoted.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use async_trait::async_trait;
use bytes::Bytes;
use mlsec_events::{DatasetCurated, DatasetRole, Envelope, RecordsScored, derive_event_id};

use mlsec_lake::{
    columnar::{CURATED_ROW_GROUP_ROWS, PARQUET_CONTENT_TYPE, writer_properties},
    layout::scored as keys,
    manifest::load_verified,
    model::{Artifact, ModelError, SMARTCORE_VERSION, featurize},
};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::Contracts,
    now_ms,
    ports::{BucketRef, Ports, Stage, get_verified},
    registry::glob_match,
};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use tracing::info;

pub const WORKER: &str = "score";

pub struct ScoreWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    scored: BucketRef,
    /// The governance signing key, from the deployment, never from the registry row:
    /// whoever can write the registry must not be able to name their own key.
    signing_key_id: String,
}

impl ScoreWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, scored: BucketRef, signing_key_id: String) -> Self {
        Self { ports, contracts, scored, signing_key_id }
    }
}

/// Why a curated file could not be scored (permanent: the data does not fit the model).
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("curated data: {0}")]
    Data(String),
    #[error("missing column {0}")]
    MissingColumn(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("scored output: {0}")]
    Output(String),
}

/// Scores a curated Parquet file; returns the scored Parquet, rows and flagged rows.
pub fn score(
    curated: Bytes,
    artifact: &Artifact,
    id_columns: &[&str],
    version: &str,
) -> Result<(Vec<u8>, u64, u64), ScoreError> {
    let data = |e: &dyn std::fmt::Display| ScoreError::Data(e.to_string());
    let output = |e: &dyn std::fmt::Display| ScoreError::Output(e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(curated).and_then(|b| b.build()).map_err(|e| data(&e))?;
    let mut fields = Vec::new();
    for (i, c) in id_columns.iter().enumerate() {
        if ["score", "flagged", "model"].contains(c) || id_columns[..i].contains(c) {
            return Err(ScoreError::Output(format!("output column {c} would appear twice")));
        }
        fields.push(Field::new(*c, DataType::Utf8, i > 0));
    }
    fields.extend([
        Field::new("score", DataType::Float64, true),
        Field::new("flagged", DataType::Boolean, true),
        Field::new("model", DataType::Utf8, false),
    ]);
    let schema = Arc::new(Schema::new(fields));
    let props = writer_properties(
        &[("mlsec.model".to_string(), format!("{}@{version}", artifact.model_name))],
        CURATED_ROW_GROUP_ROWS,
    );
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(|e| output(&e))?;
    let (mut rows, mut flagged) = (0u64, 0u64);
    let model_label = format!("{}@{version}", artifact.model_name);
    for batch in reader {
        let batch = batch.map_err(|e| data(&e))?;
        let features = featurize(&batch, &artifact.features)?;
        let mut scores = Vec::with_capacity(features.len());
        for row in &features {
            scores.push(match row {
                Some(r) => Some(artifact.probabilities(std::slice::from_ref(r))?[0]),
                None => None,
            });
        }
        let flags: BooleanArray = scores.iter().map(|s| s.map(|s| s >= artifact.decision_threshold)).collect();
        flagged += flags.true_count() as u64;
        rows += batch.num_rows() as u64;
        // Ids are written as text whatever their type (an integer id reads the same).
        let col = |name: &str| {
            let c = batch.column_by_name(name).ok_or_else(|| ScoreError::MissingColumn(name.into()))?;
            arrow::compute::cast(c, &DataType::Utf8).map_err(|e| data(&e))
        };
        let mut columns: Vec<ArrayRef> = id_columns.iter().map(|c| col(c)).collect::<Result<_, _>>()?;
        columns.extend([
            Arc::new(Float64Array::from(scores)) as ArrayRef,
            Arc::new(flags),
            Arc::new(StringArray::from(vec![model_label.as_str(); batch.num_rows()])),
        ]);
        let out = RecordBatch::try_new(schema.clone(), columns).map_err(|e| data(&e))?;
        writer.write(&out).map_err(|e| output(&e))?;
    }
    Ok((writer.into_inner().map_err(|e| output(&e))?, rows, flagged))
}

#[async_trait]
impl Handler for ScoreWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        let ev: DatasetCurated = message.event()?;
        if ev.role != DatasetRole::Scoring {
            return Ok(format!("{} is not a scoring dataset", ev.dataset));
        }
        let contract = self
            .contracts
            .dataset(&ev.dataset)
            .ok_or_else(|| WorkError::permanent("unknown_dataset", format!("no contract for {}", ev.dataset)))?;
        let model_name = contract
            .scoring_model
            .as_deref()
            .ok_or_else(|| WorkError::permanent("no_scoring_model", format!("{} names no model", ev.dataset)))?;
        let spec = self
            .contracts
            .model(model_name)
            .ok_or_else(|| WorkError::permanent("unknown_model", model_name.to_string()))?;
        let record = self.ports.registry.production(model_name).await?.ok_or_else(|| {
            WorkError::transient("registry:production", format!("no production version of {model_name} yet"))
        })?;
        let integrity = |what: String| WorkError::permanent("model_integrity", what);
        if record.stage != Stage::Production {
            return Err(integrity(format!("@production points at {} in stage {}", record.subject(), record.stage)));
        }
        let Some(manifest) = &record.manifest else {
            return Err(integrity("production model without a signed manifest".into()));
        };
        let (m, artifact_bytes) =
            load_verified(self.ports.store.as_ref(), self.ports.keys.as_ref(), manifest, &self.signing_key_id).await?;
        if m.model_name != record.model_name
            || m.model_version != record.model_version
            || m.stage != Stage::Production.as_str()
            || m.artifact != record.artifact
        {
            return Err(integrity("the signed manifest does not describe the registered production version".into()));
        }
        let people: std::collections::BTreeSet<&str> = m
            .approvals
            .iter()
            .filter(|a| spec.approval.approvers.iter().any(|p| glob_match(p, &a.approver_arn)))
            .map(|a| a.approver_id.as_str())
            .collect();
        if people.len() < spec.approval.required_approvals {
            return Err(integrity(format!(
                "the manifest binds {} approver(s) the spec accepts, {} required",
                people.len(),
                spec.approval.required_approvals
            )));
        }
        let artifact: Artifact = serde_json::from_slice(&artifact_bytes)
            .map_err(|e| WorkError::permanent("model_integrity", format!("artifact does not parse: {e}")))?;
        if artifact.smartcore_version != SMARTCORE_VERSION {
            return Err(WorkError::permanent(
                "model_incompatible",
                format!("artifact built with smartcore {}", artifact.smartcore_version),
            ));
        }
        let c = &ev.curated;
        let data = get_verified(self.ports.store.as_ref(), c, &ev.dataset_digest).await?;
        let (parquet, rows, flagged) = score(data, &artifact, &spec.output_columns(), &record.model_version)
            .map_err(|e| WorkError::permanent("scoring_failed", e))?;
        let key = keys::parquet(&ev.dataset, model_name, &record.model_version, &ev.dataset_digest);
        let scored = self.ports.store.put(&self.scored, &key, Bytes::from(parquet), PARQUET_CONTENT_TYPE).await?;
        let event = RecordsScored {
            event_id: derive_event_id(&ev.event_id, WORKER),
            correlation_id: ev.correlation_id.clone(),
            dataset: ev.dataset.clone(),
            model_name: model_name.to_string(),
            model_version: record.model_version.clone(),
            scored,
            rows: rows as i64,
            flagged: flagged as i64,
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, dataset = %ev.dataset, rows, flagged, model_version = %record.model_version, "scored");
        Ok(format!("scored {} rows={rows} flagged={flagged}", ev.dataset))
    }
}
