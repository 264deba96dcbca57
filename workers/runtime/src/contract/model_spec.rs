//! Model specs (`contracts/models/*.yaml`): what to train on, which features, the gates.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A feature the model is fitted on, computed from one curated column.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeatureSpec {
    pub column: String,
    /// `log1p` (numbers), `night` (timestamps: 1 between 22:00 and 06:00 UTC), `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// One indicator per listed value (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_hot: Option<Vec<String>>,
    /// 1 when the value differs from this one (strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_not: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gates {
    pub min_auc: f64,
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
    pub id_column: String,
    pub subject_column: String,
    pub features: Vec<FeatureSpec>,
    pub params: BTreeMap<String, serde_yaml::Value>,
    pub holdout_fraction: f64,
    pub seed: u64,
    pub gates: Gates,
    pub decision_threshold: f64,
}
