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

/// How the curate zone treats a personal-data column (`customProperties.pseudonymisation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pseudonymisation {
    /// Not personal data: copied as is.
    None,
    /// Keyed HMAC-SHA-256 under the domain's subkey (linkable within a domain only).
    Hmac,
    /// Removed from the curated data.
    Drop,
    /// Replaced by `****` plus the last `keep_last` characters (`maskKeepLast`, default 0);
    /// a value of at most `2 * keep_last` characters is masked whole.
    Mask { keep_last: usize },
    /// Coarsened (`generalisation: hour | day | month | band`, `bandWidth` for bands).
    Generalise(Generalisation),
}

/// How a generalised column is coarsened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalisation {
    /// Timestamps truncated to the hour, day or month (UTC).
    Hour,
    Day,
    Month,
    /// Numbers rounded down to a multiple of the width (age 37, width 10 → 30).
    Band(f64),
}

/// What a quality rule does when it fails (ODCS `severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Row rules drop the failing rows; a failed threshold rejects the dataset.
    Error,
    /// Reported only.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// ODCS comparison operator of a library metric (`mustBe`, `mustBeLessThan`, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operator {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    Between(f64, f64),
    NotBetween(f64, f64),
}

impl Operator {
    pub fn holds(self, v: f64) -> bool {
        match self {
            Operator::Eq(x) => v == x,
            Operator::Ne(x) => v != x,
            Operator::Gt(x) => v > x,
            Operator::Ge(x) => v >= x,
            Operator::Lt(x) => v < x,
            Operator::Le(x) => v <= x,
            Operator::Between(lo, hi) => (lo..=hi).contains(&v),
            Operator::NotBetween(lo, hi) => !(lo..=hi).contains(&v),
        }
    }

    /// As written in the contract, for reports.
    pub fn describe(self) -> String {
        match self {
            Operator::Eq(x) => format!("mustBe {x}"),
            Operator::Ne(x) => format!("mustNotBe {x}"),
            Operator::Gt(x) => format!("mustBeGreaterThan {x}"),
            Operator::Ge(x) => format!("mustBeGreaterOrEqualTo {x}"),
            Operator::Lt(x) => format!("mustBeLessThan {x}"),
            Operator::Le(x) => format!("mustBeLessOrEqualTo {x}"),
            Operator::Between(a, b) => format!("mustBeBetween [{a}, {b}]"),
            Operator::NotBetween(a, b) => format!("mustNotBeBetween [{a}, {b}]"),
        }
    }
}

/// What a quality rule measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Row rule (schema `required: true`): a null drops the row. Threshold: `mustBe 0` rows.
    Required { column: String },
    /// Dataset rule (ODCS `nullValues`): nulls in a column, in rows or percent.
    NullValues { column: String },
    /// Row rule (ODCS `invalidValues`): values outside `validValues`, not matching
    /// `pattern` (whole value), or outside `minimum..=maximum`. Nulls are not invalid.
    InvalidValues {
        column: String,
        valid_values: Option<Vec<String>>,
        pattern: Option<String>,
        minimum: Option<f64>,
        maximum: Option<f64>,
    },
    /// Dataset rule (ODCS `duplicateValues`): rows whose key (one column, or the
    /// schema-level `arguments.properties`) was already seen.
    DuplicateValues { columns: Vec<String> },
    /// Dataset rule (ODCS `rowCount`): rows read.
    RowCount,
    /// Dataset rule (custom, engine `mlsec`): the newest value of a timestamp column is at
    /// most `max_age_ms` old when curated.
    Freshness { column: String, max_age_ms: i64 },
}

impl Check {
    pub fn metric(&self) -> &'static str {
        match self {
            Check::Required { .. } => "required",
            Check::NullValues { .. } => "nullValues",
            Check::InvalidValues { .. } => "invalidValues",
            Check::DuplicateValues { .. } => "duplicateValues",
            Check::RowCount => "rowCount",
            Check::Freshness { .. } => "freshness",
        }
    }

    /// Row rules judge each row; the others judge the dataset.
    pub fn is_row_rule(&self) -> bool {
        matches!(self, Check::Required { .. } | Check::InvalidValues { .. })
    }

    pub fn columns(&self) -> Vec<String> {
        match self {
            Check::Required { column }
            | Check::NullValues { column }
            | Check::InvalidValues { column, .. }
            | Check::Freshness { column, .. } => vec![column.clone()],
            Check::DuplicateValues { columns } => columns.clone(),
            Check::RowCount => vec![],
        }
    }
}

/// One data-quality rule of a contract (ODCS `quality`, property or schema level).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRule {
    /// The contract's `id` (or `<column>_<metric>` when absent); unique per contract.
    pub id: String,
    pub check: Check,
    pub severity: Severity,
    /// Compared with the failing count (`unit: rows`) or percent of rows read
    /// (`unit: percent`); `None` for freshness, which has its own bound.
    pub operator: Option<Operator>,
    pub percent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub required: bool,
    pub pii: bool,
    pub pseudonymisation: Pseudonymisation,
    /// Inclusive bounds of a numeric column (ODCS `logicalTypeOptions.minimum/maximum`).
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// Longest value in bytes (ODCS `logicalTypeOptions.maxLength`), within the
    /// dataset-wide `maxFieldBytes`.
    pub max_length: Option<usize>,
}

/// Landing formats the gateway accepts, recognised by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// JSON Lines: one JSON object per line, keys = column names.
    Jsonl,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// What the gateway does with a text cell that a spreadsheet would run as a formula
/// (starts with `=`, `+`, `-`, `@`, tab or CR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormulaPolicy {
    /// The row is rejected (`formula_injection`).
    Reject,
    /// The cell is kept with a leading `'`, so spreadsheets show it as text (OWASP).
    Neutralise,
}

/// The gateway's limits and rules for one dataset (contract `customProperties`).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestPolicy {
    /// Accepted formats (`formats: csv,jsonl`), recognised by content.
    pub formats: Vec<Format>,
    /// Whether gzip-compressed objects are accepted (`gzip: true`).
    pub gzip: bool,
    /// Largest object as stored (`maxObjectBytes`).
    pub max_object_bytes: u64,
    /// Largest decompressed size of a gzip object (`maxDecompressedBytes`).
    pub max_decompressed_bytes: u64,
    /// Largest decompressed/compressed ratio (`maxCompressionRatio`): zip-bomb defence.
    pub max_compression_ratio: u64,
    /// Longest line (record) in bytes (`maxLineBytes`).
    pub max_line_bytes: usize,
    /// Longest field in bytes (`maxFieldBytes`).
    pub max_field_bytes: usize,
    /// Most data rows in one object (`maxRows`).
    pub max_rows: u64,
    /// Largest fraction of rejected rows before the whole object is quarantined
    /// (`maxRejectedRowRatio`, 0 = any bad row quarantines the object).
    pub max_rejected_ratio: f64,
    /// `formulaCells: reject | neutralise`.
    pub formula_cells: FormulaPolicy,
    /// S3 requesters allowed to write the landing prefix (`allowedWriters`); `self` is
    /// the deployment's own account. Empty: any writer the bucket policy lets in.
    pub allowed_writers: Vec<String>,
    /// Timestamps later than now + this are rejected (`maxFutureSeconds`).
    pub max_future_ms: i64,
    /// Timestamps before this are rejected (`minTimestamp`, RFC 3339).
    pub min_timestamp_ms: i64,
}

/// A dataset's contract, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetContract {
    pub id: String,
    pub dataset: String,
    pub version: String,
    pub domain: String,
    pub role: DatasetRole,
    /// Landing keys under this prefix belong to the dataset (`<source>/<dataset>/`).
    pub landing_prefix: String,
    pub ingest: IngestPolicy,
    /// Model that scores this dataset (scoring role only).
    pub scoring_model: Option<String>,
    pub columns: Vec<Column>,
    /// Data-quality rules, in contract order: one `required` rule per required column,
    /// then the property-level rules, then the schema-level ones.
    pub quality: Vec<QualityRule>,
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
    #[serde(default)]
    quality: Vec<OdcsQuality>,
}

/// An ODCS v3.1 `quality` entry (the parts this pipeline executes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsQuality {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    arguments: Option<serde_yaml::Value>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    engine: Option<String>,
    #[serde(default)]
    implementation: Option<serde_yaml::Value>,
    #[serde(default)]
    must_be: Option<f64>,
    #[serde(default)]
    must_not_be: Option<f64>,
    #[serde(default)]
    must_be_greater_than: Option<f64>,
    #[serde(default)]
    must_be_greater_or_equal_to: Option<f64>,
    #[serde(default)]
    must_be_less_than: Option<f64>,
    #[serde(default)]
    must_be_less_or_equal_to: Option<f64>,
    #[serde(default)]
    must_be_between: Option<[f64; 2]>,
    #[serde(default)]
    must_not_be_between: Option<[f64; 2]>,
}

impl OdcsQuality {
    fn operator(&self) -> Result<Option<Operator>, String> {
        let ops: Vec<Operator> = [
            self.must_be.map(Operator::Eq),
            self.must_not_be.map(Operator::Ne),
            self.must_be_greater_than.map(Operator::Gt),
            self.must_be_greater_or_equal_to.map(Operator::Ge),
            self.must_be_less_than.map(Operator::Lt),
            self.must_be_less_or_equal_to.map(Operator::Le),
            self.must_be_between.map(|[a, b]| Operator::Between(a, b)),
            self.must_not_be_between.map(|[a, b]| Operator::NotBetween(a, b)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for op in &ops {
            if let Operator::Between(a, b) | Operator::NotBetween(a, b) = op
                && (a > b || !a.is_finite() || !b.is_finite())
            {
                return Err("a between operator needs two finite numbers, smallest first".into());
            }
        }
        match ops.as_slice() {
            [] => Ok(None),
            [op] => Ok(Some(*op)),
            _ => Err("give one operator (mustBe, mustBeLessThan, ...) per rule".into()),
        }
    }

    fn argument(&self, name: &str) -> Option<&serde_yaml::Value> {
        self.arguments.as_ref().and_then(|a| a.get(name))
    }

    /// Validates the entry and turns it into a rule; `column` is `None` at schema level.
    /// `Ok(None)` for `type: text` (documentation, nothing to execute).
    fn rule(&self, column: Option<&Column>, known: &dyn Fn(&str) -> bool) -> Result<Option<QualityRule>, String> {
        let kind = self.kind.as_deref().unwrap_or("library");
        let severity = match self.severity.as_deref() {
            None | Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            Some(other) => return Err(format!("severity must be error or warning, got {other}")),
        };
        let percent = match self.unit.as_deref() {
            None | Some("rows") => false,
            Some("percent") => true,
            Some(other) => return Err(format!("unit must be rows or percent, got {other}")),
        };
        let operator = self.operator()?;
        let col = || column.map(|c| c.name.clone()).ok_or("this metric applies to a property, not the schema");
        let check = match kind {
            "text" => return Ok(None),
            "library" => match self.metric.as_deref() {
                Some("nullValues") | Some("missingValues") => {
                    if self.arguments.is_some() {
                        return Err(
                            "arguments of nullValues/missingValues (e.g. missingValues lists) are not supported; \
                                    only nulls are counted"
                                .into(),
                        );
                    }
                    Check::NullValues { column: col()? }
                }
                Some("invalidValues") => {
                    let c = column.ok_or("invalidValues applies to a property")?;
                    let valid_values = match self.argument("validValues") {
                        None => None,
                        Some(serde_yaml::Value::Sequence(items)) => Some(
                            items
                                .iter()
                                .map(|v| match v {
                                    serde_yaml::Value::String(s) => Some(s.clone()),
                                    serde_yaml::Value::Number(n) => Some(n.to_string()),
                                    serde_yaml::Value::Bool(b) => Some(b.to_string()),
                                    _ => None,
                                })
                                .collect::<Option<Vec<_>>>()
                                .ok_or("arguments.validValues must be a list of scalars")?,
                        ),
                        Some(_) => return Err("arguments.validValues must be a list".into()),
                    };
                    let pattern = match self.argument("pattern") {
                        None => None,
                        Some(serde_yaml::Value::String(p)) => {
                            regex::Regex::new(p).map_err(|e| format!("arguments.pattern: {e}"))?;
                            Some(p.clone())
                        }
                        Some(_) => return Err("arguments.pattern must be a string".into()),
                    };
                    if let Some(serde_yaml::Value::Mapping(m)) = &self.arguments {
                        for k in m.keys() {
                            let k = k.as_str().unwrap_or("?");
                            if !["validValues", "pattern", "minimum", "maximum"].contains(&k) {
                                return Err(format!("invalidValues: unknown argument {k}"));
                            }
                        }
                    }
                    let number = |name: &str| -> Result<Option<f64>, String> {
                        match self.argument(name) {
                            None => Ok(None),
                            Some(v) => v
                                .as_f64()
                                .filter(|x| x.is_finite())
                                .map(Some)
                                .ok_or(format!("arguments.{name} must be a finite number")),
                        }
                    };
                    let (minimum, maximum) = (number("minimum")?, number("maximum")?);
                    if let (Some(lo), Some(hi)) = (minimum, maximum)
                        && lo > hi
                    {
                        return Err("arguments.minimum is above arguments.maximum".into());
                    }
                    if (valid_values.is_some() || pattern.is_some()) && c.ty != ColumnType::String {
                        return Err("validValues and pattern apply to string columns".into());
                    }
                    if (minimum.is_some() || maximum.is_some())
                        && !matches!(c.ty, ColumnType::Int64 | ColumnType::Float64)
                    {
                        return Err("minimum and maximum apply to numeric columns".into());
                    }
                    if valid_values.is_none() && pattern.is_none() && minimum.is_none() && maximum.is_none() {
                        return Err("invalidValues needs arguments: validValues, pattern, minimum or maximum".into());
                    }
                    Check::InvalidValues { column: c.name.clone(), valid_values, pattern, minimum, maximum }
                }
                Some("duplicateValues") => {
                    let columns = match (column, self.argument("properties")) {
                        (Some(c), None) => vec![c.name.clone()],
                        (None, Some(serde_yaml::Value::Sequence(items))) => items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .filter(|v| !v.is_empty())
                            .ok_or("arguments.properties must list column names")?,
                        (Some(_), Some(_)) => return Err("arguments.properties belongs to schema-level rules".into()),
                        (None, _) => return Err("a schema-level duplicateValues needs arguments.properties".into()),
                    };
                    if let Some(unknown) = columns.iter().find(|c| !known(c)) {
                        return Err(format!("duplicateValues: unknown column {unknown}"));
                    }
                    Check::DuplicateValues { columns }
                }
                Some("rowCount") if column.is_none() => Check::RowCount,
                Some("rowCount") => return Err("rowCount applies to the schema, not a property".into()),
                other => return Err(format!("unsupported metric {other:?}")),
            },
            "custom" if self.engine.as_deref() == Some("mlsec") => {
                let c = column.ok_or("mlsec custom rules apply to a property")?;
                let secs = self
                    .implementation
                    .as_ref()
                    .and_then(|i| i.get("freshness"))
                    .and_then(|f| f.get("maxAgeSeconds"))
                    .and_then(|s| s.as_u64())
                    .filter(|s| (1..=100 * 365 * 86_400).contains(s))
                    .ok_or("implementation must be freshness.maxAgeSeconds (1 s to 100 years)")?;
                if c.ty != ColumnType::Timestamp {
                    return Err("freshness applies to timestamp columns".into());
                }
                Check::Freshness { column: c.name.clone(), max_age_ms: secs as i64 * 1000 }
            }
            other => {
                return Err(format!(
                    "quality type {other} (engine {:?}) is not executed by this pipeline; use library metrics, \
                     type text, or type custom with engine mlsec",
                    self.engine
                ));
            }
        };
        let operator = match (&check, operator) {
            (Check::Freshness { .. }, None) => None,
            (Check::Freshness { .. }, Some(_)) => return Err("freshness takes no operator".into()),
            (_, None) => return Err("a library metric needs one operator (mustBe, mustBeLessThan, ...)".into()),
            (_, op) => op,
        };
        if percent && matches!(check, Check::RowCount) {
            return Err("rowCount counts rows; unit percent does not apply".into());
        }
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let target = check.columns().join("_");
                if target.is_empty() { check.metric().to_string() } else { format!("{target}_{}", check.metric()) }
            }
        };
        Ok(Some(QualityRule { id, check, severity, operator, percent }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsProperty {
    name: String,
    physical_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    logical_type_options: Option<LogicalTypeOptions>,
    #[serde(default)]
    custom_properties: Vec<CustomProperty>,
    #[serde(default)]
    quality: Vec<OdcsQuality>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogicalTypeOptions {
    #[serde(default)]
    minimum: Option<f64>,
    #[serde(default)]
    maximum: Option<f64>,
    #[serde(default)]
    max_length: Option<usize>,
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

/// A positive integer limit of at most `max`: the bound keeps every use of a limit (a
/// line length plus its line end, seconds in milliseconds) free of overflow.
/// Whether an integer lies within inclusive bounds written as numbers, compared exactly
/// (converting the integer to f64 would round above 2^53). A fractional bound is rounded
/// inwards: `minimum: 1.5` admits 2, not 1.
pub fn int_within(v: i64, minimum: Option<f64>, maximum: Option<f64>) -> bool {
    let v = i128::from(v);
    minimum.is_none_or(|m| v >= m.ceil() as i128) && maximum.is_none_or(|m| v <= m.floor() as i128)
}

fn custom_u64(props: &[CustomProperty], name: &str, default: u64, max: u64) -> Result<u64, String> {
    match custom_str(props, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or(format!("customProperties.{name} must be an integer from 1 to {max}")),
    }
}

/// S3's largest object.
const MAX_OBJECT_BYTES: u64 = 5 * (1 << 40);
/// A hundred years, in seconds.
const CENTURY_SECONDS: u64 = 100 * 365 * 86_400;

impl IngestPolicy {
    /// Defaults are strict; a contract loosens them explicitly.
    fn parse(props: &[CustomProperty]) -> Result<Self, String> {
        let formats_text = custom_str(props, "formats")
            .or_else(|| custom_str(props, "format"))
            .ok_or("customProperties.formats must list the landing formats (csv, jsonl)")?;
        let mut formats = Vec::new();
        for f in formats_text.split(',').map(str::trim) {
            formats.push(match f {
                "csv" => Format::Csv,
                "jsonl" => Format::Jsonl,
                other => return Err(format!("unsupported landing format {other:?}")),
            });
        }
        let gzip = match custom(props, "gzip") {
            None => false,
            Some(serde_yaml::Value::Bool(b)) => *b,
            Some(_) => return Err("customProperties.gzip must be true or false".into()),
        };
        if custom_str(props, "maxObjectBytes").is_none() {
            return Err("customProperties.maxObjectBytes must be set".into());
        }
        let max_object_bytes = custom_u64(props, "maxObjectBytes", 0, MAX_OBJECT_BYTES)?;
        let max_rejected_ratio = match custom_str(props, "maxRejectedRowRatio") {
            None => 0.0,
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=0.5).contains(r))
                .ok_or("customProperties.maxRejectedRowRatio must be within 0..=0.5")?,
        };
        let formula_cells = match custom_str(props, "formulaCells").as_deref() {
            None | Some("reject") => FormulaPolicy::Reject,
            Some("neutralise") => FormulaPolicy::Neutralise,
            Some(other) => return Err(format!("customProperties.formulaCells: unknown policy {other}")),
        };
        let allowed_writers = match custom(props, "allowedWriters") {
            None => Vec::new(),
            Some(serde_yaml::Value::Sequence(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or("customProperties.allowedWriters must be a list of strings")?,
            Some(_) => return Err("customProperties.allowedWriters must be a list".into()),
        };
        let min_timestamp_ms = match custom_str(props, "minTimestamp") {
            None => -2_208_988_800_000, // 1900-01-01T00:00:00Z
            Some(v) => crate::time::parse_rfc3339_ms(v.as_bytes())
                .ok_or("customProperties.minTimestamp must be an RFC 3339 timestamp")?,
        };
        Ok(Self {
            formats,
            gzip,
            max_object_bytes,
            max_decompressed_bytes: custom_u64(props, "maxDecompressedBytes", max_object_bytes, 1 << 50)?,
            max_compression_ratio: custom_u64(props, "maxCompressionRatio", 100, 1_000_000)?,
            max_line_bytes: custom_u64(props, "maxLineBytes", 64 * 1024, 1 << 30)? as usize,
            max_field_bytes: custom_u64(props, "maxFieldBytes", 4096, 1 << 30)? as usize,
            max_rows: custom_u64(props, "maxRows", 50_000_000, 1 << 40)?,
            max_rejected_ratio,
            formula_cells,
            allowed_writers,
            max_future_ms: custom_u64(props, "maxFutureSeconds", 86_400, CENTURY_SECONDS)? as i64 * 1000,
            min_timestamp_ms,
        })
    }

    /// Whether `requester` (the S3 event's) may write this dataset's landing prefix.
    pub fn writer_allowed(&self, requester: Option<&str>, own_account: Option<&str>) -> bool {
        if self.allowed_writers.is_empty() {
            return true;
        }
        let Some(requester) = requester else { return false };
        self.allowed_writers.iter().any(|w| w == requester || (w == "self" && own_account == Some(requester)))
    }
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
        let ingest = IngestPolicy::parse(props).map_err(invalid)?;
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
                Some("mask") => Pseudonymisation::Mask {
                    keep_last: match custom_str(&p.custom_properties, "maskKeepLast") {
                        None => 0,
                        Some(v) => v
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n <= 8)
                            .ok_or_else(|| invalid(format!("column {}: maskKeepLast must be 0 to 8", p.name)))?,
                    },
                },
                Some("generalise") => Pseudonymisation::Generalise(
                    match (custom_str(&p.custom_properties, "generalisation").as_deref(), ty) {
                        (Some("hour"), ColumnType::Timestamp) => Generalisation::Hour,
                        (Some("day"), ColumnType::Timestamp) => Generalisation::Day,
                        (Some("month"), ColumnType::Timestamp) => Generalisation::Month,
                        (Some("band"), ColumnType::Int64 | ColumnType::Float64) => Generalisation::Band(
                            custom_str(&p.custom_properties, "bandWidth")
                                .and_then(|w| w.parse::<f64>().ok())
                                .filter(|w| w.is_finite() && *w > 0.0)
                                .ok_or_else(|| {
                                    invalid(format!("column {}: band needs a positive bandWidth", p.name))
                                })?,
                        ),
                        (g, _) => {
                            return Err(invalid(format!(
                                "column {}: generalisation {g:?} does not apply to a {} column (hour/day/month for \
                                 timestamps, band for numbers)",
                                p.name, p.physical_type
                            )));
                        }
                    },
                ),
                Some(other) => return Err(invalid(format!("column {}: unknown pseudonymisation {other}", p.name))),
            };
            if matches!(pseudonymisation, Pseudonymisation::Hmac | Pseudonymisation::Mask { .. })
                && ty != ColumnType::String
            {
                return Err(invalid(format!("column {}: hmac and mask apply to string columns", p.name)));
            }
            if columns.iter().any(|c: &Column| c.name == p.name) {
                return Err(invalid(format!("column {} declared twice", p.name)));
            }
            let options = p.logical_type_options.as_ref();
            let (minimum, maximum) = (options.and_then(|o| o.minimum), options.and_then(|o| o.maximum));
            if (minimum.is_some() || maximum.is_some()) && !matches!(ty, ColumnType::Int64 | ColumnType::Float64) {
                return Err(invalid(format!("column {}: minimum/maximum apply to numeric columns", p.name)));
            }
            if minimum.into_iter().chain(maximum).any(|b| !b.is_finite()) {
                return Err(invalid(format!("column {}: minimum and maximum must be finite numbers", p.name)));
            }
            if let (Some(lo), Some(hi)) = (minimum, maximum)
                && lo > hi
            {
                return Err(invalid(format!("column {}: minimum above maximum", p.name)));
            }
            columns.push(Column {
                name: p.name.clone(),
                ty,
                required: p.required,
                pii,
                pseudonymisation,
                minimum,
                maximum,
                max_length: options.and_then(|o| o.max_length),
            });
        }
        let quality = parse_quality(schema, &columns).map_err(invalid)?;
        Ok(Self {
            id: doc.id,
            dataset: doc.name,
            version: doc.version,
            domain: doc.domain.unwrap_or_else(|| "default".into()),
            role,
            landing_prefix,
            ingest,
            scoring_model,
            columns,
            quality,
        })
    }
}

/// The contract's quality rules: `required` columns first, then property-level entries,
/// then schema-level entries. Rule ids must be unique.
fn parse_quality(schema: &OdcsSchema, columns: &[Column]) -> Result<Vec<QualityRule>, String> {
    let known = |name: &str| columns.iter().any(|c| c.name == name);
    let mut rules: Vec<QualityRule> = columns
        .iter()
        .filter(|c| c.required)
        .map(|c| QualityRule {
            id: format!("{}_required", c.name),
            check: Check::Required { column: c.name.clone() },
            severity: Severity::Error,
            operator: None,
            percent: false,
        })
        .collect();
    for (p, c) in schema.properties.iter().zip(columns) {
        for q in &p.quality {
            if let Some(rule) = q.rule(Some(c), &known).map_err(|e| format!("column {} quality: {e}", c.name))? {
                rules.push(rule);
            }
        }
    }
    for q in &schema.quality {
        if let Some(rule) = q.rule(None, &known).map_err(|e| format!("schema quality: {e}"))? {
            rules.push(rule);
        }
    }
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.id == r.id) {
            return Err(format!("quality rule id {} is used twice", r.id));
        }
    }
    Ok(rules)
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
    fn quality_rules_and_transforms_are_read_from_the_contract() {
        let c = repo_contracts();
        let t = c.dataset("transactions_training").unwrap();
        let rule = |id: &str| t.quality.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no rule {id}"));
        assert_eq!(rule("transaction_id_required").check, Check::Required { column: "transaction_id".into() });
        assert_eq!(rule("transaction_id_unique").operator, Some(Operator::Eq(0.0)));
        let r = rule("channel_allowed");
        assert!(r.percent && r.severity == Severity::Error && r.operator == Some(Operator::Le(1.0)));
        assert_eq!(rule("customer_email_completeness").severity, Severity::Warning);
        assert_eq!(
            rule("card_holder_moment_amount_unique").check,
            Check::DuplicateValues { columns: vec!["customer_cpf".into(), "tx_time".into(), "amount".into()] }
        );
        assert_eq!(
            rule("tx_time_freshness").check,
            Check::Freshness { column: "tx_time".into(), max_age_ms: 7_776_000_000 }
        );
        assert_eq!(rule("row_count").operator, Some(Operator::Between(1.0, 40_000_000.0)));
        assert_eq!(t.column("tx_time").unwrap().pseudonymisation, Pseudonymisation::Generalise(Generalisation::Hour));
    }

    #[test]
    fn quality_rules_the_pipeline_cannot_execute_are_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let err = |bad: String| DatasetContract::parse(&path, &bad).unwrap_err().to_string();
        assert!(err(text.replacen("metric: rowCount", "metric: rowCounts", 1)).contains("unsupported metric"));
        assert!(err(text.replacen("engine: mlsec", "engine: soda", 1)).contains("not executed"));
        assert!(err(text.replacen("pattern: \"^[0-9]{4}$\"", "pattern: \"[0-9\"", 1)).contains("pattern"));
        assert!(err(text.replacen("        mustBeBetween: [1, 40000000]\n", "", 1)).contains("operator"));
        assert!(err(text.replacen("value: hour", "value: band", 1)).contains("does not apply"));
        assert!(err(text.replacen("id: amount_range", "id: channel_allowed", 1)).contains("used twice"));
        assert!(err(text.replacen("minimum: 0.01", "minimum: 2000000", 1)).contains("above"));
        assert!(err(text.replacen("minimum: 0.01", "minimum: .nan", 1)).contains("finite"));
        assert!(err(text.replacen("[1, 40000000]", "[40000000, 1]", 1)).contains("smallest first"));
        assert!(err(text.replacen("validValues: [online", "validValue: [online", 1)).contains("unknown argument"));
        let with_args = "metric: nullValues\n            arguments:\n              missingValues: [\"\", N/A]";
        assert!(err(text.replacen("metric: nullValues", with_args, 1)).contains("not supported"));
    }

    #[test]
    fn gateway_limits_out_of_range_are_refused_at_load() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let err = |bad: String| DatasetContract::parse(&path, &bad).unwrap_err().to_string();
        // Limits whose use would overflow (line length + line end, seconds → milliseconds).
        let huge = u64::MAX.to_string();
        assert!(err(text.replacen("value: 4096", &format!("value: {huge}"), 1)).contains("maxLineBytes must be"));
        let future = format!("maxFutureSeconds\n    value: {}", u64::MAX / 10);
        assert!(
            err(text.replacen("maxFutureSeconds\n    value: 86400", &future, 1)).contains("maxFutureSeconds must be")
        );
        assert!(err(text.replacen("value: 2147483648", "value: 0", 1)).contains("maxObjectBytes must be"));
        assert!(err(text.replacen("value: 2147483648", "value: 6000000000000", 1)).contains("maxObjectBytes must be"));
        // At the bounds, the policy is usable.
        let ok = text.replacen("value: 4096", "value: 1073741824", 1);
        assert_eq!(DatasetContract::parse(&path, &ok).unwrap().ingest.max_line_bytes, 1 << 30);
    }

    #[test]
    fn integer_bounds_are_compared_exactly_and_column_bounds_must_be_finite() {
        let two_53 = 9_007_199_254_740_992f64;
        assert!(int_within(9_007_199_254_740_992, None, Some(two_53)));
        assert!(!int_within(9_007_199_254_740_993, None, Some(two_53)), "rounds to 2^53 as an f64");
        assert!(int_within(i64::MAX, Some(0.0), None) && !int_within(i64::MIN, Some(-1e18), None));
        assert!(
            !int_within(1, Some(1.5), None) && int_within(2, Some(1.5), Some(2.5)) && !int_within(3, None, Some(2.5))
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replacen(
            "logicalTypeOptions:\n          minimum: 0\n",
            "logicalTypeOptions:\n          minimum: .nan\n",
            1,
        );
        assert_ne!(bad, text, "the amount column has a minimum of 0");
        let err = DatasetContract::parse(&path, &bad).unwrap_err().to_string();
        assert!(err.contains("must be finite"), "{err}");
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
