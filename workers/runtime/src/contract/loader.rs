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
        for m in &self.models {
            if m.kind != "ModelSpec" {
                return Err(format!("{}: kind must be ModelSpec", m.name));
            }
            let ds = self
                .dataset(&m.training_dataset)
                .ok_or_else(|| format!("model {} trains on unknown dataset {}", m.name, m.training_dataset))?;
            for f in &m.features {
                if ds.column(&f.column).is_none() {
                    return Err(format!("model {}: feature column {} not in {}", m.name, f.column, ds.dataset));
                }
            }
            if ds.column(&m.target).is_none() {
                return Err(format!("model {}: target {} not in {}", m.name, m.target, ds.dataset));
            }
            if !(0.05..=0.5).contains(&m.holdout_fraction) {
                return Err(format!("model {}: holdoutFraction must be within 0.05..=0.5", m.name));
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
