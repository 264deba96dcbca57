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

fn worker(f: &FakePorts) -> IngestWorker {
    let contracts = Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap();
    IngestWorker::new(
        f.ports(),
        Arc::new(contracts),
        IngestConfig { landing_bucket: LANDING.into(), raw: bucket("t-raw"), quarantine: bucket("t-quarantine") },
    )
}

fn drop_object(f: &FakePorts, key: &str, body: Vec<u8>) -> Inbound {
    let version = f.store.seed(LANDING, key, body.clone());
    let detail = serde_json::json!({
        "bucket": {"name": LANDING},
        "object": {"key": key, "size": body.len(), "etag": "e", "version-id": version},
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
    // Redelivery derives the same event id.
    assert_eq!(event.event_id, mlsec_events::derive_event_id(&msg.input_id(), WORKER));
}

#[tokio::test]
async fn an_unregistered_source_is_quarantined() {
    let e = quarantined(csv_bytes(SampleKind::Training, 5, 1), "intruder/transactions_training/f.csv").await;
    assert_eq!(e.reason_code, "unknown_source");
    assert_eq!(e.dataset, None);
}

#[tokio::test]
async fn a_zip_renamed_csv_is_quarantined_as_not_csv() {
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend_from_slice(&csv_bytes(SampleKind::Training, 5, 1));
    assert_eq!(quarantined(zip, KEY).await.reason_code, "not_csv");
}

#[tokio::test]
async fn a_wrong_header_is_quarantined() {
    let body = csv_bytes(SampleKind::Scoring, 5, 1); // lacks is_fraud
    assert_eq!(quarantined(body, KEY).await.reason_code, "wrong_header");
}

#[tokio::test]
async fn bad_values_ragged_rows_bad_utf8_and_binary_are_quarantined_with_their_reasons() {
    let good = String::from_utf8(csv_bytes(SampleKind::Training, 3, 1)).unwrap();
    let header = good.lines().next().unwrap().to_string();
    let row = good.lines().nth(1).unwrap().to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("{header}\n{}\n", row.replace(",true", ",maybe").replace(",false", ",maybe")).into_bytes(),
            "unparseable_value",
        ),
        (format!("{header}\n{row},extra\n").into_bytes(), "ragged_row"),
        ([format!("{header}\n").as_bytes(), b"tx-1,Jo\xc3\x28o,1,2,3\n"].concat(), "invalid_utf8"),
        ([format!("{header}\n").as_bytes(), b"tx-1,\x00\n"].concat(), "binary_content"),
        (format!("{header}\n").into_bytes(), "empty"),
        (Vec::new(), "empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00".to_vec(), "not_csv"),
    ];
    for (body, reason) in cases {
        assert_eq!(quarantined(body, KEY).await.reason_code, reason);
    }
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
    assert_eq!(e.event_id, mlsec_events::derive_event_id(&msg.input_id(), WORKER));
}

#[tokio::test]
async fn an_object_over_the_contract_size_limit_is_quarantined_without_parsing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let path = dir.join("transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("value: 268435456", "value: 1000");
    let mut contracts = Contracts::load_dir(&dir).unwrap();
    let i = contracts.datasets.iter().position(|d| d.dataset == "transactions_training").unwrap();
    contracts.datasets[i] = mlsec_runtime::contract::DatasetContract::parse(&path, &text).unwrap();
    assert_eq!(contracts.datasets[i].max_object_bytes, 1000);
    let f = FakePorts::new();
    let w = IngestWorker::new(
        f.ports(),
        Arc::new(contracts),
        IngestConfig { landing_bucket: LANDING.into(), raw: bucket("t-raw"), quarantine: bucket("t-quarantine") },
    );
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
    assert_eq!(e.reason_code, "unparseable_value");
    let doc = f.store.object("t-quarantine", &e.reason_document.key).unwrap().body;
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["evidence"]["column"], "amount");
    assert_eq!(doc["evidence"]["line"], 3);
    assert!(!doc.to_string().contains(secret), "the reason document must not quote data: {doc}");
    assert!(!f.bus.events()[0].to_json().contains(secret));
}
