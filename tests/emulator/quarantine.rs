//! Hostile drops end in quarantine with their reason codes; nothing reaches raw.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::ops::{Subscription, drop_bytes};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_source_zip_renamed_csv_wrong_header_and_polyglot_are_quarantined() {
    let stack = Stack::new("quarantine").await;
    let dep = &stack.dep;
    let sub = Subscription::create(dep, "watch", &["ObjectQuarantined".into(), "RawAccepted".into()]).await.unwrap();
    let running = stack.start(&["ingest"]).await;

    let good = csv_bytes(SampleKind::Training, 20, 3);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend_from_slice(&good);
    let mut polyglot = good.clone();
    polyglot.extend_from_slice(b"tx-x,<script>alert(1)</script>\n");
    let drops = [
        ("intruder/transactions_training/a.csv", good.clone(), "unknown_source"),
        ("bank-core/transactions_training/b.csv", zip, "archive"),
        ("bank-core/transactions_training/c.csv", csv_bytes(SampleKind::Scoring, 20, 3), "wrong_header"),
        ("bank-core/transactions_training/d.csv", polyglot, "polyglot"),
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
    assert_eq!(stack.keys("quarantine").await.len(), 8, "object + reason document per drop");
}

/// Too many bad rows: quarantined with a reason; an approver releases it through the
/// CLI's operation; the gateway then accepts it (bad rows to the rejects file). Dropping
/// the same bytes again afterwards writes nothing and announces the same event again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_object_is_listed_released_by_an_approver_and_then_accepted_once() {
    let stack = Stack::new("release").await;
    let dep = &stack.dep;
    let sub = Subscription::create(dep, "watch", &["ObjectQuarantined".into(), "RawAccepted".into()]).await.unwrap();
    let running = stack.start(&["ingest"]).await;

    // 100 rows, 3 with an unparseable label: 3% > the contract's 1%.
    let text = String::from_utf8(csv_bytes(SampleKind::Training, 100, 8)).unwrap();
    let body: String =
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                if [5, 6, 7].contains(&i) {
                    format!("{},maybe\n", &l[..l.rfind(',').unwrap()])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
    let key = "bank-core/transactions_training/late-feed.csv";
    drop_bytes(dep, key, ByteStream::from(body.clone().into_bytes())).await.unwrap();
    let q = sub.wait_for(&["ObjectQuarantined"], Duration::from_secs(60)).await.unwrap();
    assert_eq!(q[0].event["reason_code"], "reject_threshold");

    let listed = mlsec_cli::ops::quarantine_list(dep, Some("transactions_training")).await.unwrap();
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert!(entry.releasable && !entry.malware_class && entry.released_by.is_none());
    let shown = mlsec_cli::ops::quarantine_show(dep, &entry.dataset, &entry.sha256).await.unwrap();
    assert_eq!(shown.reason.evidence.line, Some(6));

    // The approver is whoever STS says holds the credentials, not a typed name.
    let (ana, ana_arn) = stack.as_person("ana").await;
    let record =
        mlsec_cli::ops::quarantine_release(&ana, &entry.dataset, &entry.sha256, "known late labels").await.unwrap();
    assert_eq!(record.landing_key, key);
    assert_eq!(record.approver, ana_arn);
    let a = sub.wait_for(&["RawAccepted"], Duration::from_secs(60)).await.unwrap();
    assert_eq!(a[0].event["rows"], 97);
    let listed = mlsec_cli::ops::quarantine_list(dep, None).await.unwrap();
    assert_eq!(listed[0].released_by.as_deref(), Some(ana_arn.as_str()));
    // Quarantine and release are on the audit chain, each in its actor's name.
    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    assert!(chain.verify(1).ok());
    let records = chain.decoded();
    let actions: Vec<_> = records.iter().map(|r| (r.entry.action.as_str(), r.entry.actor.id.as_str())).collect();
    let ingest_role = dep.names.role("ingest");
    assert!(actions.contains(&("object_quarantined", ingest_role.as_str())), "{actions:?}");
    assert!(actions.contains(&("quarantine_released", ana_arn.as_str())), "{actions:?}");
    let raw = stack.keys("raw").await;
    assert!(raw.iter().any(|k| k.ends_with(".rejects.parquet")), "{raw:?}");

    // The same bytes again, under another name: nothing new is written, and the recorded
    // event is announced again under its id (curation skips what it has done).
    drop_bytes(dep, "bank-core/transactions_training/again.csv", ByteStream::from(body.into_bytes())).await.unwrap();
    let again = sub.wait_for(&["RawAccepted"], Duration::from_secs(60)).await.unwrap();
    assert_eq!(again[0].event_id, a[0].event_id, "the same event, not a second acceptance");
    let queue = dep.names.queue("ingest");
    let drained = stack.eventually(Duration::from_secs(30), || async { stack.depth(&queue).await == 0 }).await;
    assert!(drained);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let more = sub.poll(1).await.unwrap();
    running.stop().await.unwrap();
    assert!(more.is_empty(), "one announcement per drop: {more:?}");
    assert_eq!(stack.keys("raw").await.len(), raw.len(), "no duplicate objects in raw");
}
