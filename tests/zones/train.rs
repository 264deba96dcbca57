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
    assert_eq!(a.rows, 4000);
    let b = fit(data, spec).unwrap();
    assert_eq!(a.auc, b.auc);
}

#[test]
fn a_width_mismatch_is_an_error_not_a_panic() {
    let (data, c) = curated_training(500);
    let f = fit(data, c.model("fraud_lr").unwrap()).unwrap();
    assert!(f.artifact.probabilities(&[vec![1.0, 2.0]]).is_err());
}

/// The curated sample with its boolean label rewritten as `Bad` / `Good` (as a public
/// credit data set ships it).
fn with_string_label(data: Bytes) -> Bytes {
    use std::sync::Arc;

    use arrow::{
        array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray},
        datatypes::{DataType, Field, Schema},
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data).unwrap().build().unwrap();
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let i = batch.schema().index_of("is_fraud").unwrap();
        let labels = batch.column(i).as_any().downcast_ref::<BooleanArray>().unwrap();
        let text: ArrayRef =
            Arc::new(labels.iter().map(|v| v.map(|b| if b { "Bad" } else { "Good" })).collect::<StringArray>());
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[i] = Field::new("is_fraud", DataType::Utf8, true);
        let mut columns = batch.columns().to_vec();
        columns[i] = text;
        batches.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap());
    }
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batches[0].schema(), None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    Bytes::from(out)
}

#[test]
fn a_string_label_trains_with_its_positive_label() {
    let (data, c) = curated_training(3000);
    let mut spec = c.model("fraud_lr").unwrap().clone();
    let boolean = fit(data.clone(), &spec).unwrap();
    let text = with_string_label(data);
    // Without positiveLabel the target is refused by name, never a panic.
    let err = fit(text.clone(), &spec).err().expect("a string target needs positiveLabel");
    assert!(err.to_string().contains("is_fraud"), "{err}");
    spec.positive_label = Some("Bad".into());
    let fitted = fit(text, &spec).unwrap();
    assert_eq!(fitted.auc, boolean.auc, "the same labels, the same model");
}

#[test]
fn an_id_column_that_is_also_the_subject_is_written_once() {
    let (data, c) = curated_training(300);
    let mut spec = c.model("fraud_lr").unwrap().clone();
    spec.subject_column = Some(spec.id_column.clone());
    let fitted = fit(data.clone(), &spec).unwrap();
    assert_eq!(spec.output_columns(), ["transaction_id"]);
    let (scored, rows, _) = mlsec_score::score(data, &fitted.artifact, &spec.output_columns(), "v").unwrap();
    assert_eq!(rows, 300);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(scored)).unwrap();
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["transaction_id", "score", "flagged", "model"]);
    // Asked for a column twice, the scorer refuses rather than write an unreadable file.
    let twice = mlsec_score::score(Bytes::new(), &fitted.artifact, &["transaction_id", "transaction_id"], "v");
    assert!(twice.is_err());
}

#[test]
fn a_positive_class_weight_counts_each_positive_row_that_many_times() {
    let (data, c) = curated_training(4000);
    let spec = c.model("fraud_lr").unwrap();
    let weighted = |w: Option<u64>| {
        let mut s = spec.clone();
        if let Some(w) = w {
            s.params.insert("classWeight".into(), serde_yaml::from_str(&format!("{{positive: {w}}}")).unwrap());
        }
        fit(data.clone(), &s).unwrap()
    };
    let (plain, one, five) = (weighted(None), weighted(Some(1)), weighted(Some(5)));
    let rows: Vec<Vec<f64>> =
        (0..40).map(|i| vec![(i % 7) as f64, (i % 2) as f64, 1.0, 0.0, 0.0, 0.0, (i % 3 == 0) as u8 as f64]).collect();
    let (p_plain, p_one, p_five) = (
        plain.artifact.probabilities(&rows).unwrap(),
        one.artifact.probabilities(&rows).unwrap(),
        five.artifact.probabilities(&rows).unwrap(),
    );
    assert_eq!(p_plain, p_one, "weight 1 is no weight");
    let mean = |p: &[f64]| p.iter().sum::<f64>() / p.len() as f64;
    assert!(mean(&p_five) > 2.0 * mean(&p_plain), "{} vs {}", mean(&p_five), mean(&p_plain));
    assert!(p_five.iter().zip(&p_plain).all(|(w, u)| w > u), "every row's fraud probability rises");
}
