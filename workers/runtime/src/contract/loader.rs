//! Loading a deployment's contracts and model specs from a directory, and checking their
//! cross-references (unique datasets, disjoint landing prefixes, model ↔ dataset).

use std::path::{Path, PathBuf};

use super::{model_spec::ModelSpec, types::*};

/// All contracts and model specs of a deployment.
#[derive(Debug, Clone, Default)]
pub struct Contracts {
    pub datasets: Vec<DatasetContract>,
    pub models: Vec<ModelSpec>,
}

impl Contracts {
    /// Loads `dir/*.yaml` (dataset contracts) and `dir/models/*.yaml` (model specs) and
    /// checks their cross-references.
    pub fn load_dir(dir: &Path) -> Result<Self, ContractError> {
        let mut out = Contracts::default();
        for path in yaml_files(dir)? {
            let text = read(&path)?;
            out.datasets.push(DatasetContract::parse(&path, &text)?);
        }
        let models_dir = dir.join("models");
        if models_dir.is_dir() {
            for path in yaml_files(&models_dir)? {
                let text = read(&path)?;
                let spec: ModelSpec =
                    serde_yaml::from_str(&text).map_err(|source| ContractError::Yaml { path: path.clone(), source })?;
                out.check_spec(&spec).map_err(|message| ContractError::Invalid { path: path.clone(), message })?;
                out.models.push(spec);
            }
        }
        out.check().map_err(|message| ContractError::Invalid { path: dir.to_path_buf(), message })?;
        Ok(out)
    }

    /// From `MLSEC_CONTRACTS_DIR`, default `./contracts`.
    pub fn from_env() -> Result<Self, ContractError> {
        let dir = std::env::var("MLSEC_CONTRACTS_DIR").unwrap_or_else(|_| "contracts".into());
        Self::load_dir(Path::new(&dir))
    }

    fn check(&self) -> Result<(), String> {
        for (i, a) in self.datasets.iter().enumerate() {
            for b in &self.datasets[i + 1..] {
                if a.dataset == b.dataset {
                    return Err(format!("dataset {} has two contracts", a.dataset));
                }
                if a.landing_prefix.starts_with(&b.landing_prefix) || b.landing_prefix.starts_with(&a.landing_prefix) {
                    return Err(format!("landing prefixes of {} and {} overlap", a.dataset, b.dataset));
                }
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(format!("model {} has two specs", m.name));
            }
        }
        for d in &self.datasets {
            if let Some(model) = &d.scoring_model
                && self.model(model).is_none()
            {
                return Err(format!("dataset {} is scored by unknown model {model}", d.dataset));
            }
        }
        Ok(())
    }

    /// Checks a model spec against the contracts it names (the datasets must be loaded):
    /// a bad spec stops the worker at start-up, naming the field, instead of failing
    /// every training run.
    pub fn check_spec(&self, m: &ModelSpec) -> Result<(), String> {
        if m.kind != "ModelSpec" {
            return Err("kind must be ModelSpec".into());
        }
        if m.algorithm != "logistic_regression" {
            return Err(format!("algorithm {}: only logistic_regression is supported", m.algorithm));
        }
        for k in m.params.keys() {
            if !["C", "alpha", "classWeight"].contains(&k.as_str()) {
                return Err(format!("params.{k}: unknown parameter (C, alpha or classWeight)"));
            }
        }
        m.l2_alpha()?;
        m.positive_weight()?;
        let ds = self
            .dataset(&m.training_dataset)
            .ok_or_else(|| format!("trainingDataset {} has no contract", m.training_dataset))?;
        if ds.role != mlsec_events::DatasetRole::Training {
            return Err(format!("trainingDataset {} is not a training dataset", ds.dataset));
        }
        let target =
            ds.column(&m.target).ok_or_else(|| format!("target {} is not a column of {}", m.target, ds.dataset))?;
        if m.features.iter().any(|f| f.column == m.target) {
            return Err(format!("target {} is also a feature: the model would learn its own label", m.target));
        }
        if target.pseudonymisation != Pseudonymisation::None {
            return Err(format!("target {}: a pseudonymised column cannot be a label", m.target));
        }
        match (target.ty, &m.positive_label) {
            (ColumnType::Boolean, None) | (ColumnType::String, Some(_)) => {}
            (ColumnType::Boolean, Some(_)) => {
                return Err(format!("target {}: positiveLabel applies to string targets", m.target));
            }
            (ColumnType::String, None) => {
                return Err(format!("target {} is a string column: set positiveLabel to its positive value", m.target));
            }
            (ty, _) => {
                return Err(format!(
                    "target {} is {ty:?}: it must be boolean, or a string with positiveLabel",
                    m.target
                ));
            }
        }
        if !(0.05..=0.5).contains(&m.holdout_fraction) {
            return Err("holdoutFraction must be within 0.05..=0.5".into());
        }
        if !(m.decision_threshold > 0.0 && m.decision_threshold < 1.0) {
            return Err("decisionThreshold must be within (0, 1)".into());
        }
        if !(0.5..=1.0).contains(&m.gates.min_auc) {
            return Err("gates.minAuc must be within 0.5..=1".into());
        }
        if let Some(f) = &m.gates.fairness {
            if f.favourable_outcome != "negative" && f.favourable_outcome != "positive" {
                return Err("gates.fairness.favourableOutcome must be negative or positive".into());
            }
            if !(f.min_ratio > 0.0 && f.min_ratio <= 1.0) || f.max_equal_opportunity_diff < 0.0 {
                return Err("gates.fairness: minRatio within (0, 1], maxEqualOpportunityDiff not negative".into());
            }
            if f.bootstrap > 10_000 {
                return Err("gates.fairness.bootstrap: at most 10000 resamples".into());
            }
        }
        if m.approval.approvers.is_empty() || m.approval.approvers.iter().any(|a| a.trim().is_empty()) {
            return Err("approval.approvers must list at least one ARN pattern".into());
        }
        if !(1..=5).contains(&m.approval.required_approvals) {
            return Err("approval.requiredApprovals must be within 1..=5".into());
        }
        let scoring: Vec<&DatasetContract> =
            self.datasets.iter().filter(|d| d.scoring_model.as_deref() == Some(m.name.as_str())).collect();
        for (training, ds) in std::iter::once((true, ds)).chain(scoring.into_iter().map(|d| (false, d))) {
            // The id (and subject) identify scored rows: every scoring dataset must carry
            // them; training data need not (many public data sets have no id column).
            for (field, col) in [("idColumn", Some(&m.id_column)), ("subjectColumn", m.subject_column.as_ref())] {
                let Some(col) = col.filter(|_| !training) else { continue };
                match ds.column(col) {
                    None => return Err(format!("{field} {col} is not a column of {}", ds.dataset)),
                    Some(c) if c.pseudonymisation == Pseudonymisation::Drop => {
                        return Err(format!("{field} {col} is dropped from curated {}", ds.dataset));
                    }
                    Some(_) => {}
                }
            }
            for f in &m.features {
                let c = ds
                    .column(&f.column)
                    .ok_or_else(|| format!("feature {} is not a column of {}", f.column, ds.dataset))?;
                if c.pseudonymisation == Pseudonymisation::Drop {
                    return Err(format!("feature {} is dropped from curated {}", f.column, ds.dataset));
                }
                feature_fits(f, c).map_err(|e| format!("feature {} ({:?} in {}): {e}", f.column, c.ty, ds.dataset))?;
            }
        }
        Ok(())
    }

    pub fn dataset(&self, name: &str) -> Option<&DatasetContract> {
        self.datasets.iter().find(|d| d.dataset == name)
    }

    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The contract whose landing prefix the key falls under (prefixes never overlap).
    pub fn for_landing_key(&self, key: &str) -> Option<&DatasetContract> {
        self.datasets.iter().find(|d| key.starts_with(&d.landing_prefix) && key.len() > d.landing_prefix.len())
    }

    /// The model trained on `dataset`, if any.
    pub fn model_for_training(&self, dataset: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.training_dataset == dataset)
    }
}

/// Whether a feature's transform applies to its column's curated type (what
/// `mlsec_lake::model::featurize` computes).
fn feature_fits(f: &super::model_spec::FeatureSpec, c: &Column) -> Result<(), String> {
    let encoders = f.one_hot.is_some() as u8 + f.is_not.is_some() as u8;
    let curated = match c.pseudonymisation {
        Pseudonymisation::Hmac | Pseudonymisation::Mask { .. } => ColumnType::String,
        _ => c.ty,
    };
    let t = f.transform.as_deref();
    match curated {
        ColumnType::Int64 | ColumnType::Float64 if encoders == 0 && matches!(t, None | Some("identity" | "log1p")) => {
            Ok(())
        }
        ColumnType::Int64 | ColumnType::Float64 => Err("numbers take transform identity or log1p".into()),
        ColumnType::Timestamp if encoders == 0 && matches!(t, Some("night" | "hour_of_day")) => Ok(()),
        ColumnType::Timestamp => Err("timestamps take transform night or hour_of_day".into()),
        ColumnType::Boolean if encoders == 0 && t.is_none() => Ok(()),
        ColumnType::Boolean => Err("booleans take no transform".into()),
        ColumnType::String if encoders == 1 && t.is_none() => Ok(()),
        ColumnType::String => Err("strings take exactly one of oneHot or isNot".into()),
    }
}

fn read(path: &Path) -> Result<String, ContractError> {
    std::fs::read_to_string(path).map_err(|source| ContractError::Io { path: path.to_path_buf(), source })
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ContractError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ContractError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}
