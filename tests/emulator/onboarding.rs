//! Bring your own dataset in three commands, on the emulator: `mlsec contract infer` on a
//! public file the project did not make, `mlsec check` of the same file, then the drop,
//! which the running gateway and curate zone take to the curated zone under the inferred
//! contract, with no code change. (`scripts/lint-contracts.sh` lints an inferred contract
//! with datacontract-cli in CI.)

use std::{sync::Arc, time::Duration};

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::{
    check::{Verdict, check_bytes},
    infer::{InferOptions, infer_bytes},
    local,
    ops::{Subscription, drop_bytes},
};
use mlsec_events::DatasetRole;
use mlsec_runtime::contract::{Contracts, DatasetContract};
use mlsec_tests::{Stack, TEST_POLL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inferred_contract_takes_a_new_dataset_from_drop_to_curated_with_no_code() {
    let stack = Stack::new("onboard").await;
    let dep = &stack.dep;
    let gz = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/german-credit/germancredit.csv.gz")).unwrap();
    let opts = InferOptions {
        dataset: "german_credit".into(),
        source: "credit".into(),
        role: DatasetRole::Training,
        scoring_model: None,
        domain: Some("credit".into()),
    };
    let inferred = infer_bytes("germancredit.csv.gz", &gz, &opts).unwrap();
    let contract = DatasetContract::parse(std::path::Path::new("german_credit.yaml"), &inferred.contract_yaml).unwrap();
    let mut datasets = stack.contracts.datasets.clone();
    datasets.push(contract);
    let contracts = Arc::new(Contracts { datasets, models: stack.contracts.models.clone() });
    let key = "credit/german_credit/germancredit.csv.gz";
    let checked = check_bytes(&contracts, "germancredit.csv.gz", key, &gz, None, mlsec_runtime::now_ms());
    assert_eq!(checked.verdict, Verdict::Accepted, "{checked:?}");

    let sub = Subscription::create(
        dep,
        "onboard",
        &["DatasetCurated".into(), "DatasetRejected".into(), "ObjectQuarantined".into()],
    )
    .await
    .unwrap();
    let running = local::start(dep, contracts, &["ingest", "curate"], TEST_POLL).await.unwrap();
    drop_bytes(&stack.producer().await, key, ByteStream::from(gz)).await.unwrap();
    let events = sub.wait_for(&["DatasetCurated"], Duration::from_secs(90)).await;
    running.stop().await.unwrap();
    let events = events.expect("the dataset reaches the curated zone");
    let schemas: Vec<&str> = events.iter().map(|e| e.schema.as_str()).collect();
    assert_eq!(schemas, vec!["DatasetCurated"], "accepted end to end, nothing quarantined or rejected");
    let curated = &events[0].event;
    assert_eq!(curated["dataset"], "german_credit");
    assert_eq!(curated["rows_in"].as_i64(), Some(1000));
    assert_eq!(curated["rows_rejected"].as_i64(), Some(0));
    assert_eq!(
        curated["rows_out"].as_i64().unwrap() + curated["holdout_rows"].as_i64().unwrap(),
        1000,
        "every row is curated or held out"
    );
}

/// `mlsec drop` of a file large enough for a progress line: the body is counted as the SDK
/// reads it, and S3 still receives every byte, with its length and the dropper tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_drop_arrives_whole_with_its_dropper_tag() {
    use sha2::Digest;
    let stack = Stack::new("bigdrop").await;
    let dep = &stack.dep;
    let csv = mlsec_runtime::sample::csv_bytes(mlsec_runtime::sample::SampleKind::Training, 200_000, 3);
    assert!(csv.len() as u64 >= mlsec_cli::ops::PROGRESS_FROM, "{} bytes", csv.len());
    let path = std::env::temp_dir().join(format!("mlsec-bigdrop-{}.csv", std::process::id()));
    std::fs::write(&path, &csv).unwrap();
    let key = mlsec_cli::ops::drop_file(dep, &path, "bank-core", "transactions_training").await.unwrap();
    std::fs::remove_file(&path).ok();
    let landing = stack.bucket("landing");
    let got = dep.s3.get_object().bucket(&landing).key(&key).send().await.unwrap();
    assert_eq!(got.content_length(), Some(csv.len() as i64));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), hex::encode(sha2::Sha256::digest(&csv)));
    let tags = dep.s3.get_object_tagging().bucket(&landing).key(&key).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == mlsec_runtime::ports::DROPPED_BY_TAG), "{tags:?}");
}
