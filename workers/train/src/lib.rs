//! Z4: the model factory.
//!
//! Consumes `DatasetCurated` for training datasets. Fits the model its spec names
//! (logistic regression, smartcore) on a deterministic train/holdout split, measures
//! holdout AUC and accuracy, stores the artifact in the models bucket, registers the
//! version at stage `candidate` with its lineage (dataset digest, params, metrics) and
//! emits `ModelTrained`. The version id derives from the dataset digest and the spec, so a
//! redelivered event re-registers nothing and re-emits the same event.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use async_trait::async_trait;
use bytes::Bytes;
use mlsec_events::{
    DatasetCurated, DatasetRole, Envelope, ModelTrained,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id, sha256_hex,
};
use mlsec_lake::{
    layout::models as keys,
    model::{self, Artifact, Lr, ModelError, auc, featurize},
};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::{Contracts, ModelSpec},
    now_ms,
    ports::{BucketRef, ModelRecord, Ports, Stage, get_verified},
    sample::Rng,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use smartcore::{linalg::basic::matrix::DenseMatrix, linear::logistic_regression::LogisticRegressionParameters};
use tracing::info;

pub const WORKER: &str = "train";

pub struct TrainWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    models: BucketRef,
}

/// What a fit produced.
pub struct Fitted {
    pub artifact: Artifact,
    pub auc: f64,
    pub accuracy: f64,
    pub train_rows: usize,
    pub test_rows: usize,
}

/// Why a model could not be fitted (permanent: the data or the spec must change).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("curated data: {0}")]
    Data(String),
    #[error("target {0} is not a boolean column")]
    Target(String),
    #[error("{rows} usable rows with {positives} positives: too few to train")]
    TooFewRows { rows: usize, positives: usize },
    #[error(transparent)]
    Features(#[from] ModelError),
    #[error("fit failed: {0}")]
    Fit(String),
}

impl TrainWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, models: BucketRef) -> Self {
        Self { ports, contracts, models }
    }
}

/// Fits `spec` on a curated Parquet file.
pub fn fit(curated: Bytes, spec: &ModelSpec) -> Result<Fitted, TrainError> {
    if spec.algorithm != "logistic_regression" {
        return Err(TrainError::Algorithm(spec.algorithm.clone()));
    }
    let data = |e: parquet::errors::ParquetError| TrainError::Data(e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(curated).and_then(|b| b.build()).map_err(data)?;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
        let target = batch
            .column_by_name(&spec.target)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
            .ok_or_else(|| TrainError::Target(spec.target.clone()))?;
        for (i, row) in featurize(&batch, &spec.features)?.into_iter().enumerate() {
            if let Some(row) = row
                && target.is_valid(i)
            {
                xs.push(row);
                ys.push(i32::from(target.value(i)));
            }
        }
    }
    let positives = ys.iter().filter(|&&y| y == 1).count();
    if xs.len() < 20 || positives < 2 || positives == ys.len() {
        return Err(TrainError::TooFewRows { rows: xs.len(), positives });
    }
    // Deterministic shuffle (Fisher–Yates) and split.
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut rng = Rng::new(spec.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let n_test = ((xs.len() as f64) * spec.holdout_fraction).round() as usize;
    let (test_idx, train_idx) = order.split_at(n_test);
    let width = xs[0].len();
    let scaling: Vec<(f64, f64)> = (0..width)
        .map(|j| {
            let n = train_idx.len() as f64;
            let mean = train_idx.iter().map(|&i| xs[i][j]).sum::<f64>() / n;
            let var = train_idx.iter().map(|&i| (xs[i][j] - mean).powi(2)).sum::<f64>() / n;
            (mean, if var > 1e-12 { var.sqrt() } else { 1.0 })
        })
        .collect();
    let scale = |r: &Vec<f64>| r.iter().zip(&scaling).map(|(x, (m, s))| (x - m) / s).collect::<Vec<f64>>();
    let x_train: Vec<Vec<f64>> = train_idx.iter().map(|&i| scale(&xs[i])).collect();
    let y_train: Vec<i32> = train_idx.iter().map(|&i| ys[i]).collect();
    let alpha = spec.params.get("alpha").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let matrix = DenseMatrix::from_2d_vec(&x_train).map_err(|e| TrainError::Fit(e.to_string()))?;
    let lr: Lr = Lr::fit(&matrix, &y_train, LogisticRegressionParameters::default().with_alpha(alpha))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    let artifact = Artifact {
        format: model::ARTIFACT_FORMAT,
        smartcore_version: model::SMARTCORE_VERSION.into(),
        model_name: spec.name.clone(),
        algorithm: spec.algorithm.clone(),
        features: spec.features.clone(),
        scaling,
        decision_threshold: spec.decision_threshold,
        model: lr,
    };
    let test_rows: Vec<Vec<f64>> = test_idx.iter().map(|&i| xs[i].clone()).collect();
    let test_labels: Vec<i32> = test_idx.iter().map(|&i| ys[i]).collect();
    let p = artifact.probabilities(&test_rows)?;
    let correct = p.iter().zip(&test_labels).filter(|(p, y)| i32::from(**p >= spec.decision_threshold) == **y).count();
    Ok(Fitted {
        auc: auc(&p, &test_labels),
        accuracy: correct as f64 / test_labels.len().max(1) as f64,
        train_rows: train_idx.len(),
        test_rows: test_idx.len(),
        artifact,
    })
}

#[async_trait]
impl Handler for TrainWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        let ev: DatasetCurated = message.event()?;
        if ev.role != DatasetRole::Training {
            return Ok(format!("{} is not a training dataset", ev.dataset));
        }
        let Some(spec) = self.contracts.model_for_training(&ev.dataset) else {
            return Ok(format!("no model spec trains on {}", ev.dataset));
        };
        let c = &ev.curated;
        let bytes = get_verified(self.ports.store.as_ref(), c, &ev.dataset_digest).await?;
        let spec_json = serde_json::to_string(&serde_json::json!({
            "name": spec.name, "algorithm": spec.algorithm, "target": spec.target,
            "features": spec.features, "params": spec.params, "seed": spec.seed,
            "holdout": spec.holdout_fraction, "threshold": spec.decision_threshold,
        }))
        .map_err(WorkError::fatal)?;
        let version = sha256_hex(format!("{}|{spec_json}", ev.dataset_digest).as_bytes())[..12].to_string();
        let event_id = derive_event_id(&ev.event_id, WORKER);
        if let Some(existing) = self.ports.registry.get(&spec.name, &version).await? {
            // Redelivery (or the same data dropped twice): nothing is refitted or
            // re-uploaded; the event is re-emitted from the registered record.
            let event = trained_event(event_id, &ev, &existing);
            self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
            return Ok(format!("{}@{version} already registered", spec.name));
        }
        let fitted = fit(bytes, spec).map_err(|e| WorkError::permanent("training_failed", e))?;
        let artifact_bytes = serde_json::to_vec(&fitted.artifact).map_err(WorkError::fatal)?;
        let artifact = self
            .ports
            .store
            .put(&self.models, &keys::artifact(&spec.name, &version), Bytes::from(artifact_bytes), "application/json")
            .await?;
        let record = ModelRecord {
            model_name: spec.name.clone(),
            model_version: version.clone(),
            stage: Stage::Candidate,
            dataset: ev.dataset.clone(),
            dataset_digest: ev.dataset_digest.clone(),
            algorithm: spec.algorithm.clone(),
            params: serde_json::to_string(&spec.params).map_err(WorkError::fatal)?,
            auc: fitted.auc,
            accuracy: fitted.accuracy,
            train_rows: fitted.train_rows as i64,
            test_rows: fitted.test_rows as i64,
            artifact,
            created_at_ms: now_ms(),
            manifest: None,
            signature: None,
            signing_key_id: None,
            stage_reason: None,
        };
        let created = self.ports.registry.put_candidate(&record).await?;
        let audit = AuditEntry::new(
            AuditAction::ModelTrained,
            Subject::new("model", format!("{}@{version}", spec.name)),
            &event_id,
        )
        .reason("candidate")
        .input(ev.curated.clone())
        .output(record.artifact.clone())
        .attribute("auc", format!("{:.4}", fitted.auc))
        .attribute("accuracy", format!("{:.4}", fitted.accuracy))
        .attribute("train_rows", fitted.train_rows)
        .attribute("test_rows", fitted.test_rows);
        self.ports.audit.append(audit).await?;
        let event = trained_event(event_id, &ev, &record);
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, model = %spec.name, version = %version, auc = fitted.auc, created, "trained");
        Ok(format!("trained {}@{version} auc={:.3}", spec.name, fitted.auc))
    }
}

fn trained_event(event_id: String, input: &DatasetCurated, record: &ModelRecord) -> ModelTrained {
    ModelTrained {
        event_id,
        correlation_id: input.correlation_id.clone(),
        model_name: record.model_name.clone(),
        model_version: record.model_version.clone(),
        dataset: record.dataset.clone(),
        dataset_digest: record.dataset_digest.clone(),
        algorithm: record.algorithm.clone(),
        artifact: record.artifact.clone(),
        auc: record.auc,
        accuracy: record.accuracy,
        train_rows: record.train_rows,
        test_rows: record.test_rows,
        occurred_at_ms: now_ms(),
    }
}
