//! The model factory (Z4) on raw data as the gateway writes it.

use bytes::Bytes;
use mlsec_runtime::{
    contract::Contracts,
    sample::{SampleKind, csv_bytes},
};
use mlsec_train::fit;

use crate::{contracts, raw_parquet};

fn curated_training(rows: usize) -> (Bytes, Contracts) {
    let c = contracts();
    let raw = raw_parquet(&c, "transactions_training", &csv_bytes(SampleKind::Training, rows, 11));
    (raw, c)
}

#[test]
fn the_sample_is_learnable_and_training_is_deterministic() {
    let (data, c) = curated_training(4000);
    let spec = c.model("fraud_lr").unwrap();
    let a = fit(data.clone(), spec).unwrap();
    assert!(a.auc > 0.75, "holdout AUC {}", a.auc);
    assert_eq!(a.train_rows + a.test_rows, 4000);
    let b = fit(data, spec).unwrap();
    assert_eq!(a.auc, b.auc);
}

#[test]
fn a_width_mismatch_is_an_error_not_a_panic() {
    let (data, c) = curated_training(500);
    let f = fit(data, c.model("fraud_lr").unwrap()).unwrap();
    assert!(f.artifact.probabilities(&[vec![1.0, 2.0]]).is_err());
}
