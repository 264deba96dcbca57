//! Z4 → Z5 → Z6 with the in-memory ports: train, evaluate on the holdout, approve, sign,
//! promote, verify, score — and every way the chain must refuse: the trainer's word, a
//! forged registry row, self-approval, a missing second person, a replayed event, a forged
//! source, two governors at once, a revoked version.

use std::sync::Arc;

use mlsec_events::{
    DatasetCurated, DatasetRole, ModelPromoted, ModelRejected, ModelReviewed, ModelStaged, ModelTrained, ObjectRef,
    RecordsScored, sha256_hex,
};
use mlsec_govern::{GovernConfig, GovernWorker};
use mlsec_lake::columnar::DROPPED_BY_KEY;
use mlsec_runtime::{
    ErrorClass, Handler, WorkError,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    ports::{Decision, Decisions, ModelRegistry, ObjectStore, ReviewAction, Stage},
    sample::{SampleKind, csv_bytes},
};
use mlsec_score::ScoreWorker;
use mlsec_train::TrainWorker;

use crate::{contracts, message, message_from};

const SIGNING: &str = "arn:aws:kms:us-east-1:000000000000:key/signing";
const DROPPER: &str = "arn:aws:iam::000000000000:user/data-engineer";
const RISK_A: &str = "arn:aws:iam::000000000000:user/risk-ana";
const RISK_B: &str = "arn:aws:sts::000000000000:assumed-role/mlsec-model-risk/bruno";
const INTERN: &str = "arn:aws:iam::000000000000:user/intern";

/// Ingest + curate a sample in memory (training: curated and holdout objects, with the
/// dropper in the files' metadata, as curate writes them).
async fn curated(f: &FakePorts, c: &Contracts, kind: SampleKind, rows: usize, seed: u64, id: &str) -> DatasetCurated {
    let dataset = if kind == SampleKind::Training { "transactions_training" } else { "transactions_scoring" };
    let contract = c.dataset(dataset).unwrap();
    let raw = mlsec_ingest::validate::to_parquet(contract, &csv_bytes(kind, rows, seed)).unwrap();
    let (mut out, mut hold) = (Vec::new(), Vec::new());
    let lineage = [(DROPPED_BY_KEY.to_string(), user_id(DROPPER))];
    let split = (kind == SampleKind::Training).then(|| mlsec_curate::transform::HoldoutSplit {
        key: vec![9; 32],
        column: Some("transaction_id".into()),
        fraction: contract.holdout_fraction,
        out: &mut hold,
    });
    let now = mlsec_runtime::now_ms();
    let cur =
        mlsec_curate::transform::curate_split(raw, contract, &[1; 32], &lineage, now, &mut out, std::io::sink(), split)
            .unwrap();
    let stored: ObjectRef =
        f.store.put(&bucket("t-curated"), &format!("{dataset}/{id}.parquet"), out.into(), "x").await.unwrap();
    let holdout = match kind {
        SampleKind::Training => Some(
            f.store
                .put(&bucket("t-holdout"), &format!("{dataset}/contract=1.2.0/{id}.parquet"), hold.into(), "x")
                .await
                .unwrap(),
        ),
        SampleKind::Scoring => None,
    };
    DatasetCurated {
        event_id: id.into(),
        correlation_id: id.into(),
        dataset: dataset.into(),
        contract_version: contract.version.clone(),
        role: contract.role,
        dataset_digest: stored.sha256.clone(),
        curated: stored,
        rows_in: rows as i64,
        rows_out: (cur.rows_out - cur.rows_holdout) as i64,
        rows_rejected: 0,
        pseudonym_key_id: "k".into(),
        occurred_at_ms: 0,
        pseudonym_key_version: None,
        dq: None,
        holdout_rows: holdout.as_ref().map(|_| cur.rows_holdout as i64),
        holdout,
    }
}

/// The STS `UserId` AWS vouches for a principal (`aws:userid`): `AIDA…` for a user,
/// `AROA…:<session>` for a role session (the role's unique id and the session name).
fn user_id(arn: &str) -> String {
    match arn.split_once(":assumed-role/").and_then(|(_, r)| r.split_once('/')) {
        Some((role, session)) => format!("AROA{}:{session}", &sha256_hex(role.as_bytes())[..12]),
        None => format!("AIDA{}", &sha256_hex(arn.as_bytes())[..12]),
    }
}

struct Chain {
    f: FakePorts,
    contracts: Arc<Contracts>,
}

impl Chain {
    /// The fakes, with IAM knowing the test's people.
    fn new(contracts: Contracts) -> Self {
        let f = FakePorts::new();
        for arn in [DROPPER, RISK_A, RISK_B, INTERN] {
            f.principals.add(&user_id(arn), arn);
        }
        // The deployment's people roles pin session names to people.
        f.principals.pin_role("mlsec-model-risk");
        f.principals.pin_role("mlsec-model-risk-2");
        Self { f, contracts: Arc::new(contracts) }
    }
    fn governor(&self) -> GovernWorker {
        let config = GovernConfig {
            models: bucket("t-models"),
            holdout_bucket: "t-holdout".into(),
            signing_key_id: SIGNING.into(),
        };
        GovernWorker::new(self.f.ports(), self.contracts.clone(), config)
    }
    fn scorer(&self, key: &str) -> ScoreWorker {
        ScoreWorker::new(self.f.ports(), self.contracts.clone(), bucket("t-scored"), key.into())
    }
    /// Trains on a fresh sample (`seed` picks the data, hence the version).
    async fn train(&self, seed: u64) -> ModelTrained {
        let ev = curated(&self.f, &self.contracts, SampleKind::Training, 3000, seed, &format!("train-{seed}")).await;
        TrainWorker::new(self.f.ports(), self.contracts.clone(), bucket("t-models"))
            .handle(&message(&ev))
            .await
            .unwrap();
        self.f.bus.events().last().unwrap().open().unwrap()
    }
    async fn evaluate(&self, trained: &ModelTrained) -> Result<String, WorkError> {
        self.governor().handle(&message(trained)).await
    }
    async fn stage(&self, version: &str) -> Stage {
        self.f.registry.get("fraud_lr", version).await.unwrap().unwrap().stage
    }
    /// `who` records a decision (as the CLI would, bypassing its early checks) and govern
    /// handles the announcement.
    async fn decide(&self, who: &str, version: &str, action: ReviewAction) -> Result<String, WorkError> {
        let record = self.f.registry.get("fraud_lr", version).await.unwrap().unwrap();
        let d = Decision {
            approver_id: user_id(who),
            approver_arn: who.into(),
            model_name: "fraud_lr".into(),
            model_version: version.into(),
            action,
            round: record.round(),
            reason: "reviewed".into(),
            at_ms: 1_000 + record.round() as i64,
            gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
        };
        self.f.decisions.record(&d).await.unwrap();
        self.governor().handle(&message(&reviewed(version, action, record.round()))).await
    }
    /// Trained, evaluated and approved by one risk officer.
    async fn promoted(&self, seed: u64) -> ModelTrained {
        self.promoted_by(seed, &[RISK_A]).await
    }
    /// Trained, evaluated and approved by `people`.
    async fn promoted_by(&self, seed: u64, people: &[&str]) -> ModelTrained {
        let trained = self.train(seed).await;
        self.evaluate(&trained).await.unwrap();
        assert_eq!(self.stage(&trained.model_version).await, Stage::Staging);
        for p in people {
            self.decide(p, &trained.model_version, ReviewAction::Approve).await.unwrap();
        }
        assert_eq!(self.stage(&trained.model_version).await, Stage::Production);
        trained
    }
    async fn score(&self, key: &str, id: &str) -> Result<String, WorkError> {
        let ev = curated(&self.f, &self.contracts, SampleKind::Scoring, 400, 21, id).await;
        assert_eq!(ev.role, DatasetRole::Scoring);
        self.scorer(key).handle(&message(&ev)).await
    }
    fn count(&self, schema: &str) -> usize {
        self.f.bus.events().iter().filter(|e| e.schema == schema).count()
    }
    /// Distinct event ids of `schema` (consumers deduplicate by id).
    fn distinct(&self, schema: &str) -> usize {
        let ids: std::collections::BTreeSet<String> =
            self.f.bus.events().into_iter().filter(|e| e.schema == schema).map(|e| e.event_id).collect();
        ids.len()
    }
}

fn reviewed(version: &str, action: ReviewAction, round: u32) -> ModelReviewed {
    ModelReviewed {
        event_id: format!("review-{version}-{}-{round}", action.as_str()),
        correlation_id: "c".into(),
        model_name: "fraud_lr".into(),
        model_version: version.into(),
        action: action.as_str().into(),
        round: round as i32,
        occurred_at_ms: 0,
    }
}

fn permanent_reason(r: Result<String, WorkError>) -> &'static str {
    match r {
        Err(WorkError::Permanent { reason, .. }) => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_model_reaches_production_only_after_the_gates_and_a_persons_approval() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let staged: ModelStaged = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(staged.model_version, trained.model_version);
    assert!(staged.auc > 0.75, "govern's holdout AUC {}", staged.auc);
    let record = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    let e = record.evaluation.as_ref().unwrap();
    assert!(e.passed && e.holdout_rows > 400, "{e:?}");
    assert_eq!(record.dropped_by, Some(user_id(DROPPER)), "the dropper comes from the holdout's metadata");
    // Staging does not score: nothing is in production yet.
    assert_eq!(chain.score(SIGNING, "s0").await.unwrap_err().class(), ErrorClass::Transient);

    chain.decide(RISK_A, &trained.model_version, ReviewAction::Approve).await.unwrap();
    let promoted: ModelPromoted = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(promoted.approvers, Some(vec![RISK_A.to_string()]));
    chain.score(SIGNING, "s1").await.unwrap();
    let scored: RecordsScored = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!((scored.rows, scored.model_version.as_str()), (400, trained.model_version.as_str()));
    let body = chain.f.store.object("t-scored", &scored.scored.key).unwrap().body;
    assert_eq!(sha256_hex(&body), scored.scored.sha256);
    let history: Vec<Stage> = chain
        .f
        .registry
        .get("fraud_lr", &trained.model_version)
        .await
        .unwrap()
        .unwrap()
        .transitions
        .iter()
        .map(|t| t.to)
        .collect();
    assert_eq!(history, [Stage::Candidate, Stage::Staging, Stage::Production]);
}

#[tokio::test]
async fn govern_measures_the_holdout_itself_and_ignores_the_trainers_auc() {
    let mut c = contracts();
    c.models[0].gates.min_auc = 0.97;
    let chain = Chain::new(c);
    let mut trained = chain.train(42).await;
    // The trainer (or anyone who can publish as it) claims a perfect model.
    trained.auc = 0.999;
    chain.evaluate(&trained).await.unwrap();
    let rejected: ModelRejected = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!((rejected.stage.as_str(), rejected.reason_code.as_str()), ("evaluation", "min_auc"));
    let record = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    assert_eq!(record.stage, Stage::Rejected);
    assert_eq!(record.trainer_auc, 0.999);
    assert!(record.evaluation.unwrap().auc < 0.97);
    // A rejected version cannot be approved into production.
    let r = chain.decide(RISK_A, &trained.model_version, ReviewAction::Approve).await.unwrap();
    assert!(r.contains("does not apply"), "{r}");
    assert_eq!(chain.count("ModelPromoted"), 0);
}

#[tokio::test]
async fn a_holdout_claim_outside_the_holdout_bucket_rejects_the_candidate() {
    let chain = Chain::new(contracts());
    let mut trained = chain.train(42).await;
    // Point govern at the trainer's own (curated) rows: an easy "holdout".
    trained.holdout = Some(ObjectRef {
        bucket: "t-curated".into(),
        key: "transactions_training/train-42.parquet".into(),
        version_id: None,
        sha256: trained.dataset_digest.clone(),
        size: 1,
    });
    chain.evaluate(&trained).await.unwrap();
    let rejected: ModelRejected = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(rejected.reason_code, "holdout_outside_zone");
    assert_eq!(chain.stage(&trained.model_version).await, Stage::Rejected);
}

#[tokio::test]
async fn a_holdout_split_from_other_data_rejects_the_candidate() {
    let chain = Chain::new(contracts());
    // Another training dataset's genuine holdout, in the right bucket and prefix.
    let other = curated(&chain.f, &chain.contracts, SampleKind::Training, 3000, 77, "other").await;
    let mut trained = chain.train(42).await;
    assert_ne!(other.dataset_digest, trained.dataset_digest);
    trained.holdout = other.holdout.clone();
    chain.evaluate(&trained).await.unwrap();
    let rejected: ModelRejected = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!((rejected.stage.as_str(), rejected.reason_code.as_str()), ("evaluation", "holdout_mismatch"));
    assert_eq!(chain.stage(&trained.model_version).await, Stage::Rejected);
}

#[tokio::test]
async fn a_forged_registry_row_never_scores() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    // Someone with write access to the registry puts the staging version in production
    // without governance: no signed manifest.
    let mut forged = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    forged.stage = Stage::Production;
    chain.f.registry.tamper(&forged, true);
    assert_eq!(permanent_reason(chain.score(SIGNING, "s1").await), "model_integrity");

    // A real promotion, then the row's artifact swapped for another: the manifest says otherwise.
    let chain = Chain::new(contracts());
    let trained = chain.promoted(42).await;
    let mut forged = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    forged.artifact.sha256 = sha256_hex(b"another model");
    chain.f.registry.tamper(&forged, true);
    assert_eq!(permanent_reason(chain.score(SIGNING, "s2").await), "model_integrity");
}

#[tokio::test]
async fn the_scorer_verifies_exactly_the_pinned_manifest_and_artifact() {
    let chain = Chain::new(contracts());
    let trained = chain.promoted(42).await;
    let record = chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().unwrap();
    let pinned = record.manifest.clone().unwrap();
    // A scorer configured with another signing key refuses.
    assert_eq!(permanent_reason(chain.score("arn:other", "s0").await), "model_integrity");
    // New versions written over the manifest and the artifact change nothing: the scorer
    // reads the versions the registry pins.
    let models = bucket("t-models");
    chain.f.store.put(&models, &pinned.key, bytes::Bytes::from_static(b"{}"), "x").await.unwrap();
    chain.f.store.put(&models, &record.artifact.key, bytes::Bytes::from_static(b"{}"), "x").await.unwrap();
    chain.score(SIGNING, "s1").await.expect("the pinned versions still verify");
    // The pinned manifest version itself altered (the digest pin catches it).
    let mut forged = record.clone();
    forged.manifest = Some(ObjectRef { version_id: Some("v2".into()), ..pinned });
    chain.f.registry.tamper(&forged, true);
    assert_eq!(permanent_reason(chain.score(SIGNING, "s2").await), "model_integrity");
}

#[tokio::test]
async fn self_approval_is_refused_and_two_people_must_approve() {
    let mut c = contracts();
    c.models[0].approval.required_approvals = 2;
    let chain = Chain::new(c);
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    // The person who dropped the training data, even where the spec's patterns match.
    let mut c = (*chain.contracts).clone();
    c.models[0].approval.approvers.push(DROPPER.into());
    let lenient = Chain { f: FakePorts::new(), contracts: Arc::new(c) };
    let spec = lenient.contracts.model("fraud_lr").unwrap();
    let record = chain.f.registry.get("fraud_lr", &v).await.unwrap().unwrap();
    let by_dropper = Decision {
        approver_id: user_id(DROPPER),
        approver_arn: DROPPER.into(),
        model_name: "fraud_lr".into(),
        model_version: v.clone(),
        action: ReviewAction::Approve,
        round: record.round(),
        reason: "mine".into(),
        at_ms: 1,
        gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
    };
    let who = mlsec_govern::review::resolve(chain.f.principals.as_ref(), &record, std::slice::from_ref(&by_dropper))
        .await
        .unwrap();
    let why = mlsec_govern::review::refusal(spec, &record, &by_dropper, &who).unwrap();
    assert!(why.contains("dropped the training data"), "{why}");
    chain.decide(DROPPER, &v, ReviewAction::Approve).await.unwrap();
    chain.decide(INTERN, &v, ReviewAction::Approve).await.unwrap();
    assert_eq!(chain.stage(&v).await, Stage::Staging, "neither the dropper nor a non-approver counts");
    let r = chain.decide(RISK_A, &v, ReviewAction::Approve).await.unwrap();
    assert!(r.contains("1/2"), "{r}");
    // The same person again is still one person.
    chain.decide(RISK_A, &v, ReviewAction::Approve).await.unwrap();
    assert_eq!(chain.stage(&v).await, Stage::Staging);
    chain.decide(RISK_B, &v, ReviewAction::Approve).await.unwrap();
    assert_eq!(chain.stage(&v).await, Stage::Production);
    let record = chain.f.registry.get("fraud_lr", &v).await.unwrap().unwrap();
    let mut approvers: Vec<&str> = record.approvals.iter().map(|a| a.approver_arn.as_str()).collect();
    approvers.sort();
    assert_eq!(approvers, [RISK_A, RISK_B]);
    chain.score(SIGNING, "s1").await.unwrap();
}

/// Records a decision written by `writer` (whose partition IAM forces) that claims to be
/// `claimed`, and lets govern handle the announcement.
async fn decide_as(chain: &Chain, writer: &str, claimed: &str, v: &str) -> String {
    let record = chain.f.registry.get("fraud_lr", v).await.unwrap().unwrap();
    let d = Decision {
        approver_id: user_id(writer),
        approver_arn: claimed.into(),
        model_name: "fraud_lr".into(),
        model_version: v.into(),
        action: ReviewAction::Approve,
        round: record.round(),
        reason: "reviewed".into(),
        at_ms: 7,
        gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
    };
    chain.f.decisions.record(&d).await.unwrap();
    chain.governor().handle(&message(&reviewed(v, ReviewAction::Approve, record.round()))).await.unwrap()
}

#[tokio::test]
async fn identity_comes_from_the_vouched_user_id_not_from_the_decisions_body() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    // A non-approver writes in their own partition (the table policy forces it) and
    // claims to be the risk officer.
    let r = decide_as(&chain, INTERN, RISK_A, &v).await;
    assert!(r.contains("claims to be") && r.contains("0/1"), "{r}");
    assert_eq!(chain.stage(&v).await, Stage::Staging);
    // A user id IAM does not know counts for nothing, whatever it claims.
    let r = decide_as(&chain, "arn:aws:iam::000000000000:user/ghost", RISK_A, &v).await;
    assert!(r.contains("IAM knows no principal"), "{r}");
    assert_eq!(chain.stage(&v).await, Stage::Staging);
    // The real officer, in their own partition, counts.
    decide_as(&chain, RISK_A, RISK_A, &v).await;
    assert_eq!(chain.stage(&v).await, Stage::Production);
}

#[tokio::test]
async fn one_person_is_one_vote_across_sessions_and_roles_and_the_dropper_never_counts() {
    let mut c = contracts();
    c.models[0].approval.required_approvals = 2;
    c.models[0].approval.approvers.push("arn:aws:sts::000000000000:assumed-role/mlsec-model-risk-2/*".into());
    let chain = Chain::new(c);
    // Bruno through a second approver role, and the dropper through an approver role.
    let bruno_again = "arn:aws:sts::000000000000:assumed-role/mlsec-model-risk-2/bruno";
    let dropper_as_officer = "arn:aws:sts::000000000000:assumed-role/mlsec-model-risk/data-engineer";
    for arn in [bruno_again, dropper_as_officer] {
        chain.f.principals.add(&user_id(arn), arn);
    }
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    let r = decide_as(&chain, dropper_as_officer, dropper_as_officer, &v).await;
    assert!(r.contains("dropped the training data"), "{r}");
    decide_as(&chain, RISK_B, RISK_B, &v).await;
    let r = decide_as(&chain, bruno_again, bruno_again, &v).await;
    assert!(r.contains("1/2"), "two sessions of one person are one vote: {r}");
    assert_eq!(chain.stage(&v).await, Stage::Staging);
    decide_as(&chain, RISK_A, RISK_A, &v).await;
    assert_eq!(chain.stage(&v).await, Stage::Production);
}

#[tokio::test]
async fn a_session_of_a_role_that_does_not_pin_session_names_speaks_for_no_one() {
    let mut c = contracts();
    c.models[0].approval.required_approvals = 2;
    c.models[0].approval.approvers.push("arn:aws:sts::000000000000:assumed-role/ops-shared/*".into());
    let chain = Chain::new(c);
    // One human, two session names of a shared role whose trust policy pins nothing.
    let (a, b) = (
        "arn:aws:sts::000000000000:assumed-role/ops-shared/ana",
        "arn:aws:sts::000000000000:assumed-role/ops-shared/not-ana",
    );
    for arn in [a, b] {
        chain.f.principals.add(&user_id(arn), arn);
    }
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    let r = decide_as(&chain, a, a, &v).await;
    assert!(r.contains("does not pin its session names"), "{r}");
    decide_as(&chain, b, b, &v).await;
    decide_as(&chain, RISK_A, RISK_A, &v).await;
    assert_eq!(chain.stage(&v).await, Stage::Staging, "the shared role's sessions are not people");
    decide_as(&chain, RISK_B, RISK_B, &v).await;
    assert_eq!(chain.stage(&v).await, Stage::Production);
    // Stopping a model needs no person: such a session (a break-glass role) may revoke.
    chain.decide(a, &v, ReviewAction::Revoke).await.unwrap();
    assert_eq!(chain.stage(&v).await, Stage::Revoked);
}

#[tokio::test]
async fn a_review_announcement_for_another_action_or_round_finishes_nothing() {
    // A candidate govern itself rejected at the gates (candidate -> rejected, by govern).
    let strict = Chain::new({
        let mut c = contracts();
        c.models[0].gates.min_auc = 0.99;
        c
    });
    let rejected = strict.train(42).await;
    strict.evaluate(&rejected).await.unwrap();
    assert_eq!(strict.stage(&rejected.model_version).await, Stage::Rejected);
    let (events, audited) = (strict.f.bus.events().len(), strict.f.audit.entries().len());
    // A forged "reject, round 1" for it: govern's own gate rejection is no review of it.
    strict.governor().handle(&message(&reviewed(&rejected.model_version, ReviewAction::Reject, 1))).await.unwrap();
    assert_eq!((strict.f.bus.events().len(), strict.f.audit.entries().len()), (events, audited));
    // A rollback announcement for the round an approval moved: that move was no rollback.
    let chain = Chain::new(contracts());
    let promoted = chain.promoted(43).await;
    let (events, audited) = (chain.f.bus.events().len(), chain.f.audit.entries().len());
    chain.governor().handle(&message(&reviewed(&promoted.model_version, ReviewAction::Rollback, 2))).await.unwrap();
    assert_eq!((chain.f.bus.events().len(), chain.f.audit.entries().len()), (events, audited));
    // The approval's own announcement again re-announces its move (same id), nothing new.
    chain.governor().handle(&message(&reviewed(&promoted.model_version, ReviewAction::Approve, 2))).await.unwrap();
    assert_eq!(chain.f.audit.entries().len(), audited, "the audit chain deduplicates the move");
    assert_eq!(chain.distinct("ModelPromoted"), 1);
    // A negative round is malformed input, not a panic.
    let mut odd = reviewed(&promoted.model_version, ReviewAction::Approve, 0);
    odd.round = -1;
    assert_eq!(permanent_reason(chain.governor().handle(&message(&odd)).await), "bad_round");
}

#[tokio::test]
async fn a_dropper_iam_does_not_know_blocks_every_approval() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    let mut record = chain.f.registry.get("fraud_lr", &v).await.unwrap().unwrap();
    record.dropped_by = Some("AKIAIOSFODNN7EXAMPLE".into());
    chain.f.registry.tamper(&record, false);
    let r = decide_as(&chain, RISK_A, RISK_A, &v).await;
    assert!(r.contains("dropper is unknown to IAM"), "{r}");
    assert_eq!(chain.stage(&v).await, Stage::Staging);
}

#[tokio::test]
async fn replaying_an_old_model_trained_after_a_newer_promotion_leaves_production_unchanged() {
    let chain = Chain::new(contracts());
    let old = chain.promoted(42).await;
    let new = chain.train(43).await;
    assert_ne!(old.model_version, new.model_version);
    chain.evaluate(&new).await.unwrap();
    chain.decide(RISK_A, &new.model_version, ReviewAction::Approve).await.unwrap();
    assert_eq!(chain.stage(&old.model_version).await, Stage::Superseded);
    let promoted = chain.count("ModelPromoted");
    // The old event again, from the DLQ or the bus archive.
    chain.evaluate(&old).await.unwrap();
    chain.governor().handle(&message(&reviewed(&old.model_version, ReviewAction::Approve, 2))).await.unwrap();
    let production = chain.f.registry.production("fraud_lr").await.unwrap().unwrap();
    assert_eq!(production.model_version, new.model_version);
    assert_eq!(chain.stage(&old.model_version).await, Stage::Superseded);
    assert_eq!(chain.count("ModelPromoted"), promoted);
}

#[tokio::test]
async fn two_governors_at_once_leave_one_promotion_that_verifies() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    // Two deliveries of one ModelTrained, handled at the same time.
    let (a, b) = tokio::join!(chain.evaluate(&trained), chain.evaluate(&trained));
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    chain.evaluate(&trained).await.unwrap();
    assert_eq!(chain.stage(&trained.model_version).await, Stage::Staging);
    let v = trained.model_version.clone();
    let record = chain.f.registry.get("fraud_lr", &v).await.unwrap().unwrap();
    chain
        .f
        .decisions
        .record(&Decision {
            approver_id: user_id(RISK_A),
            approver_arn: RISK_A.into(),
            model_name: "fraud_lr".into(),
            model_version: v.clone(),
            action: ReviewAction::Approve,
            round: record.round(),
            reason: "ok".into(),
            at_ms: 5,
            gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
        })
        .await
        .unwrap();
    let msg = message(&reviewed(&v, ReviewAction::Approve, record.round()));
    let (g1, g2) = (chain.governor(), chain.governor());
    let (a, b) = tokio::join!(g1.handle(&msg), g2.handle(&msg));
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    assert_eq!(chain.stage(&v).await, Stage::Production);
    // One transition, one announcement id (the loser re-announces the winner's move: at
    // least once, deduplicated by event id) and one audit record.
    assert_eq!(chain.distinct("ModelPromoted"), 1, "one transition, one announcement id");
    let promoted = chain.f.audit.entries().iter().filter(|e| e.action.as_str() == "model_promoted").count();
    assert_eq!(promoted, 1);
    // Two manifest envelopes may exist; the registry pins one, and it verifies.
    chain.score(SIGNING, "s1").await.unwrap();
}

#[tokio::test]
async fn revoke_stops_scoring_and_a_rollback_needs_an_approval() {
    let chain = Chain::new(contracts());
    let old = chain.promoted(42).await;
    let new = chain.train(43).await;
    chain.evaluate(&new).await.unwrap();
    chain.decide(RISK_A, &new.model_version, ReviewAction::Approve).await.unwrap();
    chain.score(SIGNING, "s1").await.unwrap();

    chain.decide(RISK_B, &new.model_version, ReviewAction::Revoke).await.unwrap();
    assert_eq!(chain.stage(&new.model_version).await, Stage::Revoked);
    let r = chain.score(SIGNING, "s2").await;
    assert_eq!(r.unwrap_err().class(), ErrorClass::Transient, "no production version: scoring waits");

    // Someone the spec does not name cannot roll back; an approver can.
    chain.decide(INTERN, &old.model_version, ReviewAction::Rollback).await.unwrap();
    assert_eq!(chain.stage(&old.model_version).await, Stage::Superseded);
    chain.decide(RISK_A, &old.model_version, ReviewAction::Rollback).await.unwrap();
    assert_eq!(chain.stage(&old.model_version).await, Stage::Production);
    chain.score(SIGNING, "s3").await.unwrap();
    let scored: RecordsScored = chain.f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(scored.model_version, old.model_version);
    // A revoked version can never be rolled back to.
    let r = chain.decide(RISK_A, &new.model_version, ReviewAction::Rollback).await.unwrap();
    assert!(r.contains("does not apply"), "{r}");
}

#[tokio::test]
async fn an_archived_version_serves_no_more_and_cannot_be_rolled_back_to() {
    use mlsec_events::audit::AuditAction;
    let chain = Chain::new(contracts());
    let old = chain.promoted(42).await;
    let new = chain.train(43).await;
    chain.evaluate(&new).await.unwrap();
    chain.decide(RISK_A, &new.model_version, ReviewAction::Approve).await.unwrap();
    assert_eq!(chain.stage(&old.model_version).await, Stage::Superseded);
    // The superseded version is retired: no longer a rollback target.
    chain.decide(RISK_B, &old.model_version, ReviewAction::Archive).await.unwrap();
    assert_eq!(chain.stage(&old.model_version).await, Stage::Archived);
    let r = chain.decide(RISK_A, &old.model_version, ReviewAction::Rollback).await.unwrap();
    assert!(r.contains("does not apply"), "{r}");
    // Production is retired: scoring waits, as with no production version at all.
    chain.score(SIGNING, "s1").await.unwrap();
    chain.decide(RISK_B, &new.model_version, ReviewAction::Archive).await.unwrap();
    assert_eq!(chain.stage(&new.model_version).await, Stage::Archived);
    assert!(chain.f.registry.production("fraud_lr").await.unwrap().is_none());
    assert_eq!(chain.score(SIGNING, "s2").await.unwrap_err().class(), ErrorClass::Transient);
    // A staging version is rejected, not archived.
    let third = chain.train(44).await;
    chain.evaluate(&third).await.unwrap();
    let r = chain.decide(RISK_B, &third.model_version, ReviewAction::Archive).await.unwrap();
    assert!(r.contains("does not apply"), "{r}");
    let archived = chain.f.audit.entries().iter().filter(|e| e.action == AuditAction::ModelArchived).count();
    assert_eq!(archived, 2, "each archive is on the audit chain");
    let withdrawn: ModelRejected =
        chain.f.bus.events().iter().rev().find(|e| e.schema == "ModelRejected").unwrap().open().unwrap();
    assert_eq!(withdrawn.reason_code, "archived");
}

#[tokio::test]
async fn an_event_from_another_emitter_is_refused() {
    let chain = Chain::new(contracts());
    let trained = chain.train(42).await;
    // ModelTrained published by the ingest role; a review "by" the train role.
    let forged = message_from("mlsec.ingest", &trained);
    assert_eq!(permanent_reason(chain.governor().handle(&forged).await), "forged_source");
    let forged = message_from("mlsec.train", &reviewed(&trained.model_version, ReviewAction::Approve, 2));
    assert_eq!(permanent_reason(chain.governor().handle(&forged).await), "forged_source");
    assert!(chain.f.registry.get("fraud_lr", &trained.model_version).await.unwrap().is_none());
}

#[tokio::test]
async fn a_promotion_whose_record_or_announcement_was_lost_is_finished_by_the_retry_once() {
    let mut c = contracts();
    c.models[0].approval.required_approvals = 2;
    let chain = Chain::new(c);
    let old = chain.promoted_by(42, &[RISK_A, RISK_B]).await;
    let trained = chain.train(43).await;
    chain.evaluate(&trained).await.unwrap();
    let v = trained.model_version.clone();
    decide_as(&chain, RISK_A, RISK_A, &v).await;
    // The second approval completes the quorum; the transition commits, then the bus fails.
    chain.f.bus.fail_next(1);
    let record = chain.f.registry.get("fraud_lr", &v).await.unwrap().unwrap();
    let d = Decision {
        approver_id: user_id(RISK_B),
        approver_arn: RISK_B.into(),
        model_name: "fraud_lr".into(),
        model_version: v.clone(),
        action: ReviewAction::Approve,
        round: record.round(),
        reason: "reviewed".into(),
        at_ms: 9,
        gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
    };
    chain.f.decisions.record(&d).await.unwrap();
    let msg = message(&reviewed(&v, ReviewAction::Approve, record.round()));
    assert!(chain.governor().handle(&msg).await.is_err(), "the lost announcement fails the message");
    assert_eq!(chain.stage(&v).await, Stage::Production);
    // The redelivery meets a failing audit chain first: the move stays made, unannounced.
    chain.f.audit.fail_next(1);
    let before = chain.count("ModelPromoted");
    assert!(chain.governor().handle(&msg).await.is_err(), "a lost audit record fails the message too");
    assert_eq!(chain.count("ModelPromoted"), before, "never announced before it is audited");
    // The retry finds the move made and finishes it; the first approver's announcement,
    // redelivered later, changes nothing new.
    chain.governor().handle(&msg).await.unwrap();
    chain.governor().handle(&message(&reviewed(&v, ReviewAction::Approve, record.round()))).await.unwrap();
    let promoted: Vec<ModelPromoted> =
        chain.f.bus.events().iter().filter(|e| e.schema == "ModelPromoted").map(|e| e.open().unwrap()).collect();
    assert_eq!(chain.count("ModelPromoted"), before + 2, "announced by the retry and by the redelivery");
    let last = promoted.last().unwrap();
    assert_eq!(
        (last.model_version.as_str(), last.previous_version.as_deref()),
        (v.as_str(), Some(old.model_version.as_str()))
    );
    let mut approvers = last.approvers.clone().unwrap();
    approvers.sort();
    assert_eq!(approvers, [RISK_A, RISK_B]);
    assert_eq!(chain.distinct("ModelPromoted"), 2, "one id per promotion, however often it is announced");
    let audited = chain.f.audit.entries().iter().filter(|e| e.action.as_str() == "model_promoted").count();
    assert_eq!(audited, 2, "one audit record per promotion");
}

#[tokio::test]
async fn each_decision_is_audited_once_by_its_own_writer() {
    use mlsec_events::audit::AuditAction;
    let chain = Chain::new(contracts());
    let trained = chain.promoted(42).await;
    // The same ModelTrained again (a redelivery): nothing new.
    chain.evaluate(&trained).await.unwrap();
    let actions: Vec<AuditAction> = chain.f.audit.entries().iter().map(|e| e.action).collect();
    assert_eq!(actions, [AuditAction::ModelTrained, AuditAction::GateEvaluated, AuditAction::ModelPromoted]);
    let entries = chain.f.audit.entries();
    assert_eq!(entries[1].reason, "passed");
    assert_eq!(entries[2].attributes.get("approvers").map(String::as_str), Some(RISK_A), "{:?}", entries[2]);
}

#[test]
fn the_governance_document_maps_every_stage_gate_and_risk_to_real_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/zones/z5-governance.md")).unwrap();
    for stage in Stage::ALL {
        assert!(doc.contains(&format!("`{}`", stage.as_str())), "stage {stage} is not documented");
    }
    for gate in ["minAuc", "maxBrier", "maxAucDrop", "minHoldoutRows", "fairness.minRatio", "maxEqualOpportunityDiff"] {
        assert!(doc.contains(gate), "gate {gate} is not documented");
    }
    for action in ReviewAction::ALL {
        assert!(doc.contains(action.as_str()), "decision {} is not documented", action.as_str());
    }
    let cited = mlsec_runtime::doccheck::cited_tests(&doc, |_| false);
    assert!(cited.len() > 15, "the document cites tests");
    let missing = mlsec_runtime::doccheck::missing_tests(&root, &cited);
    assert!(missing.is_empty(), "the document cites tests that do not exist: {missing:?}");
}
