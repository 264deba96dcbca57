//! Unit tests of the gateway against the in-memory ports.

use std::{path::Path, sync::Arc};

use mlsec_events::{Envelope, ObjectQuarantined, RawAccepted};
use mlsec_runtime::{
    ErrorClass, Handler, Inbound,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    inbound::eventbridge_body,
    sample::{SampleKind, csv_bytes},
};

use super::*;

const LANDING: &str = "t-landing";
/// The emulator's account, standing in for the deployment's (`allowedWriters: [self]`).
const ACCOUNT: &str = "123456789012";

fn config() -> IngestConfig {
    IngestConfig {
        landing_bucket: LANDING.into(),
        raw: bucket("t-raw"),
        quarantine: bucket("t-quarantine"),
        account_id: Some(ACCOUNT.into()),
    }
}

fn worker(f: &FakePorts) -> IngestWorker {
    let contracts = Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap();
    IngestWorker::new(f.ports(), Arc::new(contracts), config())
}

fn drop_object(f: &FakePorts, key: &str, body: Vec<u8>) -> Inbound {
    drop_as(f, key, body, ACCOUNT)
}

fn drop_as(f: &FakePorts, key: &str, body: Vec<u8>, requester: &str) -> Inbound {
    let version = f.store.seed(LANDING, key, body.clone());
    let detail = serde_json::json!({
        "bucket": {"name": LANDING},
        "object": {"key": key, "size": body.len(), "etag": "e", "version-id": version},
        "requester": requester,
    });
    Inbound::parse("m-1", &eventbridge_body("aws.s3", "Object Created", detail)).unwrap()
}

async fn quarantined(body: Vec<u8>, key: &str) -> ObjectQuarantined {
    let f = FakePorts::new();
    let w = worker(&f);
    let msg = drop_object(&f, key, body);
    w.handle(&msg).await.unwrap();
    let events = f.bus.events();
    assert_eq!(events.len(), 1);
    assert!(f.store.keys().iter().all(|(b, _)| b != "t-raw"), "nothing reaches raw");
    events[0].open::<ObjectQuarantined>().unwrap()
}

const KEY: &str = "bank-core/transactions_training/f.csv";

#[tokio::test]
async fn a_valid_sample_is_accepted_into_raw_with_parquet_and_event() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = csv_bytes(SampleKind::Training, 500, 1);
    let msg = drop_object(&f, KEY, body.clone());
    w.handle(&msg).await.unwrap();
    let event: RawAccepted = f.bus.events()[0].open().unwrap();
    assert_eq!(event.rows, 500);
    assert_eq!(event.dataset, "transactions_training");
    assert_eq!(event.source.sha256, mlsec_events::sha256_hex(&body));
    // The original is a server-side copy of the pinned landing version: no bytes through the worker.
    let calls = f.store.calls();
    assert!(calls.iter().any(|c| c == &format!("copy t-raw/{}", event.original.key)), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("put t-raw/original/")), "{calls:?}");
    let original = f.store.object("t-raw", &event.original.key).unwrap();
    assert_eq!(original.body.as_ref(), body.as_slice());
    assert_eq!(original.kms_key_arn, bucket("t-raw").kms_key_arn);
    let parquet = f.store.object("t-raw", &event.parquet.key).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet.body).unwrap().build().unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 500);
    // The event id derives from the content: redelivery and re-drops give the same one.
    let content_id = format!("accepted:transactions_training:{}:{}", event.contract_version, event.source.sha256);
    assert_eq!(event.event_id, mlsec_events::derive_event_id(&content_id, WORKER));
    // Lineage and counts are in the Parquet's metadata; no rejects file when none.
    assert!(!f.store.keys().iter().any(|(_, k)| k.ends_with(".rejects.parquet")));
}

#[tokio::test]
async fn an_unregistered_source_is_quarantined() {
    let e = quarantined(csv_bytes(SampleKind::Training, 5, 1), "intruder/transactions_training/f.csv").await;
    assert_eq!(e.reason_code, "unknown_source");
    assert_eq!(e.dataset, None);
}

#[tokio::test]
async fn a_zip_renamed_csv_is_quarantined_as_an_archive() {
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend_from_slice(&csv_bytes(SampleKind::Training, 5, 1));
    assert_eq!(quarantined(zip, KEY).await.reason_code, "archive");
}

#[tokio::test]
async fn a_wrong_header_is_quarantined() {
    let body = csv_bytes(SampleKind::Scoring, 5, 1); // lacks is_fraud
    assert_eq!(quarantined(body, KEY).await.reason_code, "wrong_header");
}

#[tokio::test]
async fn object_level_problems_are_quarantined_with_their_reasons() {
    let good = String::from_utf8(csv_bytes(SampleKind::Training, 3, 1)).unwrap();
    let header = good.lines().next().unwrap().to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ([format!("{header}\n").as_bytes(), b"tx-1,Jo\xc3\x28o,1,2,3\n"].concat(), "invalid_utf8"),
        ([format!("{header}\n").as_bytes(), b"tx-1,\x00\n"].concat(), "binary_content"),
        (format!("{header}\n").into_bytes(), "empty"),
        (Vec::new(), "empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00".to_vec(), "executable"),
    ];
    for (body, reason) in cases {
        assert_eq!(quarantined(body, KEY).await.reason_code, reason);
    }
}

/// The sample with `bad` rows (1-based data row numbers) replaced by `row`.
fn with_bad_rows(rows: usize, bad: &[usize], row: impl Fn(&str) -> String) -> Vec<u8> {
    let good = String::from_utf8(csv_bytes(SampleKind::Training, rows, 1)).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    for &i in bad {
        lines[i] = row(&lines[i]);
    }
    (lines.join("\n") + "\n").into_bytes()
}

#[tokio::test]
async fn bad_rows_under_the_threshold_go_to_a_rejects_file_and_the_rest_is_accepted() {
    let f = FakePorts::new();
    let w = worker(&f);
    // 1000 rows, 5 bad ones (0.5% < the contract's 1%), one per reason.
    let good = String::from_utf8(csv_bytes(SampleKind::Training, 1000, 1)).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let set_field = |line: &str, i: usize, v: &str| {
        let mut f: Vec<&str> = line.split(',').collect();
        f[i] = v;
        f.join(",")
    };
    lines[10] = set_field(&lines[10], 10, "maybe");
    lines[20] = format!("{},extra", lines[20]);
    lines[30] = set_field(&lines[30], 6, "\"B\"R");
    lines[40] = set_field(&lines[40], 4, "NaN");
    lines[50] = set_field(&lines[50], 1, "=cmd|' /C calc'!A0");
    let body = (lines.join("\n") + "\n").into_bytes();
    w.handle(&drop_object(&f, KEY, body)).await.unwrap();
    let event: RawAccepted = f.bus.events()[0].open().unwrap();
    assert_eq!(event.rows, 995);
    let rejects_key = event.parquet.key.replace(".parquet", ".rejects.parquet");
    let rejects = f.store.object("t-raw", &rejects_key).expect("a rejects file beside the raw Parquet").body;
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(rejects)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    use arrow::array::AsArray;
    let lines_col = batch.column_by_name("line").unwrap().as_primitive::<arrow::datatypes::UInt64Type>();
    let reasons = batch.column_by_name("reason_code").unwrap().as_string::<i32>();
    let got: Vec<(u64, &str)> = (0..batch.num_rows()).map(|i| (lines_col.value(i), reasons.value(i))).collect();
    assert_eq!(
        got,
        [
            (11, "unparseable_value"),
            (21, "ragged_row"),
            (31, "bad_quoting"),
            (41, "non_finite"),
            (51, "formula_injection")
        ]
    );
    // accepted + rejected = rows read
    assert_eq!(event.rows as usize + batch.num_rows(), 1000);
}

#[tokio::test]
async fn bad_rows_over_the_threshold_quarantine_the_object_with_the_first_reject_as_evidence() {
    let body = with_bad_rows(100, &[7, 8], |l| l.replace(",true", ",maybe").replace(",false", ",maybe"));
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&drop_object(&f, KEY, body)).await.unwrap();
    let e: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.reason_code, "reject_threshold");
    let doc: serde_json::Value =
        serde_json::from_slice(&f.store.object("t-quarantine", &e.reason_document.key).unwrap().body).unwrap();
    assert_eq!(doc["evidence"]["line"], 8);
    assert_eq!(doc["evidence"]["column"], "is_fraud");
    assert_eq!(doc["releasable"], true);
    assert!(f.store.keys().iter().all(|(b, _)| b != "t-raw"), "nothing reaches raw");
}

#[tokio::test]
async fn multibyte_characters_split_across_chunks_are_valid() {
    // The fake store streams 7-byte chunks, so "João" straddles chunk boundaries.
    let f = FakePorts::new();
    let w = worker(&f);
    let msg = drop_object(&f, KEY, csv_bytes(SampleKind::Training, 50, 3));
    w.handle(&msg).await.unwrap();
    assert_eq!(f.bus.events()[0].schema, "RawAccepted");
}

#[tokio::test]
async fn a_failed_publish_is_transient_and_nothing_is_acknowledged() {
    let f = FakePorts::new();
    let w = worker(&f);
    let msg = drop_object(&f, KEY, csv_bytes(SampleKind::Training, 5, 1));
    f.bus.fail_next(1);
    let err = w.handle(&msg).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    // The retry re-emits the very same event id.
    w.handle(&msg).await.unwrap();
    let e: Envelope = f.bus.events().remove(0);
    let accepted = e.open::<RawAccepted>().unwrap();
    let (sha, version) = (accepted.source.sha256, accepted.contract_version);
    assert_eq!(
        e.event_id,
        mlsec_events::derive_event_id(&format!("accepted:transactions_training:{version}:{sha}"), WORKER)
    );
}

#[tokio::test]
async fn an_object_over_the_contract_size_limit_is_quarantined_without_parsing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let path = dir.join("transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("value: 2147483648", "value: 1000");
    let mut contracts = Contracts::load_dir(&dir).unwrap();
    let i = contracts.datasets.iter().position(|d| d.dataset == "transactions_training").unwrap();
    contracts.datasets[i] = mlsec_runtime::contract::DatasetContract::parse(&path, &text).unwrap();
    assert_eq!(contracts.datasets[i].ingest.max_object_bytes, 1000);
    let f = FakePorts::new();
    let w = IngestWorker::new(f.ports(), Arc::new(contracts), config());
    let body = csv_bytes(SampleKind::Training, 50, 1);
    assert!(body.len() > 1000);
    let msg = drop_object(&f, KEY, body.clone());
    w.handle(&msg).await.unwrap();
    let e: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.reason_code, "too_large");
    // The quarantined copy is still content-addressed by the full object's digest.
    assert_eq!(e.quarantined.sha256, mlsec_events::sha256_hex(&body));
}

#[tokio::test]
async fn reason_documents_locate_bad_values_without_quoting_them() {
    let good = String::from_utf8(csv_bytes(SampleKind::Training, 3, 1)).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let secret = "SECRET-VALUE-4242";
    // The amount column of the second data row gets a non-number.
    let mut fields: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    fields[4] = secret.into();
    lines[2] = fields.join(",");
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&drop_object(&f, KEY, (lines.join("\n") + "\n").into_bytes())).await.unwrap();
    let e: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.reason_code, "reject_threshold");
    let doc = f.store.object("t-quarantine", &e.reason_document.key).unwrap().body;
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["evidence"]["column"], "amount");
    assert_eq!(doc["evidence"]["line"], 3);
    assert!(!doc.to_string().contains(secret), "the reason document must not quote data: {doc}");
    assert!(!f.bus.events()[0].to_json().contains(secret));
}

#[tokio::test]
async fn the_same_bytes_dropped_twice_are_accepted_once_and_announced_again_under_one_event_id() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = csv_bytes(SampleKind::Training, 200, 5);
    w.handle(&drop_object(&f, KEY, body.clone())).await.unwrap();
    let raw_before = f.store.keys().iter().filter(|(b, _)| b == "t-raw").count();
    // Same bytes under another key (a new input id), then a plain redelivery of the first.
    let second = drop_object(&f, "bank-core/transactions_training/copy.csv", body.clone());
    assert!(w.handle(&second).await.unwrap().starts_with("duplicate content of "));
    assert_eq!(f.store.keys().iter().filter(|(b, _)| b == "t-raw").count(), raw_before, "no duplicate rows in raw");
    // The re-drop announces the recorded event again, byte for byte: curation skips it if
    // it handled it, and handles it if its copy never completed (parked, or lost).
    let events = f.bus.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], events[1], "one event, announced twice");
}

#[tokio::test]
async fn after_a_contract_change_the_same_bytes_dropped_again_are_accepted_under_the_new_version() {
    let f = FakePorts::new();
    let body = csv_bytes(SampleKind::Training, 50, 6);
    worker(&f).handle(&drop_object(&f, KEY, body.clone())).await.unwrap();
    let first: RawAccepted = f.bus.events()[0].open().unwrap();
    // The owners publish a new version of the contract; curation refuses raw data of the old one.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let path = dir.join("transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(&format!("version: {}", first.contract_version), "version: 9.9.9", 1);
    let mut contracts = Contracts::load_dir(&dir).unwrap();
    let i = contracts.datasets.iter().position(|d| d.dataset == "transactions_training").unwrap();
    contracts.datasets[i] = mlsec_runtime::contract::DatasetContract::parse(&path, &text).unwrap();
    let w = IngestWorker::new(f.ports(), Arc::new(contracts), config());
    let outcome = w.handle(&drop_object(&f, "bank-core/transactions_training/again.csv", body)).await.unwrap();
    assert!(outcome.starts_with("accepted "), "{outcome}");
    let second: RawAccepted = f.bus.events()[1].open().unwrap();
    assert_eq!(second.contract_version, "9.9.9");
    assert_ne!(second.event_id, first.event_id, "new data for curation, not a duplicate");
    assert_eq!(second.source.sha256, first.source.sha256);
}

#[tokio::test]
async fn an_untrusted_drop_with_bad_content_names_both_reasons() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = String::from_utf8(csv_bytes(SampleKind::Training, 20, 2)).unwrap().replacen("amount", "amout", 1);
    w.handle(&drop_as(&f, KEY, body.into_bytes(), "999999999999")).await.unwrap();
    let e: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.reason_code, "untrusted_source");
    let doc: serde_json::Value =
        serde_json::from_slice(&f.store.object("t-quarantine", &e.reason_document.key).unwrap().body).unwrap();
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains("the content was refused too: wrong_header"), "{detail}");
}

#[tokio::test]
async fn known_content_from_an_untrusted_writer_is_still_quarantined() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = csv_bytes(SampleKind::Training, 50, 2);
    w.handle(&drop_object(&f, KEY, body.clone())).await.unwrap();
    // The same bytes, written by a principal the contract does not allow.
    let msg = drop_as(&f, "bank-core/transactions_training/again.csv", body, "999999999999");
    w.handle(&msg).await.unwrap();
    let events = f.bus.events();
    assert_eq!(events.len(), 2, "the untrusted drop is not silently skipped as a duplicate");
    let e: ObjectQuarantined = events[1].open().unwrap();
    assert_eq!(e.reason_code, "untrusted_source");
}

#[tokio::test]
async fn the_raw_key_is_dated_by_the_landing_event_not_by_the_attempt() {
    let body = csv_bytes(SampleKind::Training, 50, 2);
    let raw_parquet_key = |time: &str| {
        let body = body.clone();
        let time = time.to_string();
        async move {
            let f = FakePorts::new();
            let version = f.store.seed(LANDING, KEY, body.clone());
            let detail = serde_json::json!({
                "bucket": {"name": LANDING},
                "object": {"key": KEY, "size": body.len(), "etag": "e", "version-id": version},
                "requester": ACCOUNT,
            });
            let event = eventbridge_body("aws.s3", "Object Created", detail).replace("2026-01-01T00:00:00Z", &time);
            worker(&f).handle(&Inbound::parse("m-1", &event).unwrap()).await.unwrap();
            let accepted: RawAccepted = f.bus.events()[0].open().unwrap();
            accepted.parquet.key
        }
    };
    // The date in the raw key is the day the object landed, whenever the worker runs.
    let landed = raw_parquet_key("2026-11-28T23:59:59Z").await;
    assert!(landed.contains("/ingest_date=2026-11-28/"), "{landed}");
    assert_ne!(raw_parquet_key("2026-11-29T00:00:01Z").await, landed);
}

#[tokio::test]
async fn an_untrusted_writer_is_quarantined_and_an_approver_can_release_it() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = csv_bytes(SampleKind::Training, 50, 2);
    w.handle(&drop_as(&f, KEY, body.clone(), "999999999999")).await.unwrap();
    let e: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.reason_code, "untrusted_source");
    let sha = mlsec_events::sha256_hex(&body);
    let landing = bucket(LANDING);
    let err = quarantine::release(
        f.store.as_ref(),
        &bucket("t-quarantine"),
        &landing,
        "transactions_training",
        &sha,
        "",
        "x",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, quarantine::ReleaseError::MissingApproval));
    let record = quarantine::release(
        f.store.as_ref(),
        &bucket("t-quarantine"),
        &landing,
        "transactions_training",
        &sha,
        "maria.risk-officer",
        "partner feed onboarding, ticket RISK-12",
    )
    .await
    .unwrap();
    assert_eq!(record.landing_key, KEY);
    // The copy back to landing arrives as a new drop (still from the untrusted writer's
    // bytes, now with an approval on record) and is accepted.
    let released = f.store.object(LANDING, KEY).unwrap();
    assert_eq!(released.body.as_ref(), body.as_slice());
    let detail = serde_json::json!({
        "bucket": {"name": LANDING},
        "object": {"key": KEY, "size": body.len(), "etag": "e2", "version-id": released.version_id},
        "requester": "999999999999",
    });
    let msg = Inbound::parse("m-2", &eventbridge_body("aws.s3", "Object Created", detail)).unwrap();
    w.handle(&msg).await.unwrap();
    let accepted: RawAccepted = f.bus.events()[1].open().unwrap();
    assert_eq!(accepted.rows, 50);
    let ledger = f.store.object("t-raw", &format!("_ledger/transactions_training/{sha}.json")).unwrap().body;
    assert!(String::from_utf8_lossy(&ledger).contains("maria.risk-officer"));
}

#[tokio::test]
async fn malware_class_and_unparseable_content_cannot_be_released() {
    let f = FakePorts::new();
    let w = worker(&f);
    let mut polyglot = csv_bytes(SampleKind::Training, 5, 1);
    polyglot.extend_from_slice(b"tx-x,%PDF-1.7 hidden\n");
    let sha_poly = mlsec_events::sha256_hex(&polyglot);
    w.handle(&drop_object(&f, KEY, polyglot)).await.unwrap();
    let wrong = csv_bytes(SampleKind::Scoring, 5, 1);
    let sha_wrong = mlsec_events::sha256_hex(&wrong);
    w.handle(&drop_object(&f, KEY, wrong)).await.unwrap();
    let reasons: Vec<String> =
        f.bus.events().iter().map(|e| e.open::<ObjectQuarantined>().unwrap().reason_code).collect();
    assert_eq!(reasons, ["polyglot", "wrong_header"]);
    let (q, l) = (bucket("t-quarantine"), bucket(LANDING));
    let r = quarantine::release(f.store.as_ref(), &q, &l, "transactions_training", &sha_poly, "a", "b").await;
    assert!(matches!(r, Err(quarantine::ReleaseError::MalwareClass(_))), "{r:?}");
    let r = quarantine::release(f.store.as_ref(), &q, &l, "transactions_training", &sha_wrong, "a", "b").await;
    assert!(matches!(r, Err(quarantine::ReleaseError::NotReleasable(_))), "{r:?}");
    assert!(!f.store.keys().iter().any(|(_, k)| k.ends_with("release.json")), "nothing recorded");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_is_inflated_as_it_streams_and_a_bomb_is_stopped() {
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&drop_object(&f, KEY, gzip(&csv_bytes(SampleKind::Training, 300, 4)))).await.unwrap();
    let e: RawAccepted = f.bus.events()[0].open().unwrap();
    assert_eq!(e.rows, 300);
    // A valid header, then 8 MiB of one repeated row: ratio far above the contract's 50.
    let sample = String::from_utf8(csv_bytes(SampleKind::Training, 1, 4)).unwrap();
    let row = sample.lines().nth(1).unwrap();
    let mut text = format!("{}\n", sample.lines().next().unwrap());
    while text.len() < 8 << 20 {
        text.push_str(row);
        text.push('\n');
    }
    let bomb = gzip(text.as_bytes());
    assert!(bomb.len() < 200_000);
    assert_eq!(quarantined(bomb, KEY).await.reason_code, "decompression_bomb");
}

#[tokio::test]
async fn json_lines_are_recognised_by_content_and_checked_like_csv() {
    let sample = String::from_utf8(csv_bytes(SampleKind::Training, 20, 6)).unwrap();
    let mut lines = sample.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut jsonl = String::new();
    for line in lines {
        let mut obj = serde_json::Map::new();
        for (n, v) in names.iter().zip(line.split(',')) {
            let value = match *n {
                "amount" => serde_json::json!(v.parse::<f64>().unwrap()),
                "is_fraud" => serde_json::json!(v == "true"),
                _ => serde_json::json!(v),
            };
            obj.insert(n.to_string(), value);
        }
        jsonl.push_str(&serde_json::Value::Object(obj).to_string());
        jsonl.push('\n');
    }
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&drop_object(&f, "bank-core/transactions_training/f.json", jsonl.clone().into_bytes())).await.unwrap();
    let e: RawAccepted = f.bus.events()[0].open().unwrap();
    assert_eq!(e.rows, 20);
    // A duplicated key and an unknown key are refused row by row (2 of 20: over 1%).
    // (serde_json writes keys sorted, so every line starts with "age_band".)
    let bad = jsonl.replacen("{\"age_band\":", "{\"age_band\":\"x\",\"age_band\":", 1).replacen(
        "{\"age_band\":",
        "{\"admin\":true,\"age_band\":",
        2,
    );
    assert_eq!(quarantined(bad.into_bytes(), KEY).await.reason_code, "reject_threshold");
}

#[test]
fn formula_cells_are_neutralised_when_the_contract_says_so() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("value: reject", "value: neutralise");
    let contract = mlsec_runtime::contract::DatasetContract::parse(&path, &text).unwrap();
    let sample = String::from_utf8(csv_bytes(SampleKind::Training, 2, 1)).unwrap();
    let mut lines: Vec<String> = sample.lines().map(str::to_string).collect();
    let mut f: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    f[1] = "@SUM(1+1)".into();
    lines[1] = f.join(",");
    let parquet = validate::to_parquet(&contract, (lines.join("\n") + "\n").as_bytes()).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    use arrow::array::AsArray;
    let names = batch.column_by_name("customer_name").unwrap().as_string::<i32>();
    assert_eq!(names.value(0), "'@SUM(1+1)");
}

#[test]
fn the_line_limit_counts_content_not_line_ends_wherever_a_chunk_splits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let sample = String::from_utf8(csv_bytes(SampleKind::Training, 20, 3)).unwrap();
    let longest = sample.lines().map(str::len).max().unwrap();
    let with_limit = |limit: usize| {
        let t = text.replacen("maxLineBytes\n    value: 4096", &format!("maxLineBytes\n    value: {limit}"), 1);
        mlsec_runtime::contract::DatasetContract::parse(&path, &t).unwrap()
    };
    let run = |contract: &mlsec_runtime::contract::DatasetContract, body: &[u8], chunk: usize| {
        let mut gate = validate::Gate::new(contract, mlsec_runtime::now_ms(), vec![]).unwrap();
        for c in body.chunks(chunk) {
            gate.push(c).map_err(|r| r.reason_code)?;
        }
        gate.finish().map(|a| a.rows).map_err(|r| r.reason_code)
    };
    let crlf = sample.replace('\n', "\r\n");
    // Lines of exactly the limit pass with LF or CRLF, whichever byte a chunk ends on.
    let exact = with_limit(longest);
    for chunk in [1, 2, 3, 7, longest - 1, longest, longest + 1, longest + 2, longest + 3, 1 << 16] {
        assert_eq!(run(&exact, sample.as_bytes(), chunk), Ok(20), "LF, chunks of {chunk}");
        assert_eq!(run(&exact, crlf.as_bytes(), chunk), Ok(20), "CRLF, chunks of {chunk}");
    }
    // One byte over: refused, with either line end.
    let under = with_limit(longest - 1);
    for chunk in [1, longest, 1 << 16] {
        assert_eq!(run(&under, sample.as_bytes(), chunk), Err(ReasonCode::LineTooLong), "LF, chunks of {chunk}");
        assert_eq!(run(&under, crlf.as_bytes(), chunk), Err(ReasonCode::LineTooLong), "CRLF, chunks of {chunk}");
    }
}

#[tokio::test]
async fn a_quarantine_is_audited_once_with_its_reason_and_no_event_leaves_without_its_record() {
    let f = FakePorts::new();
    let w = worker(&f);
    let body = csv_bytes(SampleKind::Training, 20, 3);
    let msg = drop_as(&f, KEY, body.clone(), "999999999999");
    // The audit chain is down: the decision fails (and is retried), nothing is announced.
    f.audit.fail_next(1);
    assert_eq!(w.handle(&msg).await.unwrap_err().class(), ErrorClass::Transient);
    assert!(f.bus.events().is_empty(), "no event without its audit record");
    // Delivered again, and once more: one record.
    w.handle(&msg).await.unwrap();
    w.handle(&msg).await.unwrap();
    let entries = f.audit.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.action, mlsec_events::audit::AuditAction::ObjectQuarantined);
    assert_eq!(e.reason, "untrusted_source");
    assert_eq!(e.subject.id, format!("transactions_training/{}", mlsec_events::sha256_hex(&body)));
    assert_eq!(e.inputs[0].sha256, mlsec_events::sha256_hex(&body));
    let event: ObjectQuarantined = f.bus.events()[0].open().unwrap();
    assert_eq!(e.decision_id, event.event_id, "the record names the decision's event");
}
