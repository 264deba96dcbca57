//! Z5: model registry and governance. The only zone that moves a model between stages
//! (see `mlsec_runtime::registry` for the lifecycle), and the only holder of `kms:Sign` on
//! the model-signing key.
//!
//! On `ModelTrained` (from train): registers the version as a candidate, takes nothing on
//! the trainer's word — it reads the artifact at its pinned version, and the holdout that
//! curate routed to a bucket the trainer cannot read — scores the holdout itself, compares
//! with the production model on the same rows, applies the spec's gates (AUC, Brier score,
//! champion drop, fairness per protected attribute), stores the gate report and moves the
//! candidate to `staging` (`ModelStaged`) or `rejected` (`ModelRejected`).
//!
//! On `ModelReviewed` (from the operator CLI): reads the people's decisions from the
//! decisions table — never from the event — and keeps only those of approvers the spec
//! names, for this review round, on the gate report they saw, from someone other than the
//! principal who dropped the training data. With the spec's required number of distinct
//! people it signs a deterministic manifest binding the approvals, and promotes (or rolls
//! back) in one conditional transaction that supersedes the previous production version.
//! A rejection or revocation needs one person.

pub mod evaluate;
pub mod review;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use evaluate::{GateReport, Holdout, Scored};
use mlsec_events::{
    Envelope, ModelRejected, ModelReviewed, ModelStaged, ModelTrained, ObjectRef, PipelineEvent,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id,
};
pub use mlsec_lake::manifest::Manifest;
use mlsec_lake::{
    columnar::PARQUET_CONTENT_TYPE,
    layout::models as keys,
    model::{Artifact, SMARTCORE_VERSION},
};
use mlsec_runtime::{
    Handler, Inbound, WorkError,
    contract::{Contracts, ModelSpec},
    now_ms,
    ports::{BucketRef, Evaluation, ModelRecord, Pointer, Ports, Stage, StageChange, Transition, get_verified},
};
use tracing::{info, warn};

pub const WORKER: &str = "govern";

#[derive(Debug, Clone)]
pub struct GovernConfig {
    pub models: BucketRef,
    /// The holdout bucket: a candidate's holdout claim check must point into it.
    pub holdout_bucket: String,
    pub signing_key_id: String,
}

pub struct GovernWorker {
    ports: Ports,
    contracts: Arc<Contracts>,
    config: GovernConfig,
}

impl GovernWorker {
    pub fn new(ports: Ports, contracts: Arc<Contracts>, config: GovernConfig) -> Self {
        Self { ports, contracts, config }
    }

    fn spec(&self, model: &str) -> Result<&ModelSpec, WorkError> {
        self.contracts.model(model).ok_or_else(|| WorkError::permanent("unknown_model", format!("no spec for {model}")))
    }
}

#[async_trait]
impl Handler for GovernWorker {
    fn name(&self) -> &'static str {
        WORKER
    }

    async fn handle(&self, message: &Inbound) -> Result<String, WorkError> {
        match message.schema() {
            Some(ModelReviewed::NAME) => self.reviewed(&message.event()?).await,
            _ => self.trained(&message.event()?).await,
        }
    }
}

/// The artifact a record pins, read at that version and checked against its digest.
async fn load_artifact(ports: &Ports, a: &ObjectRef) -> Result<Artifact, WorkError> {
    let bytes = get_verified(ports.store.as_ref(), a, &a.sha256).await?;
    let artifact: Artifact = serde_json::from_slice(&bytes)
        .map_err(|e| WorkError::permanent("artifact_unreadable", format!("s3://{}/{}: {e}", a.bucket, a.key)))?;
    if artifact.smartcore_version != SMARTCORE_VERSION {
        return Err(WorkError::permanent(
            "model_incompatible",
            format!("artifact built with smartcore {}", artifact.smartcore_version),
        ));
    }
    Ok(artifact)
}

impl GovernWorker {
    async fn trained(&self, ev: &ModelTrained) -> Result<String, WorkError> {
        let spec = self.spec(&ev.model_name)?;
        if ev.dataset != spec.training_dataset {
            return Err(WorkError::permanent(
                "dataset_mismatch",
                format!("{} trains on {}, the event names {}", spec.name, spec.training_dataset, ev.dataset),
            ));
        }
        let event_id = derive_event_id(&ev.event_id, WORKER);
        let mut record = match self.ports.registry.get(&ev.model_name, &ev.model_version).await? {
            // Evaluated before: a replayed or redelivered event changes nothing. If the
            // announcement was lost (a crash after the transition) it is sent again.
            Some(r) if r.stage != Stage::Candidate => return self.announce_evaluation(&r, ev, &event_id).await,
            Some(r) => r,
            None => {
                let r = self.register(ev).await?;
                if !self.ports.registry.create(&r).await? {
                    return Err(WorkError::transient("registry:create", "registered concurrently; retrying"));
                }
                r
            }
        };
        if record.artifact.sha256 != ev.artifact.sha256 {
            return Err(WorkError::permanent("artifact_digest_mismatch", record.subject()));
        }
        let artifact = load_artifact(&self.ports, &record.artifact).await?;
        let (holdout_ref, holdout) = match self.holdout(ev, spec).await {
            Ok(h) => h,
            Err(refusal) => return self.refuse_candidate(record, ev, &event_id, refusal).await,
        };
        record.dropped_by = holdout.dropped_by.clone();
        if let Some(c) = holdout.contract.as_deref().and_then(|c| c.rsplit_once('@')) {
            record.contract_version = c.1.to_string();
        }
        let report = self.evaluate(spec, &record, &artifact, &holdout, &holdout_ref).await?;
        let (name, version) = (&record.model_name, &record.model_version);
        let store = &self.ports.store;
        let report_ref = store
            .put(
                &self.config.models,
                &keys::gate_report(name, version),
                Bytes::from(report.to_json()),
                "application/json",
            )
            .await?;
        let table = evaluate::report_table(&report).map_err(|e| WorkError::fatal(format!("gate report: {e}")))?;
        let table_ref = store
            .put(&self.config.models, &keys::gate_table(name, version), Bytes::from(table), PARQUET_CONTENT_TYPE)
            .await?;
        let failed = report.failed();
        record.evaluation = Some(Evaluation {
            holdout: holdout_ref,
            holdout_rows: report.holdout_rows as i64,
            auc: report.auc,
            brier: report.brier,
            accuracy: report.accuracy,
            champion: report.champion.as_ref().and_then(|c| c.auc.map(|a| (c.version.clone(), a))),
            passed: report.passed,
            failed: failed.clone(),
            report: report_ref.clone(),
            report_table: table_ref,
        });
        let (to, reason) = if report.passed {
            (Stage::Staging, format!("gates passed: holdout AUC {:.4}, Brier {:.4}", report.auc, report.brier))
        } else {
            (Stage::Rejected, format!("gates failed: {}", failed.join(", ")))
        };
        let audit = AuditEntry::new(
            AuditAction::GateEvaluated,
            Subject::new("model", record.subject()),
            format!("gate:{}", ev.event_id),
        )
        .reason(if report.passed { "passed" } else { "failed" })
        .input(record.artifact.clone())
        .input(record.evaluation.as_ref().map(|e| e.holdout.clone()).expect("set above"))
        .output(report_ref)
        .attribute("auc", format!("{:.4}", report.auc))
        .attribute("brier", format!("{:.4}", report.brier))
        .attribute("failed", failed.join(","))
        .attribute("stage", to.as_str());
        self.ports.audit.append(audit).await?;
        let next = self.leave_candidate(&record, to, reason).await?;
        self.announce_evaluation(&next, ev, &event_id).await
    }

    /// The candidate row: what the trainer claims, kept apart from what govern measures.
    async fn register(&self, ev: &ModelTrained) -> Result<ModelRecord, WorkError> {
        let now = now_ms();
        Ok(ModelRecord {
            model_name: ev.model_name.clone(),
            model_version: ev.model_version.clone(),
            stage: Stage::Candidate,
            rev: 0,
            dataset: ev.dataset.clone(),
            dataset_digest: ev.dataset_digest.clone(),
            contract_version: String::new(),
            algorithm: ev.algorithm.clone(),
            params: self
                .contracts
                .model(&ev.model_name)
                .map(|s| serde_json::to_string(&s.params).unwrap_or_default())
                .unwrap_or_default(),
            trainer_auc: ev.auc,
            trainer_accuracy: ev.accuracy,
            train_rows: ev.train_rows,
            test_rows: ev.test_rows,
            artifact: ev.artifact.clone(),
            dropped_by: None,
            evaluation: None,
            approvals: Vec::new(),
            manifest: None,
            signing_key_id: None,
            transitions: vec![Transition {
                from: None,
                to: Stage::Candidate,
                at_ms: now,
                actor: WORKER.into(),
                reason: format!(
                    "trained on {} ({})",
                    ev.dataset,
                    &ev.dataset_digest[..12.min(ev.dataset_digest.len())]
                ),
                people: Vec::new(),
                review: None,
            }],
            created_at_ms: now,
            stage_reason: Some("registered".into()),
        })
    }

    /// The candidate's holdout: it must be in the holdout bucket, under the training
    /// dataset, and match its claim check.
    async fn holdout(&self, ev: &ModelTrained, spec: &ModelSpec) -> Result<(ObjectRef, Holdout), (String, String)> {
        let Some(h) = &ev.holdout else {
            return Err(("holdout_missing".into(), "the event carries no holdout claim check".into()));
        };
        if h.bucket != self.config.holdout_bucket || !h.key.starts_with(&format!("{}/", spec.training_dataset)) {
            return Err((
                "holdout_outside_zone".into(),
                format!("s3://{}/{} is not a holdout of {}", h.bucket, h.key, spec.training_dataset),
            ));
        }
        let bytes = get_verified(self.ports.store.as_ref(), h, &h.sha256)
            .await
            .map_err(|e| ("holdout_unreadable".to_string(), e.to_string()))?;
        let holdout = evaluate::read_holdout(bytes).map_err(|e| ("holdout_unreadable".to_string(), e))?;
        // The holdout of the very dataset the candidate says it was trained on, not another
        // (easier) one from the same bucket.
        if holdout.curated_sha256.as_deref() != Some(ev.dataset_digest.as_str()) {
            return Err((
                "holdout_mismatch".into(),
                format!(
                    "s3://{}/{} was split from {}, not the training data {}",
                    h.bucket,
                    h.key,
                    holdout.curated_sha256.as_deref().unwrap_or("an unknown dataset"),
                    ev.dataset_digest
                ),
            ));
        }
        Ok((h.clone(), holdout))
    }

    async fn evaluate(
        &self,
        spec: &ModelSpec,
        record: &ModelRecord,
        artifact: &Artifact,
        holdout: &Holdout,
        holdout_ref: &ObjectRef,
    ) -> Result<GateReport, WorkError> {
        let protected: Vec<String> = self
            .contracts
            .dataset(&spec.training_dataset)
            .map(|c| c.columns.iter().filter(|c| c.protected).map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let challenger = evaluate::score(holdout, artifact, spec, &protected).unwrap_or_else(|e| {
            warn!(worker = WORKER, model = %record.subject(), error = %e, "challenger cannot score the holdout");
            Scored::default()
        });
        let champion = match self.ports.registry.production(&spec.name).await? {
            Some(c) if c.model_version != record.model_version => {
                let scored = match load_artifact(&self.ports, &c.artifact).await {
                    Ok(a) => evaluate::score(holdout, &a, spec, &[]).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                Some((c.model_version, scored))
            }
            _ => None,
        };
        let threshold = artifact.decision_threshold;
        let (gates, auc, brier, accuracy, champion) =
            evaluate::evaluate(spec, threshold, holdout.rows, &challenger, champion);
        Ok(GateReport {
            model_name: record.model_name.clone(),
            model_version: record.model_version.clone(),
            holdout_sha256: holdout_ref.sha256.clone(),
            holdout_rows: holdout.rows,
            scored_rows: challenger.p.len(),
            auc,
            brier,
            accuracy,
            decision_threshold: threshold,
            passed: gates.iter().all(|g| g.passed),
            gates,
            champion,
        })
    }

    /// A candidate whose evidence cannot be trusted: rejected, with the reason.
    async fn refuse_candidate(
        &self,
        record: ModelRecord,
        ev: &ModelTrained,
        event_id: &str,
        (code, reason): (String, String),
    ) -> Result<String, WorkError> {
        let audit = AuditEntry::new(
            AuditAction::GateEvaluated,
            Subject::new("model", record.subject()),
            format!("gate:{}", ev.event_id),
        )
        .reason("failed")
        .input(record.artifact.clone())
        .attribute("failed", &code)
        .attribute("detail", &reason)
        .attribute("stage", Stage::Rejected.as_str());
        self.ports.audit.append(audit).await?;
        let next = self.leave_candidate(&record, Stage::Rejected, format!("{code}: {reason}")).await?;
        self.announce_evaluation(&next, ev, event_id).await
    }

    /// Moves a candidate to `to`, only if it is still the candidate this run read; a
    /// concurrent move is transient (the retry finds it evaluated and re-announces).
    async fn leave_candidate(&self, record: &ModelRecord, to: Stage, reason: String) -> Result<ModelRecord, WorkError> {
        let next = record.moved(to, now_ms(), WORKER, reason);
        let change =
            StageChange { record: next.clone(), expected: Stage::Candidate, pointer: Pointer::Keep, demote: None };
        if !self.ports.registry.transition(&change).await? {
            return Err(WorkError::transient(
                "registry:transition",
                format!("{} moved concurrently", record.subject()),
            ));
        }
        Ok(next)
    }

    /// Emits the outcome of an evaluation (again, for a redelivery: same event id).
    async fn announce_evaluation(
        &self,
        r: &ModelRecord,
        ev: &ModelTrained,
        event_id: &str,
    ) -> Result<String, WorkError> {
        let evaluated = r.transitions.iter().rev().find(|t| t.from == Some(Stage::Candidate));
        let Some(t) = evaluated else {
            return Ok(format!("{} is {}", r.subject(), r.stage));
        };
        let envelope = match t.to {
            Stage::Staging => {
                let e = r.evaluation.as_ref().ok_or_else(|| WorkError::fatal("staged without an evaluation"))?;
                let spec = self.spec(&r.model_name)?;
                Envelope::wrap(&ModelStaged {
                    event_id: event_id.to_string(),
                    correlation_id: ev.correlation_id.clone(),
                    model_name: r.model_name.clone(),
                    model_version: r.model_version.clone(),
                    auc: e.auc,
                    brier: e.brier,
                    champion_version: e.champion.as_ref().map(|c| c.0.clone()),
                    gate_report: e.report.clone(),
                    required_approvals: spec.approval.required_approvals as i32,
                    round: staging_round(r) as i32,
                    occurred_at_ms: t.at_ms,
                })?
            }
            _ => Envelope::wrap(&ModelRejected {
                event_id: event_id.to_string(),
                correlation_id: ev.correlation_id.clone(),
                model_name: r.model_name.clone(),
                model_version: Some(r.model_version.clone()),
                dataset: r.dataset.clone(),
                stage: "evaluation".into(),
                reason_code: r
                    .evaluation
                    .as_ref()
                    .map(|e| e.failed.first().cloned().unwrap_or_default())
                    .unwrap_or_else(|| t.reason.split(':').next().unwrap_or("").to_string()),
                reason: t.reason.clone(),
                gate_report: r.evaluation.as_ref().map(|e| e.report.clone()),
                occurred_at_ms: t.at_ms,
            })?,
        };
        self.ports.bus.publish(&[envelope]).await?;
        info!(worker = WORKER, model = %r.subject(), stage = %t.to, "evaluated");
        Ok(format!("{} {}: {}", r.subject(), t.to, t.reason))
    }
}

/// The review round of a staged version: the one its approvals must name.
pub fn staging_round(r: &ModelRecord) -> u32 {
    r.transitions.iter().rposition(|t| t.to == Stage::Staging).map_or(r.round(), |i| i as u32 + 1)
}
