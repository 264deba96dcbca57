//! Model specs (`contracts/models/*.yaml`): what to train on, which features, the gates
//! govern applies on the holdout, and who may approve.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A feature the model is fitted on, computed from one curated column.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeatureSpec {
    pub column: String,
    /// `log1p` (numbers), `night` or `hour_of_day` (timestamps), `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// One indicator per listed value (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_hot: Option<Vec<String>>,
    /// 1 when the value differs from this one (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_not: Option<String>,
}

/// Fairness gate over every column the training contract marks `protected: true`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FairnessGate {
    /// Lowest selection-rate ratio between groups (disparate impact; four-fifths rule).
    #[serde(default = "default_min_ratio")]
    pub min_ratio: f64,
    /// Largest difference in true-positive rate between groups (equal opportunity).
    #[serde(default = "default_max_eo")]
    pub max_equal_opportunity_diff: f64,
    /// A group with fewer holdout rows (or fewer positives, for equal opportunity) is
    /// insufficient evidence, and the gate fails closed.
    #[serde(default = "default_min_group")]
    pub min_group_size: usize,
    /// Bootstrap resamples for the confidence intervals.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Which decision a customer wants: `negative` (not flagged: fraud, default risk) or
    /// `positive` (approved). Both measures are taken on the favourable outcome.
    #[serde(default = "default_favourable")]
    pub favourable_outcome: String,
}

fn default_favourable() -> String {
    "negative".into()
}

fn default_min_ratio() -> f64 {
    0.8
}
fn default_max_eo() -> f64 {
    0.1
}
fn default_min_group() -> usize {
    30
}
fn default_bootstrap() -> usize {
    200
}
fn default_min_holdout() -> usize {
    100
}
fn default_required() -> usize {
    1
}

/// The automated gates, measured by govern on the holdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gates {
    pub min_auc: f64,
    /// Largest AUC the challenger may lose against the production model (same holdout).
    #[serde(default)]
    pub max_auc_drop: Option<f64>,
    /// Largest Brier score (calibration).
    #[serde(default)]
    pub max_brier: Option<f64>,
    /// Fewest holdout rows an evaluation may rest on.
    #[serde(default = "default_min_holdout")]
    pub min_holdout_rows: usize,
    #[serde(default)]
    pub fairness: Option<FairnessGate>,
}

/// Who may approve a version for production, and how many must.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// STS ARN patterns (`*` matches any run of characters).
    pub approvers: Vec<String>,
    /// Distinct people who must approve a promotion or a rollback.
    #[serde(default = "default_required")]
    pub required_approvals: usize,
}

/// A model spec (`contracts/models/*.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    pub kind: String,
    pub name: String,
    pub description: String,
    pub training_dataset: String,
    pub algorithm: String,
    pub target: String,
    /// For a string target: the value that is the positive class (others are negative).
    #[serde(default)]
    pub positive_label: Option<String>,
    pub id_column: String,
    /// A second column copied into the scored output (e.g. the pseudonymous customer).
    #[serde(default)]
    pub subject_column: Option<String>,
    pub features: Vec<FeatureSpec>,
    /// `C` (inverse regularisation strength, as scikit-learn) or `alpha` (L2 weight).
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    /// Share of the non-holdout rows the trainer keeps back for its own validation.
    pub holdout_fraction: f64,
    pub seed: u64,
    /// Refit the final model on every non-holdout row after validating.
    #[serde(default)]
    pub refit: bool,
    pub gates: Gates,
    pub decision_threshold: f64,
    pub approval: ApprovalPolicy,
}

impl ModelSpec {
    /// The L2 weight smartcore takes: `alpha`, or `1/C`; 0 when neither is given.
    pub fn l2_alpha(&self) -> Result<f64, String> {
        let num = |k: &str| self.params.get(k).map(|v| v.as_f64().ok_or(format!("params.{k} must be a number")));
        match (num("C").transpose()?, num("alpha").transpose()?) {
            (Some(_), Some(_)) => Err("params: give C or alpha, not both".into()),
            (Some(c), None) if c > 0.0 => Ok(1.0 / c),
            (Some(_), None) => Err("params.C must be positive".into()),
            (None, Some(a)) if a >= 0.0 => Ok(a),
            (None, Some(_)) => Err("params.alpha must not be negative".into()),
            (None, None) => Ok(0.0),
        }
    }

    /// `params.classWeight: {positive: N}`: how many times each positive row counts in the
    /// fit (1 when absent), as scikit-learn's `class_weight={1: N}`. Integer weights only:
    /// they are applied exactly, by repeating rows (the standardisation is taken over the
    /// rows as they are), so a fractional "balanced" weighting is refused rather than
    /// approximated.
    pub fn positive_weight(&self) -> Result<usize, String> {
        let Some(w) = self.params.get("classWeight") else { return Ok(1) };
        let bad = || {
            "params.classWeight must be {positive: N} with N a whole number from 1 to 100 (fractional weights such as \
             balanced are not supported)"
                .to_string()
        };
        let map = w.as_mapping().ok_or_else(bad)?;
        if map.len() != 1 {
            return Err(bad());
        }
        let n = map.get(serde_yaml::Value::from("positive")).and_then(serde_yaml::Value::as_u64).ok_or_else(bad)?;
        if !(1..=100).contains(&n) {
            return Err(bad());
        }
        Ok(n as usize)
    }

    /// The output column names of a scored file, in order.
    pub fn output_columns(&self) -> Vec<&str> {
        let mut cols = vec![self.id_column.as_str()];
        if let Some(s) = self.subject_column.as_deref().filter(|s| *s != self.id_column) {
            cols.push(s);
        }
        cols
    }
}
