//! The validated contract types every zone reads: columns, their treatment, the
//! gateway's policy and the data-quality rules. Parsed from ODCS by [`super::odcs`].

use std::path::PathBuf;

use mlsec_events::DatasetRole;

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
    /// From an ODCS `physicalType`.
    pub fn parse(s: &str) -> Option<Self> {
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
    /// A protected attribute (`customProperties.protected: true`): the fairness gate
    /// compares the model's decisions across its groups.
    pub protected: bool,
    /// ODCS `primaryKey`: identifies a row (the holdout is routed by its keyed hash).
    pub primary_key: bool,
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
    /// The cell is kept as it is. Only `mlsec contract infer`'s profiling pass uses it (it
    /// must see `-12.5` and `+55 11 ...` as they are); no contract can ask for it: the
    /// parser knows `reject` and `neutralise` only.
    Keep,
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
    /// Share of a training dataset's rows curate routes to the holdout that only govern
    /// reads (`customProperties.holdoutFraction`, default 0.2); 0 for scoring datasets.
    pub holdout_fraction: f64,
    pub columns: Vec<Column>,
    /// Data-quality rules, in contract order: one `required` rule per required column,
    /// then the property-level rules, then the schema-level ones.
    pub quality: Vec<QualityRule>,
}

/// Holdout share of a training dataset whose contract does not set one.
pub const DEFAULT_HOLDOUT_FRACTION: f64 = 0.2;

impl DatasetContract {
    /// The column whose keyed hash routes a row to the holdout (training datasets).
    pub fn primary_key(&self) -> Option<&Column> {
        self.columns.iter().find(|c| c.primary_key)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl IngestPolicy {
    /// Whether `requester` (the S3 event's) may write this dataset's landing prefix.
    pub fn writer_allowed(&self, requester: Option<&str>, own_account: Option<&str>) -> bool {
        if self.allowed_writers.is_empty() {
            return true;
        }
        let Some(requester) = requester else { return false };
        self.allowed_writers.iter().any(|w| w == requester || (w == "self" && own_account == Some(requester)))
    }
}

/// Whether an integer lies within inclusive bounds written as numbers, compared exactly
/// (converting the integer to f64 would round above 2^53). A fractional bound is rounded
/// inwards: `minimum: 1.5` admits 2, not 1.
pub fn int_within(v: i64, minimum: Option<f64>, maximum: Option<f64>) -> bool {
    let v = i128::from(v);
    minimum.is_none_or(|m| v >= m.ceil() as i128) && maximum.is_none_or(|m| v <= m.floor() as i128)
}
