//! Catalogue tests: round trips, schema/type agreement, fingerprint checks and the
//! backward-compatibility gate for schema evolution.

use apache_avro::{Schema, schema_compatibility::SchemaCompatibility};

use super::*;

fn obj(key: &str) -> ObjectRef {
    ObjectRef {
        bucket: "mlsec-raw".into(),
        key: key.into(),
        version_id: Some("v1".into()),
        sha256: sha256_hex(key.as_bytes()),
        size: 42,
    }
}

fn dq_summary() -> DqSummary {
    DqSummary {
        rules: 12,
        passed: 11,
        warnings: vec!["customer_email_completeness".into()],
        rejecting: vec![],
        rows_read: 10,
        rows_dropped: 1,
        report: obj("_dq/transactions/contract=1.0.0/abc.parquet"),
    }
}

fn samples() -> (RawAccepted, ObjectQuarantined, DatasetCurated, ModelTrained, ModelPromoted, RecordsScored) {
    let id = |s: &str| derive_event_id("input", s);
    (
        RawAccepted {
            event_id: id("ingest"),
            correlation_id: "c1".into(),
            dataset: "transactions".into(),
            contract_version: "1.0.0".into(),
            source: ObjectRef { version_id: None, ..obj("bank/transactions/a.csv") },
            original: obj("transactions/original/abc"),
            parquet: obj("transactions/ingest_date=2026-11-28/abc.parquet"),
            rows: 1000,
            occurred_at_ms: 1_764_000_000_000,
        },
        ObjectQuarantined {
            event_id: id("ingest"),
            correlation_id: "c2".into(),
            dataset: None,
            source_bucket: "mlsec-landing".into(),
            source_key: "nobody/x.csv".into(),
            reason_code: "unknown_source".into(),
            quarantined: obj("unknown/abc/x.csv"),
            reason_document: obj("unknown/abc/reason.json"),
            occurred_at_ms: 1,
        },
        DatasetCurated {
            event_id: id("curate"),
            correlation_id: "c1".into(),
            dataset: "transactions".into(),
            contract_version: "1.0.0".into(),
            role: DatasetRole::Scoring,
            curated: obj("transactions/contract=1.0.0/abc.parquet"),
            rows_in: 10,
            rows_out: 9,
            rows_rejected: 1,
            dataset_digest: sha256_hex(b"d"),
            pseudonym_key_id: "alias/mlsec-pseudonym".into(),
            occurred_at_ms: 2,
            pseudonym_key_version: Some("mlsec/pseudonym/v1/payments".into()),
            dq: Some(dq_summary()),
            holdout: None,
            holdout_rows: None,
        },
        ModelTrained {
            event_id: id("train"),
            correlation_id: "c1".into(),
            model_name: "fraud".into(),
            model_version: "abc".into(),
            dataset: "transactions".into(),
            dataset_digest: sha256_hex(b"d"),
            algorithm: "logistic_regression".into(),
            artifact: obj("fraud/abc/model.bin"),
            auc: 0.91,
            accuracy: 0.95,
            train_rows: 800,
            test_rows: 200,
            occurred_at_ms: 3,
            holdout: Some(obj("transactions/contract=1.0.0/abc.parquet")),
        },
        ModelPromoted {
            event_id: id("govern"),
            correlation_id: "c1".into(),
            model_name: "fraud".into(),
            model_version: "abc".into(),
            stage: "production".into(),
            artifact_sha256: sha256_hex(b"m"),
            manifest: obj("fraud/abc/manifest-r2.signed.json"),
            signing_key_id: "alias/mlsec-signing".into(),
            auc: 0.91,
            occurred_at_ms: 4,
            previous_version: None,
            approvers: Some(vec!["arn:aws:iam::000000000000:user/risk".into()]),
        },
        RecordsScored {
            event_id: id("score"),
            correlation_id: "c1".into(),
            dataset: "transactions_scoring".into(),
            model_name: "fraud".into(),
            model_version: "abc".into(),
            scored: obj("transactions_scoring/model=fraud@abc/x.parquet"),
            rows: 9,
            flagged: 1,
            occurred_at_ms: 5,
        },
    )
}

fn round_trip<E: PipelineEvent + PartialEq>(event: E) {
    let json = Envelope::wrap(&event).unwrap().to_json();
    let env = Envelope::from_json(&json).unwrap();
    assert_eq!(env.schema, E::NAME);
    assert_eq!(env.event_id, event.event_id());
    assert_eq!(env.dataset.as_deref(), event.dataset());
    assert_eq!(env.open::<E>().unwrap(), event);
}

#[test]
fn every_event_round_trips_through_the_envelope() {
    let (a, b, c, d, e, f) = samples();
    round_trip(a);
    round_trip(b);
    round_trip(c);
    round_trip(d);
    round_trip(e);
    round_trip(f);
    round_trip(DatasetRejected {
        event_id: derive_event_id("input", "curate"),
        correlation_id: "c1".into(),
        dataset: "transactions".into(),
        contract_version: "1.1.0".into(),
        raw: obj("transactions/ingest_date=2026-11-28/abc.parquet"),
        dq: DqSummary { rejecting: vec!["transaction_id_unique".into()], ..dq_summary() },
        occurred_at_ms: 3,
    });
}

#[test]
fn a_dataset_curated_v1_payload_decodes_without_dq() {
    // Written by a curate worker of the v1 era: the current reader resolves it, with the
    // fields added in v2 at their defaults.
    #[derive(serde::Serialize)]
    struct V1 {
        event_id: String,
        correlation_id: String,
        dataset: String,
        contract_version: String,
        role: DatasetRole,
        curated: ObjectRef,
        rows_in: i64,
        rows_out: i64,
        rows_rejected: i64,
        dataset_digest: String,
        pseudonym_key_id: String,
        occurred_at_ms: i64,
    }
    let (_, _, c, ..) = samples();
    let v1 = V1 {
        event_id: c.event_id.clone(),
        correlation_id: c.correlation_id.clone(),
        dataset: c.dataset.clone(),
        contract_version: c.contract_version.clone(),
        role: c.role,
        curated: c.curated.clone(),
        rows_in: c.rows_in,
        rows_out: c.rows_out,
        rows_rejected: c.rows_rejected,
        dataset_digest: c.dataset_digest.clone(),
        pseudonym_key_id: c.pseudonym_key_id.clone(),
        occurred_at_ms: c.occurred_at_ms,
    };
    let v1_schema = &DatasetCurated::released()[0];
    let bytes = encode_single_object(v1_schema, &v1).unwrap();
    let decoded: DatasetCurated =
        decode_single_object(DatasetCurated::schema(), DatasetCurated::released(), &bytes).unwrap();
    assert_eq!(decoded, DatasetCurated { pseudonym_key_version: None, dq: None, ..c });
}

fn rust_type_matches_avsc<E: PipelineEvent>() {
    let derived = E::get_schema().canonical_form();
    let file = E::schema().canonical_form();
    assert_eq!(derived, file, "Rust type {} drifted from schemas/events/{}.avsc", E::NAME, E::NAME);
}

#[test]
fn rust_types_match_the_avsc_files() {
    rust_type_matches_avsc::<RawAccepted>();
    rust_type_matches_avsc::<ObjectQuarantined>();
    rust_type_matches_avsc::<DatasetCurated>();
    rust_type_matches_avsc::<DatasetRejected>();
    rust_type_matches_avsc::<ModelTrained>();
    rust_type_matches_avsc::<ModelPromoted>();
    rust_type_matches_avsc::<ModelStaged>();
    rust_type_matches_avsc::<ModelRejected>();
    rust_type_matches_avsc::<ModelReviewed>();
    rust_type_matches_avsc::<RecordsScored>();
    rust_type_matches_avsc::<ProcessingFailed>();
    rust_type_matches_avsc::<ReingestRequested>();
}

#[test]
fn every_avsc_file_has_a_rust_type() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/events");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "avsc").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let mut known: Vec<String> = CATALOGUE.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(names, known);
}

#[test]
fn a_payload_written_with_another_schema_is_rejected_by_fingerprint() {
    let (raw, ..) = samples();
    let mut env = Envelope::wrap(&raw).unwrap();
    // Re-encode the same datum under a schema that differs by one extra field: a writer
    // the consumer does not know. The consumer must refuse before decoding.
    let other = Schema::parse_str(&RawAccepted::AVSC.replacen(
        "\"fields\": [",
        "\"fields\": [{\"name\": \"extra\", \"type\": \"string\", \"default\": \"\"},",
        1,
    ))
    .unwrap();
    let mut bytes = encode_single_object(RawAccepted::schema(), &raw).unwrap();
    bytes[2..10].copy_from_slice(&fingerprint_of(&other));
    use base64::Engine;
    env.payload = base64::engine::general_purpose::STANDARD.encode(&bytes);
    env.fingerprint = hex::encode(fingerprint_of(&other));
    match env.open::<RawAccepted>() {
        Err(EventError::UnknownFingerprint { found, .. }) => assert_eq!(found, hex::encode(fingerprint_of(&other))),
        other => panic!("expected UnknownFingerprint, got {other:?}"),
    }
}

#[test]
fn a_payload_written_with_a_released_older_version_is_resolved_to_the_current_type() {
    // Simulate a current schema that gained an optional field since v1: data written
    // with v1 (the "released" schema) must decode with the new reader.
    let (raw, ..) = samples();
    let v1 = RawAccepted::schema();
    let bytes = encode_single_object(v1, &raw).unwrap();
    let newer = Schema::parse_str(&RawAccepted::AVSC.replacen(
        "\"fields\": [",
        "\"fields\": [{\"name\": \"source_system\", \"type\": [\"null\", \"string\"], \"default\": null},",
        1,
    ))
    .unwrap();
    assert_ne!(fingerprint_of(&newer), fingerprint_of(v1));
    #[derive(serde::Deserialize)]
    struct Newer {
        source_system: Option<String>,
        event_id: String,
        rows: i64,
    }
    let decoded: Newer = decode_single_object(&newer, std::slice::from_ref(v1), &bytes).unwrap();
    assert_eq!((decoded.source_system, decoded.event_id, decoded.rows), (None, raw.event_id.clone(), raw.rows));
    // Without v1 among the released versions the same bytes are refused.
    assert!(matches!(decode_single_object::<Newer>(&newer, &[], &bytes), Err(EventError::UnknownFingerprint { .. })));
}

fn released_list_matches_the_directory<E: PipelineEvent>() {
    let dir = format!("{}/../schemas/events/released/{}", env!("CARGO_MANIFEST_DIR"), E::NAME);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(E::released().len(), files, "{}: list every file of {dir} in pipeline_event!", E::NAME);
}

#[test]
fn every_released_version_is_readable_at_run_time() {
    released_list_matches_the_directory::<RawAccepted>();
    released_list_matches_the_directory::<ObjectQuarantined>();
    released_list_matches_the_directory::<DatasetCurated>();
    released_list_matches_the_directory::<DatasetRejected>();
    released_list_matches_the_directory::<ModelTrained>();
    released_list_matches_the_directory::<ModelPromoted>();
    released_list_matches_the_directory::<ModelStaged>();
    released_list_matches_the_directory::<ModelRejected>();
    released_list_matches_the_directory::<ModelReviewed>();
    released_list_matches_the_directory::<RecordsScored>();
    released_list_matches_the_directory::<ProcessingFailed>();
    released_list_matches_the_directory::<ReingestRequested>();
}

#[test]
fn corrupt_payloads_are_permanent_errors_not_panics() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (.., scored) = samples();
    let good = Envelope::wrap(&scored).unwrap();
    let bytes = encode_single_object(RecordsScored::schema(), &scored).unwrap();

    let mut env = good.clone();
    env.payload = b64(&bytes[..bytes.len() - 3]);
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::Corrupt { .. })));

    let mut env = good.clone();
    env.payload = b64(&[bytes.as_slice(), b"junk"].concat());
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::Corrupt { .. })));

    let mut env = good.clone();
    env.payload = b64(b"{\"not\":\"avro\"}");
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::NotSingleObject)));

    let mut env = good.clone();
    env.payload = "%%%".into();
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::Base64(_))));

    let mut env = good.clone();
    env.zone = Zone::Raw;
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::RoutingMismatch { field: "zone" })));

    let mut env = good.clone();
    env.fingerprint = "0000000000000000".into();
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::RoutingMismatch { field: "fingerprint" })));

    let mut env = good.clone();
    env.dataset = Some("someone_else".into());
    assert!(matches!(env.open::<RecordsScored>(), Err(EventError::RoutingMismatch { field: "dataset" })));

    assert!(matches!(good.open::<RawAccepted>(), Err(EventError::WrongSchema { .. })));
    assert!(Envelope::from_json("{\"schema\":").is_err());
}

/// The gate for schema evolution: the current schema must read every released version.
#[test]
fn current_schemas_read_every_released_version() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/events");
    for name in CATALOGUE {
        let current = Schema::parse_str(&std::fs::read_to_string(format!("{root}/{name}.avsc")).unwrap()).unwrap();
        let released_dir = format!("{root}/released/{name}");
        let mut count = 0;
        for entry in std::fs::read_dir(&released_dir).unwrap_or_else(|_| panic!("{released_dir} missing")) {
            let path = entry.unwrap().path();
            let old = Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            SchemaCompatibility::can_read(&old, &current)
                .unwrap_or_else(|e| panic!("{name}: current schema cannot read {}: {e}", path.display()));
            count += 1;
        }
        assert!(count >= 1, "{name} has no released version under {released_dir}");
    }
}

#[test]
fn the_compatibility_gate_catches_a_breaking_change() {
    let current = RawAccepted::schema();
    let breaking = Schema::parse_str(&RawAccepted::AVSC.replacen(
        "\"fields\": [",
        "\"fields\": [{\"name\": \"new_required\", \"type\": \"string\"},",
        1,
    ))
    .unwrap();
    assert!(
        SchemaCompatibility::can_read(current, &breaking).is_err(),
        "a new field without default must break readers of old data"
    );
    let compatible = Schema::parse_str(&RawAccepted::AVSC.replacen(
        "\"fields\": [",
        "\"fields\": [{\"name\": \"new_optional\", \"type\": [\"null\", \"string\"], \"default\": null},",
        1,
    ))
    .unwrap();
    assert!(SchemaCompatibility::can_read(current, &compatible).is_ok());
}

#[test]
fn every_catalogued_event_can_be_decoded_for_subscribers() {
    let (raw, ..) = samples();
    for name in CATALOGUE {
        let mut env = Envelope::wrap(&raw).unwrap();
        env.schema = name.to_string();
        match env.decode_json() {
            Err(EventError::WrongSchema { found, .. }) if found == name => panic!("decode_json does not know {name}"),
            _ => {}
        }
    }
}
