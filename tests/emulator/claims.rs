//! Idempotency claims on DynamoDB (moto): the conditions that make two concurrent
//! deliveries of one input run once, and a crashed holder's input retryable.

use aws_sdk_dynamodb::types::AttributeValue;
use mlsec_aws::dynamo::DynamoIdempotency;
use mlsec_runtime::ports::{Claim, Idempotency};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_on_dynamodb_let_one_of_two_concurrent_deliveries_work() {
    let stack = Stack::new("claims").await;
    let dep = &stack.dep;
    let table = dep.names.table("idempotency");
    let idem = DynamoIdempotency::new(dep.dynamodb.clone(), table.clone());

    // Two deliveries of one input claim it at once: exactly one gets it.
    let (a, b) = tokio::join!(idem.claim("curate", "e1", 60_000), idem.claim("curate", "e1", 60_000));
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
    assert!(matches!(idem.claim("curate", "e1", 60_000).await.unwrap(), Claim::Held { .. }), "still held");
    // Another worker's namespace is its own.
    assert!(matches!(idem.claim("score", "e1", 60_000).await.unwrap(), Claim::Acquired(_)));
    idem.complete("curate", "e1", &lease.token).await.unwrap();
    assert_eq!(idem.claim("curate", "e1", 60_000).await.unwrap(), Claim::Done);
    assert!(!idem.renew("curate", "e1", &lease.token, 60_000).await.unwrap(), "a done input has no lease");

    // A holder that crashed: its lease runs out and the next delivery takes the input over.
    let Claim::Acquired(crashed) = idem.claim("curate", "e2", 1).await.unwrap() else { panic!("first claim") };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let Claim::Acquired(next) = idem.claim("curate", "e2", 60_000).await.unwrap() else {
        panic!("an expired lease is taken over")
    };
    assert_ne!(next.token, crashed.token);
    assert!(!idem.renew("curate", "e2", &crashed.token, 60_000).await.unwrap(), "the old holder lost it");
    // A released claim is free at once.
    idem.release("curate", "e2", &next.token).await.unwrap();
    assert!(matches!(idem.claim("curate", "e2", 60_000).await.unwrap(), Claim::Acquired(_)));

    // Done records written before claims existed (no state) still count as done.
    dep.dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("curate#legacy".into()))
        .item("done_at_ms", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(idem.claim("curate", "legacy", 60_000).await.unwrap(), Claim::Done);
}
