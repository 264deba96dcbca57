//! People's decisions on the real stack: a decision whose first run stopped after it was
//! recorded (no audit record, no announcement) is finished by running the command again.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::{
    local::WORKERS,
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::{
    now_ms,
    ports::{Decision, ReviewAction, Stage},
    sample::{SampleKind, csv_bytes},
};
use mlsec_tests::Stack;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_stopped_after_it_was_recorded_is_finished_by_running_it_again() {
    let stack = Stack::new("resume").await;
    let dep = &stack.dep;
    let sub =
        Subscription::create(dep, "watch", &["ModelStaged".into(), "ModelReviewed".into(), "ModelRejected".into()])
            .await
            .unwrap();
    let running = stack.start(&WORKERS).await;
    // 3,000 rows, as in the chain test: the holdout split is keyed by a KMS-derived subkey,
    // new on every stack, and with 2,000 rows a split now and then fell below the gate
    // (ModelRejected, so no ModelStaged: the cause of two CI failures of this test).
    let training = csv_bytes(SampleKind::Training, 3000, 3);
    drop_bytes(&stack.producer().await, "bank-core/transactions_training/t.csv", ByteStream::from(training))
        .await
        .unwrap();
    // A rejection arrives on the same subscription, so a timeout names it ("received [...]").
    let seen = sub.wait_for(&["ModelStaged"], TIMEOUT).await.unwrap();
    let staged = &seen.iter().find(|e| e.schema == "ModelStaged").unwrap().event;
    let (model, version) = (staged["model_name"].as_str().unwrap(), staged["model_version"].as_str().unwrap());
    let (officer, officer_arn) = stack.as_person("risk-officer").await;
    let me = mlsec_aws::identity::whoami(&officer.sts).await.unwrap();
    let record = dep.ports("operator").registry.get(model, version).await.unwrap().unwrap();

    // The first run recorded the decision and stopped: no audit record, no announcement.
    let stored = Decision {
        approver_id: me.user_id.clone(),
        approver_arn: officer_arn.clone(),
        model_name: model.into(),
        model_version: version.into(),
        action: ReviewAction::Approve,
        round: record.round(),
        reason: "gate report reviewed".into(),
        at_ms: now_ms(),
        gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
    };
    assert!(officer.ports("operator").decisions.record(&stored).await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dep.ports("operator").registry.get(model, version).await.unwrap().unwrap().stage, Stage::Staging);

    // Someone writes garbage into their own partition of the decisions table: it counts
    // for nothing and blocks no one's review.
    use aws_sdk_dynamodb::types::AttributeValue::S;
    dep.dynamodb
        .put_item()
        .table_name(dep.names.table("decisions"))
        .item("approver_id", S("AROAGARBAGE:mallory".into()))
        .item("decision", S(format!("{model}@{version}#approve#{}", record.round())))
        .item("subject", S(format!("{model}@{version}")))
        .item("body", S("{not a decision".into()))
        .send()
        .await
        .unwrap();

    // Running it again finishes it: announced, audited in the officer's name, promoted.
    let d =
        mlsec_cli::models::decide(&officer, &stack.contracts, model, version, ReviewAction::Approve, "again", TIMEOUT)
            .await
            .unwrap();
    assert_eq!(d.stage, Stage::Production, "{d:?}");
    let reviewed = sub.wait_for(&["ModelReviewed"], TIMEOUT).await.unwrap();
    assert_eq!(reviewed.iter().filter(|e| e.schema == "ModelReviewed").count(), 1);
    running.stop().await.unwrap();
    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    let approvals: Vec<_> =
        chain.decoded().into_iter().filter(|r| r.entry.action.as_str() == "model_approved").collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].entry.actor.id, officer_arn);
    assert_eq!(approvals[0].entry.reason, "gate report reviewed", "the stored decision, not the re-run's words");
    // Once more: the version moved on, so the command refuses rather than re-deciding.
    let again =
        mlsec_cli::models::decide(&officer, &stack.contracts, model, version, ReviewAction::Approve, "x", TIMEOUT);
    assert!(again.await.unwrap_err().to_string().contains("does not apply"));
}
