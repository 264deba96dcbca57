//! The ODCS v3 subset as written in the YAML, and its validation into a
//! [`DatasetContract`]: schema, column treatments and the gateway's policy. Quality
//! entries are turned into rules by [`super::quality`].

use std::path::Path;

use mlsec_events::DatasetRole;
use serde::Deserialize;

use super::{
    quality::{OdcsQuality, parse_quality, scalar_text},
    types::*,
};

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OdcsProperty {
    name: String,
    physical_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    primary_key: bool,
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
    custom(props, name).and_then(scalar_text)
}

/// A positive integer limit of at most `max`: the bound keeps every use of a limit (a
/// line length plus its line end, seconds in milliseconds) free of overflow.
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
            let protected = match custom(&p.custom_properties, "protected") {
                None => false,
                Some(serde_yaml::Value::Bool(b)) => *b,
                Some(_) => return Err(invalid(format!("column {}: protected must be true or false", p.name))),
            };
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
                protected,
                primary_key: p.primary_key,
                pseudonymisation,
                minimum,
                maximum,
                max_length: options.and_then(|o| o.max_length),
            });
        }
        let holdout_fraction = match (role, custom_str(props, "holdoutFraction")) {
            (DatasetRole::Scoring, Some(_)) => {
                return Err(invalid("customProperties.holdoutFraction applies to training datasets".into()));
            }
            (DatasetRole::Scoring, None) => 0.0,
            (DatasetRole::Training, None) => DEFAULT_HOLDOUT_FRACTION,
            (DatasetRole::Training, Some(v)) => v
                .parse::<f64>()
                .ok()
                .filter(|f| (0.05..=0.5).contains(f))
                .ok_or_else(|| invalid("customProperties.holdoutFraction must be within 0.05..=0.5".into()))?,
        };
        // The holdout is routed by the keyed hash of the primary key (or, when the contract
        // asks, of the whole row), so a key must be present on every row.
        if let Some(c) = columns.iter().find(|c| c.primary_key && !c.required) {
            return Err(invalid(format!("column {}: a primaryKey column must be required", c.name)));
        }
        if columns.iter().filter(|c| c.primary_key).count() > 1 {
            return Err(invalid("one primaryKey column at most (the holdout is routed by it)".into()));
        }
        // Without a primary key the holdout is routed by the whole row, which the contract
        // must ask for: rows about one subject can then land on both sides.
        let by_row = match custom_str(props, "holdoutBy").as_deref() {
            None => false,
            Some("row") if role == DatasetRole::Training => true,
            Some(_) => return Err(invalid("customProperties.holdoutBy must be row, on a training dataset".into())),
        };
        let has_key = columns.iter().any(|c| c.primary_key);
        if role == DatasetRole::Training && has_key == by_row {
            return Err(invalid(if by_row {
                "customProperties.holdoutBy: row applies to a dataset without a primaryKey column".into()
            } else {
                "a training dataset needs a required primaryKey column (its keyed hash routes the holdout), or \
                 customProperties.holdoutBy: row to route by the whole row"
                    .into()
            }));
        }
        if let Some(c) = columns.iter().find(|c| c.protected && c.pseudonymisation == Pseudonymisation::Drop) {
            return Err(invalid(format!("column {}: a protected attribute must reach the holdout (not drop)", c.name)));
        }
        let per_column: Vec<&[OdcsQuality]> = schema.properties.iter().map(|p| p.quality.as_slice()).collect();
        let quality = parse_quality(&columns, &per_column, &schema.quality).map_err(invalid)?;
        Ok(Self {
            id: doc.id,
            dataset: doc.name,
            version: doc.version,
            domain: doc.domain.unwrap_or_else(|| "default".into()),
            role,
            landing_prefix,
            ingest,
            scoring_model,
            holdout_fraction,
            columns,
            quality,
        })
    }
}
