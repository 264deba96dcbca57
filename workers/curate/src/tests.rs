//! Unit tests of curation against the in-memory ports.

use std::{path::Path, sync::Arc};

use arrow::array::{Array, StringArray};
use bytes::Bytes;
use mlsec_events::{DatasetCurated, DatasetRole, Envelope, ObjectRef, RawAccepted, sha256_hex};
use mlsec_runtime::{
    ErrorClass, Handler, Inbound,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    inbound::eventbridge_body,
    ports::ObjectStore,
    sample::{SampleKind, csv_bytes},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn contracts() -> Arc<Contracts> {
    Arc::new(Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap())
}

fn raw_parquet(contracts: &Contracts, dataset: &str, csv: &[u8]) -> Bytes {
    mlsec_ingest::validate::to_parquet(contracts.dataset(dataset).unwrap(), csv).unwrap()
}

async fn raw_event(f: &FakePorts, contracts: &Contracts, dataset: &str, csv: &[u8]) -> Inbound {
    let parquet = f.store.put(&bucket("t-raw"), "p.parquet", raw_parquet(contracts, dataset, csv), "x").await.unwrap();
    let obj = ObjectRef { bucket: "l".into(), key: "k".into(), version_id: None, sha256: sha256_hex(csv), size: 1 };
    let ev = RawAccepted {
        event_id: "e1".into(),
        correlation_id: "c1".into(),
        dataset: dataset.into(),
        contract_version: "1.0.0".into(),
        source: obj.clone(),
        original: obj,
        parquet,
        rows: 0,
        occurred_at_ms: 0,
    };
    let detail = serde_json::to_value(Envelope::wrap(&ev).unwrap()).unwrap();
    Inbound::parse("m", &eventbridge_body("mlsec.ingest", "RawAccepted", detail)).unwrap()
}

fn worker(f: &FakePorts) -> CurateWorker {
    CurateWorker::new(
        f.ports(),
        contracts(),
        CurateConfig { curated: bucket("t-curated"), pseudonym_key_id: "alias/t-pseudonym".into() },
    )
}

fn column(parquet: Bytes, name: &str) -> Vec<Option<String>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(parquet).unwrap().build().unwrap();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let Some(col) = b.column_by_name(name) else { return vec![] };
        let s = col.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
    }
    out
}

#[tokio::test]
async fn pii_is_pseudonymised_or_dropped_and_never_copied() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    let msg = raw_event(&f, &c, "transactions_training", &csv).await;
    worker(&f).handle(&msg).await.unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert_eq!(ev.role, DatasetRole::Training);
    assert_eq!((ev.rows_in, ev.rows_out, ev.rows_rejected), (300, 300, 0));
    let out = f.store.object("t-curated", &ev.curated.key).unwrap().body;
    assert_eq!(ev.dataset_digest, sha256_hex(&out));
    // No raw CPF, e-mail or name appears anywhere in the curated bytes.
    let text = String::from_utf8_lossy(&csv).to_string();
    for line in text.lines().skip(1).take(50) {
        let fields: Vec<&str> = line.split(',').collect();
        for pii in [fields[1], fields[2], fields[3]] {
            assert!(!out.windows(pii.len()).any(|w| w == pii.as_bytes()), "PII value leaked into curated data");
        }
    }
    assert!(column(out.clone(), "customer_name").is_empty(), "dropped column must be absent");
    let cpfs = column(out, "customer_cpf");
    assert!(cpfs.iter().all(|p| p.as_ref().unwrap().len() == 64));
}

#[tokio::test]
async fn the_same_cpf_links_within_a_domain_but_not_across_keys() {
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 20, 9);
    let scoring_csv: Vec<u8> = String::from_utf8(csv.clone())
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect::<String>()
        .into_bytes();
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    w.handle(&raw_event(&f, &c, "transactions_scoring", &scoring_csv).await).await.unwrap();
    let evs: Vec<DatasetCurated> = f.bus.events().iter().map(|e| e.open().unwrap()).collect();
    let a = column(f.store.object("t-curated", &evs[0].curated.key).unwrap().body, "customer_cpf");
    let b = column(f.store.object("t-curated", &evs[1].curated.key).unwrap().body, "customer_cpf");
    assert_eq!(a, b, "same domain, same pseudonyms");
    // Another root key (another deployment or a rotated key) gives unrelated pseudonyms.
    let g = FakePorts::new();
    let other = CurateWorker::new(
        g.ports(),
        c.clone(),
        CurateConfig { curated: bucket("t-curated"), pseudonym_key_id: "alias/other".into() },
    );
    other.handle(&raw_event(&g, &c, "transactions_training", &csv).await).await.unwrap();
    let ev: DatasetCurated = g.bus.events()[0].open().unwrap();
    let d = column(g.store.object("t-curated", &ev.curated.key).unwrap().body, "customer_cpf");
    assert!(a.iter().zip(&d).all(|(x, y)| x != y));
    // The subkey is derived once per domain, not per message.
    assert_eq!(f.keys.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn rows_missing_required_values_are_rejected_and_counted() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = String::from_utf8(csv_bytes(SampleKind::Training, 10, 2)).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    // Empty amount (required) on two rows.
    for i in [2, 5] {
        let mut fields: Vec<&str> = lines[i].split(',').collect();
        fields[4] = "";
        lines[i] = fields.join(",");
    }
    let msg = raw_event(&f, &c, "transactions_training", (lines.join("\n") + "\n").as_bytes()).await;
    worker(&f).handle(&msg).await.unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert_eq!((ev.rows_in, ev.rows_out, ev.rows_rejected), (10, 8, 2));
}

#[tokio::test]
async fn raw_data_that_does_not_match_its_claim_check_is_refused() {
    let f = FakePorts::new();
    let c = contracts();
    let msg = raw_event(&f, &c, "transactions_training", &csv_bytes(SampleKind::Training, 5, 1)).await;
    // Tamper: overwrite the raw Parquet after the event was emitted.
    f.store
        .put(
            &bucket("t-raw"),
            "p.parquet",
            raw_parquet(&c, "transactions_training", &csv_bytes(SampleKind::Training, 6, 1)),
            "x",
        )
        .await
        .unwrap();
    // The event pins the version it announced; point it at the latest (tampered) one.
    let mut ev: RawAccepted = msg.event().unwrap();
    ev.parquet.version_id = None;
    let detail = serde_json::to_value(Envelope::wrap(&ev).unwrap()).unwrap();
    let msg = Inbound::parse("m", &eventbridge_body("mlsec.ingest", "RawAccepted", detail)).unwrap();
    let err = worker(&f).handle(&msg).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(f.bus.events().is_empty());
}
