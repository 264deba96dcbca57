//! The whole chain: training file → model in production → scoring file → a subscriber
//! receives `RecordsScored`.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::{
    local::WORKERS,
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::{Stack, parquet_rows};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_then_scoring_reaches_a_subscriber_and_every_object_uses_its_zone_key() {
    let stack = Stack::new("chain").await;
    let dep = &stack.dep;
    let sub = Subscription::create(
        dep,
        "consumer",
        &["RecordsScored".into(), "DatasetCurated".into(), "ModelStaged".into(), "ModelPromoted".into()],
    )
    .await
    .unwrap();
    let running = stack.start(&WORKERS).await;

    let training = csv_bytes(SampleKind::Training, 3000, 1);
    let producer = stack.producer().await;
    drop_bytes(&producer, "bank-core/transactions_training/train.csv", ByteStream::from(training)).await.unwrap();
    let promoted = stack.approve_next(&sub, TIMEOUT).await;
    // The dropper the registry holds is the producer session's user id, from the landing
    // object's tag through raw, curated and holdout metadata.
    let promoted = promoted.iter().find(|e| e.schema == "ModelPromoted").unwrap();
    let (model, version) =
        (promoted.event["model_name"].as_str().unwrap(), promoted.event["model_version"].as_str().unwrap());
    let record = dep.ports("operator").registry.get(model, version).await.unwrap().unwrap();
    let dropper = mlsec_aws::identity::whoami(&producer.sts).await.unwrap();
    assert!(dropper.user_id.starts_with("AROA") && dropper.user_id.ends_with(":data-engineer"), "{dropper:?}");
    assert_eq!(record.dropped_by.as_deref(), Some(dropper.user_id.as_str()));
    let scoring = csv_bytes(SampleKind::Scoring, 777, 2);
    drop_bytes(dep, "bank-core/transactions_scoring/today.csv", ByteStream::from(scoring)).await.unwrap();
    let events = sub.wait_for(&["RecordsScored"], TIMEOUT).await.unwrap();
    running.stop().await.unwrap();

    let scored = events.iter().find(|e| e.schema == "RecordsScored").unwrap();
    let curated_scoring = events
        .iter()
        .find(|e| e.schema == "DatasetCurated" && e.event["role"] == "scoring")
        .expect("the subscriber also saw the scoring dataset curated");
    let rows_out = curated_scoring.event["rows_out"].as_i64().unwrap();
    assert_eq!(rows_out, 777);
    assert_eq!(scored.event["rows"].as_i64().unwrap(), rows_out);
    let obj = &scored.event["scored"];
    let rows = parquet_rows(dep, obj["bucket"].as_str().unwrap(), obj["key"].as_str().unwrap()).await;
    assert_eq!(rows as i64, rows_out, "scored Parquet has exactly the curated scoring rows");
    assert_eq!(scored.event["correlation_id"], curated_scoring.event["correlation_id"]);

    // Every object the pipeline wrote is SSE-KMS under its zone's key.
    let mut checked = 0;
    for (bucket, decl) in &dep.topology.buckets {
        if bucket == "landing" {
            continue;
        }
        let key_arn = dep.key_arn(&decl.key).await.unwrap();
        for key in stack.keys(bucket).await {
            let head = dep.s3.head_object().bucket(stack.bucket(bucket)).key(&key).send().await.unwrap();
            assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{bucket}/{key}");
            assert_eq!(head.ssekms_key_id(), Some(key_arn.as_str()), "{bucket}/{key} must use the {} key", decl.key);
            checked += 1;
        }
    }
    // raw: 2 originals + 2 parquet; curated: 2 + DQ reports; holdout: 1; models: artifact,
    // training report, gate report (JSON, Parquet), manifest; scored: 1.
    assert!(checked >= 14, "checked {checked} objects");

    // The run's decisions are on the audit chain, which verifies.
    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    let report = chain.verify(1);
    assert!(report.ok(), "{:?}", report.faults);
    let decoded = chain.decoded();
    let actions: Vec<&str> = decoded.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(actions, ["model_trained", "gate_evaluated", "model_approved", "model_promoted"]);
    let approval = decoded.iter().find(|r| r.entry.action.as_str() == "model_approved").unwrap();
    assert!(approval.entry.actor.id.ends_with("-risk-officer"), "the approver as STS says: {:?}", approval.entry.actor);

    // Lineage from the landing object to the scored file, every stored object verified at
    // its pinned version; the model card says the same.
    let lineage = mlsec_cli::lineage::lineage(dep, &stack.contracts, model, version).await.unwrap();
    assert!(lineage.intact(), "{}", lineage.table());
    let kinds: Vec<&str> = lineage.nodes.iter().map(|n| n.kind.as_str()).collect();
    for kind in [
        "landing object",
        "raw original copy",
        "curated dataset",
        "data-quality report",
        "holdout",
        "model artifact",
        "gate report",
        "approval",
        "signed manifest",
        "scored output",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let landing = &lineage.nodes[0];
    assert!(
        landing.what.ends_with("bank-core/transactions_training/train.csv")
            || landing.what.contains("train.csv?versionId="),
        "{landing:?}"
    );
    assert!(landing.detail.contains(":assumed-role/") && landing.detail.ends_with("/data-engineer"), "{landing:?}");
    assert!(lineage.dot().starts_with("digraph"));
    let card = mlsec_cli::lineage::card(dep, &stack.contracts, model, version).await.unwrap();
    assert!(card.markdown.contains("Holdout AUC") && card.markdown.contains("risk-officer"), "{}", card.markdown);
    assert!(card.html.contains("<table>") && card.html.contains("risk-officer"));

    // A user's notebook reads the scored file as it is.
    let scored_file = std::env::temp_dir().join(format!("{}-scored.parquet", dep.names.prefix));
    let body =
        dep.s3.get_object().bucket(obj["bucket"].as_str().unwrap()).key(obj["key"].as_str().unwrap()).send().await;
    std::fs::write(&scored_file, body.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(mlsec_tests::pyarrow_rows(&scored_file), 777);
}
