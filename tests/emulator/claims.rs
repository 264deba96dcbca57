//! Idempotency claims on DynamoDB (moto): the conditions that make two concurrent
//! deliveries of one input run once, and a crashed holder's input retryable.

use aws_sdk_dynamodb::types::AttributeValue;
use mlsec_aws::dynamo::DynamoIdempotency;
use mlsec_runtime::ports::{Claim, Failure, Idempotency};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_on_dynamodb_let_one_of_two_concurrent_deliveries_work() {
    let stack = Stack::new("claims").await;
    let dep = &stack.dep;
    let table = dep.names.table("idempotency");
    let idem = DynamoIdempotency::new(dep.dynamodb.clone(), table.clone());

    // Two deliveries of one input claim it at once: exactly one gets it.
    let (a, b) = tokio::join!(idem.claim("curate", "e1", "sha-m", 60_000), idem.claim("curate", "e1", "sha-m", 60_000));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (lease, other) = match (a, b) {
        (Claim::Acquired(l), other) | (other, Claim::Acquired(l)) => (l, other),
        (a, b) => panic!("nobody got the claim: {a:?} {b:?}"),
    };
    assert!(matches!(other, Claim::Held { until_ms } if until_ms == lease.until_ms), "{other:?}");
    // Only the holder renews or releases it.
    assert!(!idem.renew("curate", "e1", "not-the-token", 60_000).await.unwrap());
    assert!(idem.renew("curate", "e1", &lease.token, 60_000).await.unwrap());
    idem.release("curate", "e1", "not-the-token").await.unwrap();
    assert!(matches!(idem.claim("curate", "e1", "sha-m", 60_000).await.unwrap(), Claim::Held { .. }), "still held");
    // Another worker's namespace is its own.
    assert!(matches!(idem.claim("score", "e1", "sha-m", 60_000).await.unwrap(), Claim::Acquired(_)));
    idem.complete("curate", "e1", &lease.token).await.unwrap();
    assert_eq!(idem.claim("curate", "e1", "sha-m", 60_000).await.unwrap(), Claim::Done);
    assert!(!idem.renew("curate", "e1", &lease.token, 60_000).await.unwrap(), "a done input has no lease");

    // A holder that crashed: its lease runs out and the next delivery takes the input over.
    let Claim::Acquired(crashed) = idem.claim("curate", "e2", "sha-m", 1).await.unwrap() else { panic!("first claim") };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let Claim::Acquired(next) = idem.claim("curate", "e2", "sha-m", 60_000).await.unwrap() else {
        panic!("an expired lease is taken over")
    };
    assert_ne!(next.token, crashed.token);
    assert!(!idem.renew("curate", "e2", &crashed.token, 60_000).await.unwrap(), "the old holder lost it");
    // A released claim is free at once.
    idem.release("curate", "e2", &next.token).await.unwrap();
    assert!(matches!(idem.claim("curate", "e2", "sha-m", 60_000).await.unwrap(), Claim::Acquired(_)));

    // Done records written before claims existed (no state) still count as done.
    dep.dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("curate#legacy".into()))
        .item("done_at_ms", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(idem.claim("curate", "legacy", "sha-m", 60_000).await.unwrap(), Claim::Done);

    // The claim keeps the digest of the message that took it (what proves origin to a replay).
    let state = idem.input_state("curate", "e1").await.unwrap().unwrap();
    assert_eq!(
        (state.state.as_str(), state.message_sha256.as_deref()),
        ("done", Some("sha-m")),
        "done keeps the digest"
    );
    let state = idem.input_state("curate", "e2").await.unwrap().unwrap();
    assert_eq!((state.state.as_str(), state.message_sha256.as_deref()), ("in_progress", Some("sha-m")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_records_count_attempts_and_keep_every_failed_digest_on_dynamodb() {
    let stack = Stack::new("failures").await;
    let dep = &stack.dep;
    let idem = DynamoIdempotency::new(dep.dynamodb.clone(), dep.names.table("idempotency"));
    let failure = |sha: &str, at_ms| Failure {
        input_key: "e9".into(),
        message_sha256: sha.into(),
        event_type: Some("RawAccepted".into()),
        dataset: Some("transactions_training".into()),
        correlation_id: Some("c9".into()),
        error_class: "permanent".into(),
        reason_code: "contract_version_mismatch".into(),
        operation: None,
        at_ms,
    };
    let first = idem.record_failure("curate", &failure("aa", 1_000)).await.unwrap();
    assert_eq!((first.attempts, first.first_failure_ms, first.last_failure_ms), (1, 1_000, 1_000));
    let second = idem.record_failure("curate", &failure("bb", 2_000)).await.unwrap();
    assert_eq!((second.attempts, second.first_failure_ms, second.last_failure_ms), (2, 1_000, 2_000));
    assert_eq!(second.message_sha256s, vec!["aa".to_string(), "bb".to_string()]);
    assert_eq!(second.reason_code, "contract_version_mismatch");
    assert_eq!(second.operation, None);
    assert_eq!(idem.failure("curate", "e9").await.unwrap(), Some(second));
    assert_eq!(idem.failure("score", "e9").await.unwrap(), None, "per worker");
}

/// A retry (a message received before) does not write a second, identical version of an
/// output an earlier attempt already wrote; different content, or a first attempt, writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_skips_a_put_whose_key_already_holds_the_same_digest() {
    use mlsec_runtime::ports::attempt;
    let stack = Stack::new("rewrites").await;
    let dep = &stack.dep;
    let store = dep.ports("operator").store;
    let dest = dep.bucket_ref("curated").await.unwrap();
    let versions = || async {
        let out = dep.s3.list_object_versions().bucket(&dest.name).prefix("k/").send().await.unwrap();
        out.versions().len()
    };
    let body = bytes::Bytes::from_static(b"the same bytes");
    let first = store.put(&dest, "k/a.parquet", body.clone(), "application/octet-stream").await.unwrap();
    // A retry of the same write: no new version, the first one is named.
    let again =
        attempt::scope(true, store.put(&dest, "k/a.parquet", body.clone(), "application/octet-stream")).await.unwrap();
    assert_eq!(again.version_id, first.version_id);
    assert_eq!((again.sha256.as_str(), again.size), (first.sha256.as_str(), first.size));
    assert_eq!(versions().await, 1);
    // A copy retried onto a key that holds the source's digest is skipped too.
    let copied = store.copy(&first, &dest, "k/copy.parquet").await.unwrap();
    let copied_again = attempt::scope(true, store.copy(&first, &dest, "k/copy.parquet")).await.unwrap();
    assert_eq!(copied_again.version_id, copied.version_id);
    assert_eq!(versions().await, 2);
    // Other content on retry, and the same content on a first attempt, are written.
    let other = attempt::scope(true, store.put(&dest, "k/a.parquet", "other".into(), "application/octet-stream"))
        .await
        .unwrap();
    assert_ne!(other.version_id, first.version_id);
    store.put(&dest, "k/a.parquet", "other".into(), "application/octet-stream").await.unwrap();
    assert_eq!(versions().await, 4);
}
