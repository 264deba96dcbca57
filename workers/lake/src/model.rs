//! The model artifact and the feature pipeline shared by training (Z4) and scoring (Z6)
//! (and later the online gateway), so all compute features the same way.
//!
//! The artifact is JSON: the spec's features, the standardisation fitted on the training
//! split, the smartcore model (pinned `=0.7.0`, whose serialised form changed across
//! minor versions; the version is recorded) and the decision threshold.

use arrow::{
    array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray},
    datatypes::DataType,
};
use mlsec_runtime::contract::FeatureSpec;
use serde::{Deserialize, Serialize};
use smartcore::{
    linalg::basic::{arrays::Array as _, matrix::DenseMatrix},
    linear::logistic_regression::LogisticRegression,
};

/// The smartcore version this build fits and reads.
pub const SMARTCORE_VERSION: &str = "0.7.0";
pub const ARTIFACT_FORMAT: u32 = 1;

pub type Lr = LogisticRegression<f64, i32, DenseMatrix<f64>, Vec<i32>>;

/// Why features or probabilities cannot be computed. Never a panic: smartcore panics on
/// a width mismatch, so widths are checked first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("missing feature column {0}")]
    MissingColumn(String),
    /// The spec's transform does not apply to the column's type.
    #[error("feature {column}: {message}")]
    Feature { column: String, message: String },
    #[error("row has {row} features, the model {model}")]
    Width { row: usize, model: usize },
    #[error("model classes {0:?} are not [0, 1]")]
    Classes(Vec<i32>),
    #[error("target {column}: {message}")]
    Target { column: String, message: String },
}

/// Serialised model.
#[derive(Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    pub smartcore_version: String,
    pub model_name: String,
    pub algorithm: String,
    pub features: Vec<FeatureSpec>,
    /// Per feature-vector component: (mean, std) of the training split.
    pub scaling: Vec<(f64, f64)>,
    pub decision_threshold: f64,
    pub model: Lr,
}

impl Artifact {
    /// Probability of the positive class for standardised rows. Checks the width first:
    /// smartcore panics on a feature-count mismatch.
    pub fn probabilities(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        let coef = self.model.coefficients();
        let (_, width) = coef.shape();
        let intercept = *self.model.intercept().get((0, 0));
        let classes = self.model.classes();
        if classes.as_slice() != [0, 1] {
            return Err(ModelError::Classes(classes.clone()));
        }
        rows.iter()
            .map(|r| {
                if r.len() != width || r.len() != self.scaling.len() {
                    return Err(ModelError::Width { row: r.len(), model: width });
                }
                let z: f64 = r
                    .iter()
                    .zip(&self.scaling)
                    .enumerate()
                    .map(|(j, (x, (m, s)))| (x - m) / s * coef.get((0, j)))
                    .sum::<f64>()
                    + intercept;
                Ok(1.0 / (1.0 + (-z).exp()))
            })
            .collect()
    }
}

/// Number of vector components a feature spec produces.
pub fn width(features: &[FeatureSpec]) -> usize {
    features.iter().map(|f| f.one_hot.as_ref().map_or(1, Vec::len)).sum()
}

/// Feature vectors of every row of `batch`; a row with a missing input gets `None`.
pub fn featurize(batch: &RecordBatch, features: &[FeatureSpec]) -> Result<Vec<Option<Vec<f64>>>, ModelError> {
    let n = batch.num_rows();
    let mut rows: Vec<Option<Vec<f64>>> = vec![Some(Vec::with_capacity(width(features))); n];
    for f in features {
        let col = batch.column_by_name(&f.column).ok_or_else(|| ModelError::MissingColumn(f.column.clone()))?;
        let bad = |message: String| ModelError::Feature { column: f.column.clone(), message };
        for (i, row) in rows.iter_mut().enumerate() {
            let Some(v) = row.as_mut() else { continue };
            if col.is_null(i) {
                *row = None;
                continue;
            }
            match col.data_type() {
                DataType::Float64 | DataType::Int64 => {
                    let x = match col.as_any().downcast_ref::<Float64Array>() {
                        Some(a) => a.value(i),
                        None => col.as_any().downcast_ref::<Int64Array>().map(|a| a.value(i) as f64).unwrap_or(0.0),
                    };
                    v.push(match f.transform.as_deref() {
                        Some("log1p") => x.max(0.0).ln_1p(),
                        None | Some("identity") => x,
                        Some(t) => return Err(bad(format!("transform {t} does not apply to numbers"))),
                    });
                }
                DataType::Timestamp(_, _) => {
                    let a = col
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .ok_or_else(|| bad("timestamps must be in milliseconds".into()))?;
                    let hour = (a.value(i).rem_euclid(86_400_000)) / 3_600_000;
                    v.push(match f.transform.as_deref() {
                        Some("night") => f64::from(!(6..22).contains(&hour)),
                        Some("hour_of_day") => hour as f64,
                        t => return Err(bad(format!("a timestamp needs transform night or hour_of_day, got {t:?}"))),
                    });
                }
                DataType::Boolean => {
                    let a = col.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| bad("not a boolean".into()))?;
                    v.push(f64::from(a.value(i)));
                }
                DataType::Utf8 => {
                    let s =
                        col.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad("not a string".into()))?.value(i);
                    if let Some(values) = &f.one_hot {
                        v.extend(values.iter().map(|x| f64::from(x == s)));
                    } else if let Some(other) = &f.is_not {
                        v.push(f64::from(s != other));
                    } else {
                        return Err(bad("a string needs oneHot or isNot".into()));
                    }
                }
                other => return Err(bad(format!("unsupported type {other}"))),
            }
        }
    }
    Ok(rows)
}

/// The label of every row of `batch`: a boolean target as is, a string target 1 when it
/// equals `positive` (the spec's `positiveLabel`); `None` where the target is null.
pub fn labels(batch: &RecordBatch, target: &str, positive: Option<&str>) -> Result<Vec<Option<i32>>, ModelError> {
    let bad = |message: &str| ModelError::Target { column: target.to_string(), message: message.to_string() };
    let col = batch.column_by_name(target).ok_or_else(|| bad("missing column"))?;
    if let Some(b) = col.as_any().downcast_ref::<BooleanArray>() {
        if positive.is_some() {
            return Err(bad("positiveLabel applies to string targets"));
        }
        return Ok(b.iter().map(|v| v.map(i32::from)).collect());
    }
    if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
        let positive = positive.ok_or_else(|| bad("a string target needs positiveLabel"))?;
        return Ok(s.iter().map(|v| v.map(|v| i32::from(v == positive))).collect());
    }
    Err(bad("must be boolean, or a string with positiveLabel"))
}

/// Mean squared difference between probability and outcome (calibration; lower is better).
pub fn brier(scores: &[f64], labels: &[i32]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().zip(labels).map(|(p, &y)| (p - f64::from(y)).powi(2)).sum::<f64>() / scores.len() as f64
}

/// Area under the ROC curve (Mann–Whitney U with tie handling).
pub fn auc(scores: &[f64], labels: &[i32]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] == 1 {
                rank_sum += avg_rank;
            }
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1]), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[0, 1, 0, 1]), 0.5);
    }
}
