//! A model artifact altered after promotion is never scored: the scorer reads exactly the
//! version the signed manifest pins, so an overwrite changes nothing, and a pinned version
//! that is gone (or differs) refuses scoring.

use std::time::Duration;

use aws_sdk_s3::{primitives::ByteStream, types::ServerSideEncryption};
use mlsec_cli::{
    local::WORKERS,
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_altered_after_promotion_is_never_scored() {
    let stack = Stack::new("tamper").await;
    let dep = &stack.dep;
    let sub =
        Subscription::create(dep, "watch", &["ModelStaged".into(), "ModelPromoted".into(), "RecordsScored".into()])
            .await
            .unwrap();
    let running = stack.start(&WORKERS).await;
    // 3,000 rows: the holdout split is keyed per stack; fewer rows sometimes fail the gate.
    let training = csv_bytes(SampleKind::Training, 3000, 5);
    drop_bytes(&stack.producer().await, "bank-core/transactions_training/t.csv", ByteStream::from(training))
        .await
        .unwrap();
    let promoted = stack.approve_next(&sub, TIMEOUT).await;
    let promoted = promoted.iter().find(|e| e.schema == "ModelPromoted").unwrap();
    let (model, version) =
        (promoted.event["model_name"].as_str().unwrap(), promoted.event["model_version"].as_str().unwrap());
    let record = dep.ports("operator").registry.get(model, version).await.unwrap().unwrap();
    let approved = record.artifact.clone();

    // An attacker with write access to the models bucket overwrites the artifact.
    let models = stack.bucket("models");
    dep.s3
        .put_object()
        .bucket(&models)
        .key(&approved.key)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(dep.key_arn("models").await.unwrap())
        .body(ByteStream::from(b"{\"model\": \"mine\"}".to_vec()))
        .send()
        .await
        .unwrap();
    drop_bytes(dep, "bank-core/transactions_scoring/s1.csv", ByteStream::from(csv_bytes(SampleKind::Scoring, 100, 6)))
        .await
        .unwrap();
    let scored = sub.wait_for(&["RecordsScored"], TIMEOUT).await.unwrap();
    let scored = scored.iter().find(|e| e.schema == "RecordsScored").unwrap();
    assert_eq!(scored.event["model_version"], version, "scored with the approved bytes, not the overwrite");

    // The pinned version itself removed: the scorer refuses; the message is parked.
    dep.s3
        .delete_object()
        .bucket(&models)
        .key(&approved.key)
        .version_id(approved.version_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    drop_bytes(dep, "bank-core/transactions_scoring/s2.csv", ByteStream::from(csv_bytes(SampleKind::Scoring, 100, 7)))
        .await
        .unwrap();
    let parked =
        stack.eventually(Duration::from_secs(60), || async { stack.depth(&dep.names.dlq("score")).await == 1 }).await;
    let later = sub.poll(1).await.unwrap();
    running.stop().await.unwrap();
    assert!(parked, "the refused scoring message is parked in the score DLQ");
    assert!(later.iter().all(|e| e.schema != "RecordsScored"), "nothing more was scored");
    assert_eq!(stack.keys("scored").await.len(), 1, "only the first scoring's output exists");
    // Lineage says so too: the approved artifact's pinned version is gone.
    let lineage = mlsec_cli::lineage::lineage(dep, &stack.contracts, model, version).await.unwrap();
    assert!(!lineage.intact());
    let artifact = lineage.nodes.iter().find(|n| n.kind == "model artifact").unwrap();
    assert_eq!(artifact.check, "missing", "{}", lineage.table());
}
