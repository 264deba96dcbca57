//! A model artifact altered by one byte after promotion is refused: nothing is scored.

use std::time::Duration;

use aws_sdk_s3::{primitives::ByteStream, types::ServerSideEncryption};
use mlsec_cli::{
    local::WORKERS,
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_altered_after_promotion_is_refused_and_nothing_is_scored() {
    let stack = Stack::new("tamper").await;
    let dep = &stack.dep;
    let sub = Subscription::create(dep, "watch", &["ModelPromoted".into(), "RecordsScored".into()]).await.unwrap();
    let running = stack.start(&WORKERS).await;
    drop_bytes(
        dep,
        "bank-core/transactions_training/t.csv",
        ByteStream::from(csv_bytes(SampleKind::Training, 2000, 5)),
    )
    .await
    .unwrap();
    let promoted = sub.wait_for(&["ModelPromoted"], Duration::from_secs(120)).await.unwrap();
    let promoted = promoted.iter().find(|e| e.schema == "ModelPromoted").unwrap();

    // An attacker with write access to the models bucket flips one byte of the artifact.
    let models = stack.bucket("models");
    let key = format!(
        "{}/{}/model.json",
        promoted.event["model_name"].as_str().unwrap(),
        promoted.event["model_version"].as_str().unwrap()
    );
    let original =
        dep.s3.get_object().bucket(&models).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let mut altered = original.to_vec();
    let i = altered.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    altered[i] = if altered[i] == b'9' { b'8' } else { altered[i] + 1 };
    dep.s3
        .put_object()
        .bucket(&models)
        .key(&key)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(dep.key_arn("models").await.unwrap())
        .body(ByteStream::from(altered))
        .send()
        .await
        .unwrap();

    drop_bytes(dep, "bank-core/transactions_scoring/s.csv", ByteStream::from(csv_bytes(SampleKind::Scoring, 100, 6)))
        .await
        .unwrap();
    // The scorer refuses every attempt; after maxReceiveCount the message is parked in its DLQ.
    let parked =
        stack.eventually(Duration::from_secs(60), || async { stack.depth(&dep.names.dlq("score")).await == 1 }).await;
    let scored = sub.poll(1).await.unwrap();
    running.stop().await.unwrap();
    assert!(parked, "the refused scoring message is parked in the score DLQ");
    assert!(scored.iter().all(|e| e.schema != "RecordsScored"), "nothing was scored");
    assert!(stack.keys("scored").await.is_empty(), "no scored output exists");
}
