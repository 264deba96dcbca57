//! Z4: the model factory.
//!
//! Consumes `DatasetCurated` for training datasets. Fits the model its spec names
//! (logistic regression, smartcore) on the curated rows (never the holdout, which curate
//! routed to a bucket this worker cannot read), validates it on a deterministic split of
//! those rows, optionally refits on all of them, stores the artifact and its training
//! report in the models bucket and emits `ModelTrained`, passing the holdout's claim check
//! on to govern. It writes no registry row: registration and every stage belong to govern,
//! which re-measures everything itself. The version id derives from the dataset digest and
//! the spec, so a redelivered event re-emits the stored report and refits nothing. A spec
//! the data cannot satisfy ends in `ModelRejected` (stage `training`), not only a log line.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mlsec_events::{
    DatasetCurated, DatasetRole, Envelope, ModelRejected, ModelTrained, ObjectRef,
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
    ports::{BucketRef, Ports, get_verified},
    sample::Rng,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use smartcore::{linalg::basic::matrix::DenseMatrix, linear::logistic_regression::LogisticRegressionParameters};
use tracing::{info, warn};

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
    /// Usable rows read (the validation split included).
    pub rows: usize,
}

/// Why a model could not be fitted (permanent: the data or the spec must change).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("curated data: {0}")]
    Data(String),
    #[error("{rows} usable rows with {positives} positives: too few to train")]
    TooFewRows { rows: usize, positives: usize },
    #[error(transparent)]
    Features(#[from] ModelError),
    #[error("fit failed: {0}")]
    Fit(String),
}

impl TrainError {
    /// Reason code of `ModelRejected`.
    pub fn code(&self) -> &'static str {
        match self {
            TrainError::Algorithm(_) => "unsupported_algorithm",
            TrainError::Data(_) => "unreadable_curated_data",
            TrainError::TooFewRows { .. } => "too_few_rows",
            TrainError::Features(ModelError::Target { .. }) => "bad_target",
            TrainError::Features(_) => "bad_features",
            TrainError::Fit(_) => "fit_failed",
        }
    }
}

impl TrainWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, models: BucketRef) -> Self {
        Self { ports, contracts, models }
    }
}

/// The trainer's record of a fit, stored next to the artifact (`training.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingReport {
    pub model_name: String,
    pub model_version: String,
    pub dataset: String,
    pub dataset_digest: String,
    pub algorithm: String,
    pub params: serde_json::Value,
    pub auc: f64,
    pub accuracy: f64,
    pub train_rows: i64,
    pub test_rows: i64,
    pub refit: bool,
    pub artifact: ObjectRef,
    pub holdout: Option<ObjectRef>,
}

/// Feature rows and labels of a curated Parquet file (rows with a missing input skipped).
pub fn load_rows(curated: Bytes, spec: &ModelSpec) -> Result<(Vec<Vec<f64>>, Vec<i32>), TrainError> {
    let data = |e: &dyn std::fmt::Display| TrainError::Data(e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(curated).and_then(|b| b.build()).map_err(|e| data(&e))?;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(|e| data(&e))?;
        let labels = model::labels(&batch, &spec.target, spec.positive_label.as_deref())?;
        for (row, label) in featurize(&batch, &spec.features)?.into_iter().zip(labels) {
            if let (Some(row), Some(label)) = (row, label) {
                xs.push(row);
                ys.push(label);
            }
        }
    }
    Ok((xs, ys))
}

/// Standardisation (mean, std) of each component over `rows`.
fn scaling_of(xs: &[Vec<f64>], rows: &[usize]) -> Vec<(f64, f64)> {
    let n = rows.len() as f64;
    (0..xs[0].len())
        .map(|j| {
            let mean = rows.iter().map(|&i| xs[i][j]).sum::<f64>() / n;
            let var = rows.iter().map(|&i| (xs[i][j] - mean).powi(2)).sum::<f64>() / n;
            (mean, if var > 1e-12 { var.sqrt() } else { 1.0 })
        })
        .collect()
}

/// Fits on `rows` of `xs` (standardised on those rows).
fn fit_rows(xs: &[Vec<f64>], ys: &[i32], rows: &[usize], spec: &ModelSpec) -> Result<Artifact, TrainError> {
    let scaling = scaling_of(xs, rows);
    // A positive weight N counts each positive row N times in the loss: exactly, by
    // repeating it (after the scaling is taken over the rows as they are).
    let weight = spec.positive_weight().map_err(TrainError::Fit)?;
    let rows: Vec<usize> =
        rows.iter().flat_map(|&i| std::iter::repeat_n(i, if ys[i] == 1 { weight } else { 1 })).collect();
    let x: Vec<Vec<f64>> =
        rows.iter().map(|&i| xs[i].iter().zip(&scaling).map(|(x, (m, s))| (x - m) / s).collect()).collect();
    let y: Vec<i32> = rows.iter().map(|&i| ys[i]).collect();
    let alpha = spec.l2_alpha().map_err(TrainError::Fit)?;
    let matrix = DenseMatrix::from_2d_vec(&x).map_err(|e| TrainError::Fit(e.to_string()))?;
    let lr: Lr = Lr::fit(&matrix, &y, LogisticRegressionParameters::default().with_alpha(alpha))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    Ok(Artifact {
        format: model::ARTIFACT_FORMAT,
        smartcore_version: model::SMARTCORE_VERSION.into(),
        model_name: spec.name.clone(),
        algorithm: spec.algorithm.clone(),
        features: spec.features.clone(),
        scaling,
        decision_threshold: spec.decision_threshold,
        model: lr,
    })
}

/// Fits `spec` on a curated Parquet file: validates on a deterministic split, then (with
/// `refit`) fits the final model on every row.
pub fn fit(curated: Bytes, spec: &ModelSpec) -> Result<Fitted, TrainError> {
    if spec.algorithm != "logistic_regression" {
        return Err(TrainError::Algorithm(spec.algorithm.clone()));
    }
    let (xs, ys) = load_rows(curated, spec)?;
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
    let validated = fit_rows(&xs, &ys, train_idx, spec)?;
    let test_rows: Vec<Vec<f64>> = test_idx.iter().map(|&i| xs[i].clone()).collect();
    let test_labels: Vec<i32> = test_idx.iter().map(|&i| ys[i]).collect();
    let p = validated.probabilities(&test_rows)?;
    let correct = p.iter().zip(&test_labels).filter(|(p, y)| i32::from(**p >= spec.decision_threshold) == **y).count();
    let (auc, accuracy) = (auc(&p, &test_labels), correct as f64 / test_labels.len().max(1) as f64);
    let artifact = if spec.refit { fit_rows(&xs, &ys, &order, spec)? } else { validated };
    Ok(Fitted {
        auc,
        accuracy,
        train_rows: if spec.refit { xs.len() } else { train_idx.len() },
        test_rows: test_idx.len(),
        rows: xs.len(),
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
            "positive_label": spec.positive_label, "features": spec.features, "params": spec.params,
            "seed": spec.seed, "holdout": spec.holdout_fraction, "threshold": spec.decision_threshold,
            "refit": spec.refit,
        }))
        .map_err(WorkError::fatal)?;
        let version = sha256_hex(format!("{}|{spec_json}", ev.dataset_digest).as_bytes())[..12].to_string();
        let event_id = derive_event_id(&ev.event_id, WORKER);
        let report_key = keys::training(&spec.name, &version);
        if let Some(stored) = self.ports.store.get_optional(&self.models.name, &report_key, None).await? {
            // Redelivery (or the same data dropped twice): nothing is refitted or
            // re-uploaded; the event is re-emitted from the stored report.
            let report: TrainingReport = serde_json::from_slice(&stored)
                .map_err(|e| WorkError::permanent("training_report_unreadable", e.to_string()))?;
            self.ports.bus.publish(&[Envelope::wrap(&trained_event(event_id, &ev, &report))?]).await?;
            return Ok(format!("{}@{version} already trained", spec.name));
        }
        let fitted = match fit(bytes, spec) {
            Ok(f) => f,
            Err(e) => return self.reject(&ev, spec, &event_id, e).await,
        };
        let artifact_bytes = serde_json::to_vec(&fitted.artifact).map_err(WorkError::fatal)?;
        let artifact = self
            .ports
            .store
            .put(&self.models, &keys::artifact(&spec.name, &version), Bytes::from(artifact_bytes), "application/json")
            .await?;
        let report = TrainingReport {
            model_name: spec.name.clone(),
            model_version: version.clone(),
            dataset: ev.dataset.clone(),
            dataset_digest: ev.dataset_digest.clone(),
            algorithm: spec.algorithm.clone(),
            params: serde_json::to_value(&spec.params).map_err(WorkError::fatal)?,
            auc: fitted.auc,
            accuracy: fitted.accuracy,
            train_rows: fitted.train_rows as i64,
            test_rows: fitted.test_rows as i64,
            refit: spec.refit,
            artifact,
            holdout: ev.holdout.clone(),
        };
        let audit = AuditEntry::new(
            AuditAction::ModelTrained,
            Subject::new("model", format!("{}@{version}", spec.name)),
            &event_id,
        )
        .reason("trained")
        .input(ev.curated.clone())
        .output(report.artifact.clone())
        .attribute("trainer_auc", format!("{:.4}", fitted.auc))
        .attribute("trainer_accuracy", format!("{:.4}", fitted.accuracy))
        .attribute("train_rows", fitted.train_rows)
        .attribute("validation_rows", fitted.test_rows);
        self.ports.audit.append(audit).await?;
        let report_bytes = serde_json::to_vec_pretty(&report).map_err(WorkError::fatal)?;
        // Written last: its presence means the version is complete (the redelivery check).
        self.ports.store.put(&self.models, &report_key, Bytes::from(report_bytes), "application/json").await?;
        let event = trained_event(event_id, &ev, &report);
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, model = %spec.name, version = %version, auc = fitted.auc, "trained");
        Ok(format!("trained {}@{version} auc={:.3}", spec.name, fitted.auc))
    }
}

impl TrainWorker {
    /// A spec the data cannot satisfy: recorded and announced (`ModelRejected`, stage
    /// `training`), so operators see it without reading logs; the input is done.
    async fn reject(
        &self,
        ev: &DatasetCurated,
        spec: &ModelSpec,
        event_id: &str,
        error: TrainError,
    ) -> Result<String, WorkError> {
        let code = error.code();
        let audit = AuditEntry::new(AuditAction::ModelRejected, Subject::new("model", &spec.name), event_id)
            .reason(code)
            .input(ev.curated.clone())
            .attribute("stage", "training")
            .attribute("error", error.to_string());
        self.ports.audit.append(audit).await?;
        let event = ModelRejected {
            event_id: event_id.to_string(),
            correlation_id: ev.correlation_id.clone(),
            model_name: spec.name.clone(),
            model_version: None,
            dataset: ev.dataset.clone(),
            stage: "training".into(),
            reason_code: code.into(),
            reason: error.to_string(),
            gate_report: None,
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        warn!(worker = WORKER, model = %spec.name, dataset = %ev.dataset, code, error = %error, "training failed");
        Ok(format!("training {} failed: {code}", spec.name))
    }
}

fn trained_event(event_id: String, input: &DatasetCurated, r: &TrainingReport) -> ModelTrained {
    ModelTrained {
        event_id,
        correlation_id: input.correlation_id.clone(),
        model_name: r.model_name.clone(),
        model_version: r.model_version.clone(),
        dataset: r.dataset.clone(),
        dataset_digest: r.dataset_digest.clone(),
        algorithm: r.algorithm.clone(),
        artifact: r.artifact.clone(),
        auc: r.auc,
        accuracy: r.accuracy,
        train_rows: r.train_rows,
        test_rows: r.test_rows,
        occurred_at_ms: now_ms(),
        holdout: r.holdout.clone(),
    }
}
