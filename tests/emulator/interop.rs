//! Files the pipeline writes, read by the tool a user would pick (pyarrow).

use bytes::Bytes;
use mlsec_runtime::sample::{SampleKind, csv_bytes};

/// The public-data case: the id column is also the subject column. The scored file must
/// hold it once; pyarrow's `read_table` refuses a file with two columns of one name.
#[test]
fn a_scored_file_whose_id_is_also_its_subject_reads_in_pyarrow() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    let c = mlsec_runtime::contract::Contracts::load_dir(&dir).unwrap();
    let mut spec = c.model("fraud_lr").unwrap().clone();
    spec.subject_column = Some(spec.id_column.clone());
    let raw = mlsec_ingest::validate::to_parquet(
        c.dataset("transactions_training").unwrap(),
        &csv_bytes(SampleKind::Training, 500, 3),
    )
    .unwrap();
    let fitted = mlsec_train::fit(raw.clone(), &spec).unwrap();
    let (scored, rows, _) = mlsec_score::score(raw, &fitted.artifact, &spec.output_columns(), "v1").unwrap();
    let path = std::env::temp_dir().join(format!("mlsec-interop-{}.parquet", std::process::id()));
    std::fs::write(&path, Bytes::from(scored)).unwrap();
    assert_eq!(mlsec_tests::pyarrow_rows(&path) as u64, rows);
    std::fs::remove_file(&path).ok();
}
