//! Data contracts (ODCS v3 YAML, `contracts/*.yaml`) and model specs
//! (`contracts/models/*.yaml`). One parser serves every worker: the gateway's limits, the
//! schema, the PII treatment of each column and the dataset's role all come from here,
//! so a new dataset needs a contract and no code.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use mlsec_events::DatasetRole;
use serde::Deserialize;

/// Why a contract or model spec is unusable. Always fatal for a worker at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid YAML for this form: {source}")]
    Yaml { path: PathBuf, source: serde_yaml::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Column types the pipeline knows (ODCS `physicalType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Boolean,
    /// UTC timestamp, milliseconds.
    Timestamp,
}

impl ColumnType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" | "varchar" | "text" => ColumnType::String,
            "bigint" | "long" | "int64" | "integer" => ColumnType::Int64,
            "double" | "float64" | "decimal" => ColumnType::Float64,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" | "timestamp_ntz" | "timestamptz" => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

/// How the curate zone treats a personal-data column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudonymisation {
    /// Not personal data: copied as is.
    None,
    /// Keyed HMAC-SHA-256 under the domain's subkey (linkable within a domain only).
    Hmac,
    /// Removed from the curated data.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub required: bool,
    pub pii: bool,
    pub pseudonymisation: Pseudonymisation,
}

/// Landing formats the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
}

/// A dataset's contract, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetContract {
    pub id: String,
    pub dataset: String,
    pub version: String,
    pub domain: String,
    pub role: DatasetRole,
    /// Landing keys under this prefix belong to the dataset (`<source>/<dataset>/`).
    pub landing_prefix: String,
    pub format: Format,
    pub max_object_bytes: u64,
    /// Model that scores this dataset (scoring role only).
    pub scoring_model: Option<String>,
    pub columns: Vec<Column>,
}

impl DatasetContract {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

// ---- ODCS v3 subset as written in the YAML ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsDoc {
    api_version: String,
    kind: String,
    id: String,
    name: String,
    version: String,
    #[serde(default)]
    domain: Option<String>,
    schema: Vec<OdcsSchema>,
    #[serde(default)]
    custom_properties: Vec<CustomProperty>,
}

#[derive(Deserialize)]
struct OdcsSchema {
    properties: Vec<OdcsProperty>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsProperty {
    name: String,
    physical_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    custom_properties: Vec<CustomProperty>,
}

#[derive(Deserialize)]
struct CustomProperty {
    property: String,
    value: serde_yaml::Value,
}

fn custom<'a>(props: &'a [CustomProperty], name: &str) -> Option<&'a serde_yaml::Value> {
    props.iter().find(|p| p.property == name).map(|p| &p.value)
}

fn custom_str(props: &[CustomProperty], name: &str) -> Option<String> {
    custom(props, name).and_then(|v| match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

impl DatasetContract {
    /// Parses one ODCS v3 document.
    pub fn parse(path: &Path, yaml: &str) -> Result<Self, ContractError> {
        let invalid = |message: String| ContractError::Invalid { path: path.to_path_buf(), message };
        let doc: OdcsDoc =
            serde_yaml::from_str(yaml).map_err(|source| ContractError::Yaml { path: path.to_path_buf(), source })?;
        if doc.kind != "DataContract" || !doc.api_version.starts_with("v3.") {
            return Err(invalid(format!("expected an ODCS v3 DataContract, got {} {}", doc.kind, doc.api_version)));
        }
        let [schema] = doc.schema.as_slice() else {
            return Err(invalid("exactly one schema object per dataset contract".into()));
        };
        let props = &doc.custom_properties;
        let role = match custom_str(props, "role").as_deref() {
            Some("training") => DatasetRole::Training,
            Some("scoring") => DatasetRole::Scoring,
            other => return Err(invalid(format!("customProperties.role must be training or scoring, got {other:?}"))),
        };
        let landing_prefix = custom_str(props, "landingPrefix")
            .filter(|p| p.ends_with('/') && p.matches('/').count() == 2 && !p.starts_with('/'))
            .ok_or_else(|| invalid("customProperties.landingPrefix must look like <source>/<dataset>/".into()))?;
        let format = match custom_str(props, "format").as_deref() {
            Some("csv") => Format::Csv,
            other => return Err(invalid(format!("unsupported format {other:?}"))),
        };
        let max_object_bytes = custom_str(props, "maxObjectBytes")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| invalid("customProperties.maxObjectBytes must be a positive integer".into()))?;
        let scoring_model = custom_str(props, "scoringModel");
        if role == DatasetRole::Scoring && scoring_model.is_none() {
            return Err(invalid("a scoring dataset must name its scoringModel".into()));
        }
        let mut columns = Vec::with_capacity(schema.properties.len());
        for p in &schema.properties {
            let ty = ColumnType::parse(&p.physical_type)
                .ok_or_else(|| invalid(format!("column {}: unsupported physicalType {}", p.name, p.physical_type)))?;
            let pii = custom(&p.custom_properties, "pii").and_then(|v| v.as_bool()).unwrap_or(false);
            let pseudonymisation = match custom_str(&p.custom_properties, "pseudonymisation").as_deref() {
                None if pii => return Err(invalid(format!("PII column {} has no pseudonymisation", p.name))),
                None => Pseudonymisation::None,
                Some("hmac") => Pseudonymisation::Hmac,
                Some("drop") => Pseudonymisation::Drop,
                Some(other) => return Err(invalid(format!("column {}: unknown pseudonymisation {other}", p.name))),
            };
            if pseudonymisation == Pseudonymisation::Hmac && ty != ColumnType::String {
                return Err(invalid(format!("column {}: hmac applies to string columns", p.name)));
            }
            if columns.iter().any(|c: &Column| c.name == p.name) {
                return Err(invalid(format!("column {} declared twice", p.name)));
            }
            columns.push(Column { name: p.name.clone(), ty, required: p.required, pii, pseudonymisation });
        }
        Ok(Self {
            id: doc.id,
            dataset: doc.name,
            version: doc.version,
            domain: doc.domain.unwrap_or_else(|| "default".into()),
            role,
            landing_prefix,
            format,
            max_object_bytes,
            scoring_model,
            columns,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_contracts() -> Contracts {
        Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap()
    }

    #[test]
    fn the_repository_contracts_load() {
        let c = repo_contracts();
        let t = c.dataset("transactions_training").unwrap();
        assert_eq!(t.role, DatasetRole::Training);
        assert_eq!(t.column("customer_cpf").unwrap().pseudonymisation, Pseudonymisation::Hmac);
        assert_eq!(t.column("customer_name").unwrap().pseudonymisation, Pseudonymisation::Drop);
        assert_eq!(t.column("amount").unwrap().ty, ColumnType::Float64);
        let s = c.for_landing_key("bank-core/transactions_scoring/a.csv").unwrap();
        assert_eq!(s.scoring_model.as_deref(), Some("fraud_lr"));
        assert!(c.for_landing_key("bank-core/transactions_scoring/").is_none());
        assert!(c.for_landing_key("elsewhere/transactions_scoring/a.csv").is_none());
        assert_eq!(c.model_for_training("transactions_training").unwrap().name, "fraud_lr");
    }

    #[test]
    fn a_pii_column_without_treatment_is_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replacen("            value: drop\n", "            value: keep\n", 1);
        assert!(DatasetContract::parse(&path, &bad).unwrap_err().to_string().contains("unknown pseudonymisation"));
        let bad = text.replacen("          - property: pseudonymisation\n            value: drop\n", "", 1);
        assert!(DatasetContract::parse(&path, &bad).unwrap_err().to_string().contains("no pseudonymisation"));
    }
}
