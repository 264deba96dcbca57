//! Z4 → Z5 → Z6 with the in-memory ports: train, gate, sign, promote, verify, score —
//! and every way the scorer must refuse.

use std::sync::Arc;

use mlsec_events::{
    DatasetCurated, DatasetRole, Envelope, ModelPromoted, ModelTrained, ObjectRef, PipelineEvent, RecordsScored,
    sha256_hex,
};
use mlsec_govern::GovernWorker;
use mlsec_runtime::{
    ErrorClass, Handler, Inbound, WorkError,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    inbound::eventbridge_body,
    ports::{ModelRegistry, ObjectStore, Stage},
    sample::{SampleKind, csv_bytes},
};
use mlsec_train::TrainWorker;

use mlsec_score::*;

use crate::contracts;

const SIGNING: &str = "arn:aws:kms:us-east-1:000000000000:key/signing";

fn message<E: PipelineEvent>(event: &E) -> Inbound {
    let detail = serde_json::to_value(Envelope::wrap(event).unwrap()).unwrap();
    Inbound::parse("m", &eventbridge_body("mlsec.test", E::NAME, detail)).unwrap()
}

/// Ingest + curate a sample in memory and store it in the curated bucket.
async fn curated(f: &FakePorts, c: &Contracts, kind: SampleKind, rows: usize, id: &str) -> DatasetCurated {
    let dataset = if kind == SampleKind::Training { "transactions_training" } else { "transactions_scoring" };
    let contract = c.dataset(dataset).unwrap();
    let raw = mlsec_ingest::validate::to_parquet(contract, &csv_bytes(kind, rows, 21)).unwrap();
    let mut out = Vec::new();
    mlsec_curate::transform::curate(raw, contract, &[1; 32], &[], mlsec_runtime::now_ms(), &mut out, std::io::sink())
        .unwrap();
    let stored: ObjectRef =
        f.store.put(&bucket("t-curated"), &format!("{dataset}/{id}.parquet"), out.into(), "x").await.unwrap();
    DatasetCurated {
        event_id: id.into(),
        correlation_id: id.into(),
        dataset: dataset.into(),
        contract_version: "1.1.0".into(),
        role: contract.role,
        dataset_digest: stored.sha256.clone(),
        curated: stored,
        rows_in: rows as i64,
        rows_out: rows as i64,
        rows_rejected: 0,
        pseudonym_key_id: "k".into(),
        occurred_at_ms: 0,
        pseudonym_key_version: None,
        dq: None,
    }
}

struct Chain {
    f: FakePorts,
    contracts: Arc<Contracts>,
}

impl Chain {
    fn new(contracts: Contracts) -> Self {
        Self { f: FakePorts::new(), contracts: Arc::new(contracts) }
    }
    fn scorer(&self, key: &str) -> ScoreWorker {
        ScoreWorker::new(self.f.ports(), self.contracts.clone(), bucket("t-scored"), key.into())
    }
    /// Trains and governs; returns the ModelTrained event.
    async fn train_and_govern(&self) -> ModelTrained {
        let ev = curated(&self.f, &self.contracts, SampleKind::Training, 3000, "train-1").await;
        TrainWorker::new(self.f.ports(), self.contracts.clone(), bucket("t-models"))
            .handle(&message(&ev))
            .await
            .unwrap();
        let trained: ModelTrained = self.f.bus.events().last().unwrap().open().unwrap();
        GovernWorker::new(self.f.ports(), self.contracts.clone(), bucket("t-models"), SIGNING.into())
            .handle(&message(&trained))
            .await
            .unwrap();
        trained
    }
    async fn score(&self, key: &str, id: &str) -> Result<String, WorkError> {
        let ev = curated(&self.f, &self.contracts, SampleKind::Scoring, 400, id).await;
        assert_eq!(ev.role, DatasetRole::Scoring);
        self.scorer(key).handle(&message(&ev)).await
    }
}

fn permanent_reason(r: Result<String, WorkError>) -> &'static str {
    match r {
        Err(WorkError::Permanent { reason, .. }) => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_promoted_signed_model_scores_every_curated_row() {
    let chain = Chain::new(contracts());
    let trained = chain.train_and_govern().await;
    let promoted: ModelPromoted = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(
        (promoted.stage.as_str(), promoted.model_version.as_str()),
        ("production", trained.model_version.as_str())
    );
    assert_eq!(chain.f.registry.production("fraud_lr").await.unwrap().unwrap().stage, Stage::Production);
    chain.score(SIGNING, "score-1").await.unwrap();
    let scored: RecordsScored = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(scored.rows, 400);
    assert_eq!(scored.model_version, trained.model_version);
    let body = chain.f.store.object("t-scored", &scored.scored.key).unwrap().body;
    assert_eq!(sha256_hex(&body), scored.scored.sha256);
}

#[tokio::test]
async fn a_model_below_its_auc_gate_is_rejected_and_never_promoted() {
    let mut c = contracts();
    c.models[0].gates.min_auc = 0.999;
    let chain = Chain::new(c);
    let trained = chain.train_and_govern().await;
    assert!(chain.f.bus.events().iter().all(|e| e.schema != "ModelPromoted"));
    let record = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    assert_eq!(record.stage, Stage::Rejected);
    assert!(record.stage_reason.unwrap().contains("< gate"));
    // With no production model, scoring waits (transient), it does not score.
    let r = chain.score(SIGNING, "score-1").await;
    assert_eq!(r.unwrap_err().class(), ErrorClass::Transient);
}

#[tokio::test]
async fn the_scorer_refuses_a_tampered_manifest_artifact_or_foreign_key() {
    let chain = Chain::new(contracts());
    let trained = chain.train_and_govern().await;
    let base = format!("fraud_lr/{}", trained.model_version);

    // A scorer configured with another signing key refuses the registry's claim.
    assert_eq!(permanent_reason(chain.score("arn:other", "s0").await), "model_integrity");

    // One byte changed in the manifest: the signature no longer verifies.
    let manifest = chain.f.store.object("t-models", &format!("{base}/manifest.json")).unwrap().body;
    let mut bad = manifest.to_vec();
    bad[10] ^= 1;
    chain.f.store.put(&bucket("t-models"), &format!("{base}/manifest.json"), bad.into(), "x").await.unwrap();
    assert_eq!(permanent_reason(chain.score(SIGNING, "s1").await), "model_integrity");
    chain.f.store.put(&bucket("t-models"), &format!("{base}/manifest.json"), manifest, "x").await.unwrap();
    chain.score(SIGNING, "s2").await.expect("restored manifest verifies again");

    // One byte changed in the artifact: its digest no longer matches the signed manifest.
    let artifact = chain.f.store.object("t-models", &format!("{base}/model.json")).unwrap().body;
    let mut bad = artifact.to_vec();
    let i = bad.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
    chain.f.store.put(&bucket("t-models"), &format!("{base}/model.json"), bad.into(), "x").await.unwrap();
    let scored_before = chain.f.bus.events().iter().filter(|e| e.schema == "RecordsScored").count();
    assert_eq!(permanent_reason(chain.score(SIGNING, "s3").await), "model_integrity");
    assert_eq!(chain.f.bus.events().iter().filter(|e| e.schema == "RecordsScored").count(), scored_before);
}

#[tokio::test]
async fn training_the_gate_and_the_promotion_are_each_audited_once() {
    use mlsec_events::audit::AuditAction;
    let chain = Chain::new(contracts());
    let trained = chain.train_and_govern().await;
    // The same ModelTrained again (a redelivery): no new record.
    GovernWorker::new(chain.f.ports(), chain.contracts.clone(), bucket("t-models"), SIGNING.into())
        .handle(&message(&trained))
        .await
        .unwrap();
    let entries = chain.f.audit.entries();
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
    assert_eq!(actions, [AuditAction::ModelTrained, AuditAction::GateEvaluated, AuditAction::ModelPromoted]);
    let subject = format!("{}@{}", trained.model_name, trained.model_version);
    assert!(entries.iter().all(|e| e.subject.id == subject), "{entries:?}");
    assert_eq!(entries[1].reason, "passed");
    assert_eq!(entries[2].outputs.len(), 2, "manifest and signature");
}
