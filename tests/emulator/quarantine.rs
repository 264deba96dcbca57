//! Hostile drops end in quarantine with their reason codes; nothing reaches raw.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::ops::{Subscription, drop_bytes};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_source_zip_renamed_csv_and_wrong_header_are_quarantined() {
    let stack = Stack::new("quarantine").await;
    let dep = &stack.dep;
    let sub = Subscription::create(dep, "watch", &["ObjectQuarantined".into(), "RawAccepted".into()]).await.unwrap();
    let running = stack.start(&["ingest"]).await;

    let good = csv_bytes(SampleKind::Training, 20, 3);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend_from_slice(&good);
    let drops = [
        ("intruder/transactions_training/a.csv", good.clone(), "unknown_source"),
        ("bank-core/transactions_training/b.csv", zip, "not_csv"),
        ("bank-core/transactions_training/c.csv", csv_bytes(SampleKind::Scoring, 20, 3), "wrong_header"),
    ];
    for (key, body, _) in &drops {
        drop_bytes(dep, key, ByteStream::from(body.clone())).await.unwrap();
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < drops.len() && tokio::time::Instant::now() < deadline {
        seen.extend(sub.poll(1).await.unwrap());
    }
    running.stop().await.unwrap();

    assert!(seen.iter().all(|e| e.schema == "ObjectQuarantined"), "nothing was accepted: {seen:?}");
    for (key, _, reason) in &drops {
        let e = seen.iter().find(|e| e.event["source_key"] == *key).unwrap_or_else(|| panic!("no event for {key}"));
        assert_eq!(e.event["reason_code"], *reason, "{key}");
        // The reason document is in the quarantine bucket and names the same reason.
        let doc = &e.event["reason_document"];
        let body = dep
            .s3
            .get_object()
            .bucket(doc["bucket"].as_str().unwrap())
            .key(doc["key"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["reason_code"], *reason);
    }
    assert!(stack.keys("raw").await.is_empty(), "nothing reaches the raw zone");
    assert_eq!(stack.keys("quarantine").await.len(), 6, "object + reason document per drop");
}
