//! Unit tests of curation against the in-memory ports.

use std::{path::Path, sync::Arc};

use arrow::array::{Array, StringArray};
use bytes::Bytes;
use mlsec_events::{DatasetCurated, DatasetRejected, DatasetRole, Envelope, ObjectRef, RawAccepted, sha256_hex};
use mlsec_runtime::{
    ErrorClass, Handler, Inbound,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    inbound::eventbridge_body,
    ports::ObjectStore,
    sample::{SampleKind, csv_bytes},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use mlsec_curate::*;

use crate::raw_parquet;

fn contracts() -> Arc<Contracts> {
    Arc::new(crate::contracts())
}

async fn raw_event(f: &FakePorts, contracts: &Contracts, dataset: &str, csv: &[u8]) -> Inbound {
    let parquet = f.store.put(&bucket("t-raw"), "p.parquet", raw_parquet(contracts, dataset, csv), "x").await.unwrap();
    let obj = ObjectRef { bucket: "l".into(), key: "k".into(), version_id: None, sha256: sha256_hex(csv), size: 1 };
    let ev = RawAccepted {
        event_id: "e1".into(),
        correlation_id: "c1".into(),
        dataset: dataset.into(),
        contract_version: contracts.dataset(dataset).unwrap().version.clone(),
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
        CurateConfig {
            curated: bucket("t-curated"),
            holdout: bucket("t-holdout"),
            pseudonym_key_id: "alias/t-pseudonym".into(),
        },
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
    let held = ev.holdout_rows.unwrap();
    assert_eq!((ev.rows_in, ev.rows_out + held, ev.rows_rejected), (300, 300, 0));
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
        // Scoring rows: the training rows without age_band and is_fraud.
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string() + "\n")
        .collect::<String>()
        .into_bytes();
    let f = FakePorts::new();
    let w = worker(&f);
    w.handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    w.handle(&raw_event(&f, &c, "transactions_scoring", &scoring_csv).await).await.unwrap();
    let evs: Vec<DatasetCurated> = f.bus.events().iter().map(|e| e.open().unwrap()).collect();
    // The training rows are split between curated and holdout; together they are the scoring rows.
    let mut a = column(f.store.object("t-curated", &evs[0].curated.key).unwrap().body, "customer_cpf");
    a.extend(column(f.store.object("t-holdout", &evs[0].holdout.as_ref().unwrap().key).unwrap().body, "customer_cpf"));
    let mut b = column(f.store.object("t-curated", &evs[1].curated.key).unwrap().body, "customer_cpf");
    a.sort();
    b.sort();
    assert_eq!(a, b, "same domain, same pseudonyms");
    // Another root key (another deployment or a rotated key) gives unrelated pseudonyms.
    let g = FakePorts::new();
    let other = CurateWorker::new(
        g.ports(),
        c.clone(),
        CurateConfig {
            curated: bucket("t-curated"),
            holdout: bucket("t-holdout"),
            pseudonym_key_id: "alias/other".into(),
        },
    );
    other.handle(&raw_event(&g, &c, "transactions_training", &csv).await).await.unwrap();
    let ev: DatasetCurated = g.bus.events()[0].open().unwrap();
    let d = column(g.store.object("t-curated", &ev.curated.key).unwrap().body, "customer_cpf");
    assert!(a.iter().zip(&d).all(|(x, y)| x != y));
    // Subkeys are derived once per label (the domain's pseudonym subkey, the training
    // dataset's holdout subkey), not per message.
    assert_eq!(f.keys.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_same_cpf_in_another_domain_gets_an_unrelated_pseudonym_under_the_same_root_key() {
    let base = contracts();
    let mut cards = base.dataset("transactions_training").unwrap().clone();
    (cards.dataset, cards.domain, cards.landing_prefix) =
        ("cards_training".into(), "cards".into(), "cards/transactions_training/".into());
    let c = Arc::new(Contracts {
        datasets: vec![base.dataset("transactions_training").unwrap().clone(), cards],
        models: vec![],
    });
    let csv = csv_bytes(SampleKind::Training, 20, 9);
    let f = FakePorts::new();
    let w = CurateWorker::new(
        f.ports(),
        c.clone(),
        CurateConfig {
            curated: bucket("t-curated"),
            holdout: bucket("t-holdout"),
            pseudonym_key_id: "alias/t-pseudonym".into(),
        },
    );
    w.handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    w.handle(&raw_event(&f, &c, "cards_training", &csv).await).await.unwrap();
    let evs: Vec<DatasetCurated> = f.bus.events().iter().map(|e| e.open().unwrap()).collect();
    assert_eq!(evs[1].pseudonym_key_version.as_deref(), Some("mlsec/pseudonym/v1/cards"));
    let payments = column(f.store.object("t-curated", &evs[0].curated.key).unwrap().body, "customer_cpf");
    let cards = column(f.store.object("t-curated", &evs[1].curated.key).unwrap().body, "customer_cpf");
    assert_eq!(payments.len() as i64 + evs[0].holdout_rows.unwrap(), 20);
    // Same root key, same CPFs, two domains: no pseudonym of one appears in the other.
    let seen: std::collections::HashSet<_> = payments.iter().collect();
    assert!(cards.iter().all(|p| !seen.contains(p)), "domains link");
    // One subkey derivation per domain and one holdout-routing subkey per training
    // dataset, each with its own label.
    let calls = f.keys.calls.lock().unwrap().clone();
    assert_eq!(calls, vec!["mac alias/t-pseudonym".to_string(); 4]);
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

fn edit_rows(csv: &[u8], rows: &[usize], field: usize, value: &str) -> Vec<u8> {
    let text = String::from_utf8(csv.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for &i in rows {
        let mut fields: Vec<String> = lines[i].split(',').map(str::to_string).collect();
        fields[field] = value.to_string();
        lines[i] = fields.join(",");
    }
    (lines.join("\n") + "\n").into_bytes()
}

fn rejected_events(f: &FakePorts) -> Vec<DatasetRejected> {
    f.bus.events().iter().filter(|e| e.schema == "DatasetRejected").map(|e| e.open().unwrap()).collect()
}

fn report_rows(f: &FakePorts, key: &str) -> Vec<(String, String, u64, bool)> {
    let body = f.store.object("t-curated", key).unwrap().body;
    let mut out = Vec::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap() {
        let b = b.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let failed =
            b.column_by_name("failed").unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap().clone();
        let passed =
            b.column_by_name("passed").unwrap().as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap().clone();
        let (id, outcome) = (s("rule_id"), s("outcome"));
        for i in 0..b.num_rows() {
            out.push((id.value(i).to_string(), outcome.value(i).to_string(), failed.value(i), passed.value(i)));
        }
    }
    out
}

#[tokio::test]
async fn a_clean_dataset_is_curated_with_its_dq_summary_report_and_key_version() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    worker(&f).handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert!(ev.curated.key.starts_with("transactions_training/contract=1.2.0/"), "{}", ev.curated.key);
    let dq = ev.dq.clone().unwrap();
    let contract = c.dataset("transactions_training").unwrap();
    assert_eq!(dq.rules as usize, contract.quality.len());
    assert!(dq.rejecting.is_empty());
    assert_eq!((dq.rows_read, dq.rows_dropped), (300, 0));
    let report = report_rows(&f, &dq.report.key);
    assert_eq!(report.len(), contract.quality.len(), "one report row per rule");
    assert_eq!(report.iter().filter(|r| r.3).count(), dq.passed as usize);
    assert_eq!(ev.pseudonym_key_version.as_deref(), Some("mlsec/pseudonym/v1/payments"));
    // The key id and derivation label are in the curated file's metadata.
    let body = f.store.object("t-curated", &ev.curated.key).unwrap().body;
    let meta = ParquetRecordBatchReaderBuilder::try_new(body.clone()).unwrap().metadata().clone();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("mlsec.pseudonym_key").as_deref(), Some("alias/t-pseudonym"));
    assert_eq!(get("mlsec.pseudonym_label").as_deref(), Some("mlsec/pseudonym/v1/payments"));
    // tx_time is generalised to the hour.
    let reader = ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap();
    for b in reader {
        let b = b.unwrap();
        let t = b.column_by_name("tx_time").unwrap();
        let t = t.as_any().downcast_ref::<arrow::array::TimestampMillisecondArray>().unwrap();
        assert!(t.values().iter().all(|v| v % 3_600_000 == 0));
    }
}

#[tokio::test]
async fn a_duplicate_transaction_id_rejects_the_dataset_and_nothing_is_curated() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 50, 5);
    let first_id =
        String::from_utf8(csv.clone()).unwrap().lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    let csv = edit_rows(&csv, &[7], 0, &first_id);
    worker(&f).handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    let rejected = rejected_events(&f);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].dq.rejecting, vec!["transaction_id_unique".to_string()]);
    assert!(f.bus.events().iter().all(|e| e.schema != "DatasetCurated"), "never reaches training");
    let curated: Vec<String> = f
        .store
        .keys()
        .into_iter()
        .filter(|(b, _)| b == "t-curated")
        .map(|(_, k)| k)
        .filter(|k| !k.starts_with("_dq/"))
        .collect();
    assert!(curated.is_empty(), "nothing curated: {curated:?}");
    let report = report_rows(&f, &rejected[0].dq.report.key);
    let dup = report.iter().find(|r| r.0 == "transaction_id_unique").unwrap();
    assert_eq!((dup.1.as_str(), dup.2), ("dataset_rejected", 1));
}

#[tokio::test]
async fn invalid_rows_under_the_threshold_are_dropped_and_listed_over_it_the_dataset_is_rejected() {
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    // 1 of 300 rows (0.3%) with a channel outside validValues: dropped, dataset curated.
    let f = FakePorts::new();
    worker(&f)
        .handle(&raw_event(&f, &c, "transactions_training", &edit_rows(&csv, &[10], 7, "telepathy")).await)
        .await
        .unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert_eq!((ev.rows_in, ev.rows_out + ev.holdout_rows.unwrap(), ev.rows_rejected), (300, 299, 1));
    let rejects_key = f
        .store
        .keys()
        .into_iter()
        .filter(|(b, _)| b == "t-curated")
        .map(|(_, k)| k)
        .find(|k| k.starts_with("_rejects/"))
        .unwrap();
    let body = f.store.object("t-curated", &rejects_key).unwrap().body;
    assert_eq!(column(body.clone(), "rule_id"), vec![Some("channel_allowed".to_string())]);
    // Row 10 of the file is raw row 9 (0-based, after the header); no value column exists.
    let batch = ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap().next().unwrap().unwrap();
    let fields: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(fields, vec!["raw_row", "rule_id"]);
    let rows = batch.column(0).as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
    assert_eq!(rows.values().to_vec(), vec![9]);
    // 6 of 300 (2%) is over the contract's 1%: the dataset is rejected.
    let g = FakePorts::new();
    let bad = edit_rows(&csv, &[10, 20, 30, 40, 50, 60], 7, "telepathy");
    worker(&g).handle(&raw_event(&g, &c, "transactions_training", &bad).await).await.unwrap();
    assert_eq!(rejected_events(&g)[0].dq.rejecting, vec!["channel_allowed".to_string()]);
}

#[tokio::test]
async fn a_warning_rule_is_reported_and_does_not_block() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 100, 5);
    // Six missing e-mails (6% > 5%): customer_email_completeness is a warning.
    let csv = edit_rows(&csv, &[1, 2, 3, 4, 5, 6], 3, "");
    worker(&f).handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert_eq!(ev.rows_out + ev.holdout_rows.unwrap(), 100);
    assert_eq!(ev.dq.unwrap().warnings, vec!["customer_email_completeness".to_string()]);
}

#[tokio::test]
async fn schema_drift_rejects_the_dataset() {
    let f = FakePorts::new();
    let c = contracts();
    // Scoring-shaped data (no is_fraud column) announced as the training dataset.
    let parquet = raw_parquet(&c, "transactions_scoring", &csv_bytes(SampleKind::Scoring, 20, 1));
    let stored = f.store.put(&bucket("t-raw"), "p.parquet", parquet, "x").await.unwrap();
    let mut ev: RawAccepted =
        raw_event(&f, &c, "transactions_training", &csv_bytes(SampleKind::Training, 5, 1)).await.event().unwrap();
    ev.parquet = stored;
    let detail = serde_json::to_value(Envelope::wrap(&ev).unwrap()).unwrap();
    let msg = Inbound::parse("m", &eventbridge_body("mlsec.ingest", "RawAccepted", detail)).unwrap();
    worker(&f).handle(&msg).await.unwrap();
    let rejected = rejected_events(&f);
    assert_eq!(rejected[0].dq.rejecting, vec![dq::SCHEMA_RULE.to_string()]);
    let curated: Vec<String> = f
        .store
        .keys()
        .into_iter()
        .filter(|(b, k)| b == "t-curated" && !k.starts_with("_dq/"))
        .map(|(_, k)| k)
        .collect();
    assert!(curated.is_empty(), "nothing curated: {curated:?}");
}

#[tokio::test]
async fn a_file_whose_every_row_is_dropped_is_rejected_not_curated_empty() {
    let f = FakePorts::new();
    let c = contracts();
    // Every amount empty: the required rule drops all five rows.
    let csv = edit_rows(&csv_bytes(SampleKind::Training, 5, 3), &[1, 2, 3, 4, 5], 4, "");
    worker(&f).handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    assert!(f.bus.events().iter().all(|e| e.schema != "DatasetCurated"));
    assert_eq!(rejected_events(&f)[0].dq.rejecting, vec!["row_count".to_string()]);
}

#[tokio::test]
async fn a_dropped_row_does_not_make_its_clean_twin_a_duplicate() {
    let f = FakePorts::new();
    let c = contracts();
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    let first_id =
        String::from_utf8(csv.clone()).unwrap().lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    // Row 7 repeats row 1's id but is dropped for its channel: no duplicate remains.
    let csv = edit_rows(&edit_rows(&csv, &[7], 0, &first_id), &[7], 7, "telepathy");
    worker(&f).handle(&raw_event(&f, &c, "transactions_training", &csv).await).await.unwrap();
    let ev: DatasetCurated = f.bus.events()[0].open().unwrap();
    assert_eq!((ev.rows_out + ev.holdout_rows.unwrap(), ev.rows_rejected), (299, 1));
    let report = report_rows(&f, &ev.dq.unwrap().report.key);
    let dup = report.iter().find(|r| r.0 == "transaction_id_unique").unwrap();
    assert_eq!((dup.1.as_str(), dup.2), ("pass", 0));
    let channel = report.iter().find(|r| r.0 == "channel_allowed").unwrap();
    assert_eq!((channel.1.as_str(), channel.2), ("rows_dropped", 1));
}

#[test]
fn mask_band_and_truncation() {
    use mlsec_runtime::contract::Generalisation;
    assert_eq!(transform::mask("529.982.247-25", 2), "****25");
    assert_eq!(transform::mask("abcd", 2), "****", "short values are masked whole");
    assert_eq!(transform::mask("anything", 0), "****");
    assert_eq!(transform::band(37.0, 10.0), 30.0);
    assert_eq!(transform::band(-1.0, 10.0), -10.0);
    // 2026-11-28T13:47:12.345Z
    let t = 1_795_873_632_345;
    assert_eq!(transform::truncate_ms(t, Generalisation::Hour), 1_795_870_800_000);
    assert_eq!(transform::truncate_ms(t, Generalisation::Day), 1_795_824_000_000);
    assert_eq!(transform::truncate_ms(t, Generalisation::Month), 1_793_491_200_000);
}

#[test]
fn the_zone_document_covers_every_rule_and_transform_and_cites_real_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/zones/z3-curation.md")).unwrap();
    for word in [
        "`required",
        "invalidValues",
        "nullValues",
        "duplicateValues",
        "rowCount",
        "freshness",
        "schema drift",
        "`hmac`",
        "`drop`",
        "`mask`",
        "`generalise`",
    ] {
        assert!(doc.contains(word), "{word} is not documented");
    }
    let cited = mlsec_runtime::doccheck::cited_tests(&doc, |_| false);
    assert!(cited.len() > 8, "the document cites tests");
    let missing = mlsec_runtime::doccheck::missing_tests(&root, &cited);
    assert!(missing.is_empty(), "the document cites tests that do not exist: {missing:?}");
}

/// Runs the transform directly with a contract edited from the repository's.
fn curate_with(edit: impl Fn(String) -> String, csv: &[u8], now_ms: i64) -> transform::Curated {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/transactions_training.yaml");
    let text = edit(std::fs::read_to_string(&path).unwrap());
    let contract = mlsec_runtime::contract::DatasetContract::parse(&path, &text).unwrap();
    let raw = mlsec_ingest::validate::to_parquet(&contract, csv).unwrap();
    transform::curate(raw, &contract, &[3; 32], &[], now_ms, std::io::sink(), std::io::sink()).unwrap()
}

#[test]
fn row_count_and_freshness_bounds_judge_the_dataset() {
    let csv = csv_bytes(SampleKind::Training, 50, 5);
    // The sample's newest transaction is in November 2026.
    let dec_2026 = 1_796_083_200_000;
    let ok = curate_with(|t| t, &csv, dec_2026);
    assert!(ok.report.rejecting().is_empty() && ok.report.warnings().is_empty());
    // 50 rows under a lower bound of 1,000: rejected.
    let few =
        curate_with(|t| t.replace("mustBeBetween: [1, 40000000]", "mustBeBetween: [1000, 40000000]"), &csv, dec_2026);
    assert_eq!(few.report.rejecting(), vec!["row_count".to_string()]);
    // A year later the freshness warning fires; as an error it rejects.
    let later = dec_2026 + 365 * 86_400_000;
    assert_eq!(curate_with(|t| t, &csv, later).report.warnings(), vec!["tx_time_freshness".to_string()]);
    let strict = |t: String| {
        t.replace(
            "maxAgeSeconds: 7776000\n            severity: warning",
            "maxAgeSeconds: 7776000\n            severity: error",
        )
    };
    assert_eq!(curate_with(strict, &csv, later).report.rejecting(), vec!["tx_time_freshness".to_string()]);
}

fn rule<'a>(c: &'a transform::Curated, id: &str) -> &'a dq::RuleResult {
    c.report.rules.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no rule {id}"))
}

/// The sample's newest transaction is in November 2026; freshness holds in December.
const DEC_2026: i64 = 1_796_083_200_000;

#[test]
fn a_value_breaking_a_pattern_drops_its_row_and_a_pattern_matches_the_whole_value() {
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    // Row 4's CPF has no punctuation: customer_cpf_format (error) drops it.
    let bad_cpf = curate_with(|t| t, &edit_rows(&csv, &[4], 2, "52998224725"), DEC_2026);
    assert_eq!((bad_cpf.rows_in, bad_cpf.rows_out), (300, 299));
    let r = rule(&bad_cpf, "customer_cpf_format");
    assert_eq!((r.failed, r.rows_dropped, r.outcome), (1, 1, "rows_dropped"));
    // A pattern written without anchors still has to match the whole value: this id
    // contains a well-formed one but does not start with it.
    let unanchored =
        |t: String| t.replace(r#"pattern: "^tx-[0-9]{1,20}-[0-9]{8}$""#, r#"pattern: "tx-[0-9]{1,20}-[0-9]{8}""#);
    let c = curate_with(unanchored, &edit_rows(&csv, &[9], 0, "xtx-1-20261101"), DEC_2026);
    assert_eq!(rule(&c, "transaction_id_format").rows_dropped, 1);
    // A warning pattern reports the row and keeps it.
    let w = curate_with(|t| t, &edit_rows(&csv, &[9], 5, "54x1"), DEC_2026);
    assert_eq!((w.rows_out, rule(&w, "merchant_category_format").outcome), (300, "warning"));
}

#[test]
fn a_null_threshold_of_severity_error_rejects_the_dataset() {
    let csv = csv_bytes(SampleKind::Training, 100, 5);
    // 6 of 100 e-mails missing: over the contract's "less than 5 percent".
    let gaps = edit_rows(&csv, &[3, 13, 23, 33, 43, 53], 3, "");
    let as_warning = curate_with(|t| t, &gaps, DEC_2026);
    let r = rule(&as_warning, "customer_email_completeness");
    assert_eq!((r.failed, r.measured, r.outcome), (6, 6.0, "warning"));
    assert_eq!(as_warning.rows_out, 100, "a dataset rule drops no row");
    let strict = |t: String| {
        t.replace(
            "mustBeLessThan: 5\n            unit: percent\n            severity: warning",
            "mustBeLessThan: 5\n            unit: percent\n            severity: error",
        )
    };
    let as_error = curate_with(strict, &gaps, DEC_2026);
    assert_eq!(as_error.report.rejecting(), vec!["customer_email_completeness".to_string()]);
    // 4 of 100 passes even as an error.
    assert!(curate_with(strict, &edit_rows(&csv, &[3, 13, 23, 33], 3, ""), DEC_2026).report.rejecting().is_empty());
}

#[test]
fn a_repeated_compound_key_fails_the_compound_uniqueness_rule() {
    let csv = csv_bytes(SampleKind::Training, 300, 5);
    let text = String::from_utf8(csv.clone()).unwrap();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    // Row 5 gets row 1's card holder, second and amount (its own transaction id).
    let twin = edit_rows(&edit_rows(&edit_rows(&csv, &[5], 2, first[2]), &[5], 8, first[8]), &[5], 4, first[4]);
    let c = curate_with(|t| t, &twin, DEC_2026);
    let r = rule(&c, "card_holder_moment_amount_unique");
    assert_eq!((r.failed, r.outcome), (1, "warning"));
    assert_eq!(rule(&c, "transaction_id_unique").failed, 0);
    // One part differs (the amount): not a duplicate.
    let near = edit_rows(&edit_rows(&csv, &[5], 2, first[2]), &[5], 8, first[8]);
    let amount_differs = edit_rows(&near, &[5], 4, "0.02");
    assert_eq!(rule(&curate_with(|t| t, &amount_differs, DEC_2026), "card_holder_moment_amount_unique").failed, 0);
}

#[test]
fn duplicates_are_counted_the_same_when_the_keys_spill_to_disk() {
    let csv = csv_bytes(SampleKind::Training, 2_000, 5);
    let text = String::from_utf8(csv.clone()).unwrap();
    let ids: Vec<String> = text.lines().skip(1).take(40).map(|l| l.split(',').next().unwrap().to_string()).collect();
    // 40 ids repeated far apart, some three times: 60 duplicates spread over many runs.
    let mut dup = csv.clone();
    for (i, id) in ids.iter().enumerate() {
        dup = edit_rows(&dup, &[1_000 + i * 7], 0, id);
        if i.is_multiple_of(2) {
            dup = edit_rows(&dup, &[1_500 + i * 11], 0, id);
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/transactions_training.yaml");
    let contract =
        mlsec_runtime::contract::DatasetContract::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let raw = mlsec_ingest::validate::to_parquet(&contract, &dup).unwrap();
    let report = |run_keys: Option<usize>| {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(raw.clone()).unwrap().with_batch_size(128).build().unwrap();
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let mut engine = dq::Engine::new(&contract, &schema, DEC_2026).unwrap();
        if let Some(n) = run_keys {
            engine = engine.with_run_keys(n);
        }
        for b in reader {
            engine.observe(&b.unwrap()).unwrap();
        }
        engine.finish().unwrap()
    };
    let in_memory = report(None);
    let dups = in_memory.rules.iter().find(|r| r.id == "transaction_id_unique").unwrap();
    assert_eq!(dups.failed, 60);
    for run_keys in [1, 33, 500] {
        assert_eq!(report(Some(run_keys)), in_memory, "runs of {run_keys} keys");
    }
}

/// The raw Parquet as the gateway writes it for an object `mlsec drop` uploaded (the
/// uploader's ARN in the file's metadata).
fn raw_dropped_by(c: &Contracts, csv: &[u8], dropper: &str) -> Bytes {
    let raw = raw_parquet(c, "transactions_training", csv);
    let batches: Vec<_> =
        ParquetRecordBatchReaderBuilder::try_new(raw).unwrap().build().unwrap().map(Result::unwrap).collect();
    let props = mlsec_lake::columnar::writer_properties(
        &[(mlsec_lake::columnar::DROPPED_BY_KEY.to_string(), dropper.to_string())],
        1024,
    );
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    Bytes::from(out)
}

fn kv(parquet: &Bytes, key: &str) -> Option<String> {
    let b = ParquetRecordBatchReaderBuilder::try_new(parquet.clone()).unwrap();
    let meta = b.metadata().file_metadata().key_value_metadata()?;
    meta.iter().find(|e| e.key == key).and_then(|e| e.value.clone())
}

#[test]
fn a_keyed_hash_share_of_training_rows_goes_to_the_holdout_with_the_dropper() {
    let c = crate::contracts();
    let contract = c.dataset("transactions_training").unwrap();
    let csv = csv_bytes(SampleKind::Training, 5000, 17);
    let dropper = "arn:aws:iam::000000000000:user/data-engineer";
    let run = |key: &[u8]| {
        let (mut out, mut hold) = (Vec::new(), Vec::new());
        let split = transform::HoldoutSplit {
            key: key.to_vec(),
            column: Some("transaction_id".into()),
            fraction: 0.2,
            out: &mut hold,
        };
        let raw = raw_dropped_by(&c, &csv, dropper);
        let r =
            transform::curate_split(raw, contract, &[1; 32], &[], 0, &mut out, std::io::sink(), Some(split)).unwrap();
        assert_eq!(r.sha256, mlsec_events::sha256_hex(&out), "the digest is of the bytes written");
        (r.rows_out, r.rows_holdout, Bytes::from(out), Bytes::from(hold))
    };
    let (rows, held, out, hold) = run(&[3; 32]);
    assert_eq!(rows, 5000);
    assert!((900..1100).contains(&held), "{held} of 5000 rows held out for 0.2");
    let (a, b) = (column(out.clone(), "transaction_id"), column(hold.clone(), "transaction_id"));
    assert_eq!((a.len() + b.len()) as u64, rows);
    let seen: std::collections::HashSet<_> = a.iter().collect();
    assert!(b.iter().all(|id| !seen.contains(id)), "a row is in both the training data and the holdout");
    // The same key routes the same rows; another key routes others.
    assert_eq!(column(run(&[3; 32]).3, "transaction_id"), b);
    assert_ne!(column(run(&[4; 32]).3, "transaction_id"), b);
    // Both outputs carry the dropper; the holdout names its routing.
    assert_eq!(kv(&out, "mlsec.dropped_by").as_deref(), Some(dropper));
    assert_eq!(kv(&hold, "mlsec.dropped_by").as_deref(), Some(dropper));
    assert_eq!(kv(&hold, "mlsec.holdout").as_deref(), Some("transaction_id:0.2"));
    // The holdout names the curated file it was split from.
    assert_eq!(kv(&hold, "mlsec.curated_sha256"), Some(mlsec_events::sha256_hex(&out)));
}
